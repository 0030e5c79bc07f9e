"""Backbone specs (``file::PATH[:ARCH]``, ``hub::OWNER/REPO:ENTRY``, ``timm::MODEL[:FILE]``) and archs.

Importing this package is cheap; the names that need torch load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from mska_core.backbones.spec import BackboneOptions, parse_spec, split_file_payload

_LAZY = {
    "load_backbone": "mska_core.backbones.loaders",
    "build_arch": "mska_core.backbones.loaders",
    "build_vit": "mska_core.backbones.vit",
    "convert_state_dict": "mska_core.backbones.vit",
    "official_to_timm": "mska_core.backbones.vit",
    "timm_to_official": "mska_core.backbones.vit",
    "resample_official": "mska_core.backbones.vit",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mska_core.backbones' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["BackboneOptions", "parse_spec", "split_file_payload", *_LAZY]

"""Backbone specs (``file::PATH[:ARCH]``, ``hub::OWNER/REPO:ENTRY``, ``timm::MODEL[:FILE]``) and archs.

Importing this package is cheap; the names that need torch load on first use.
"""

from __future__ import annotations

from mska_core.backbones.spec import BackboneOptions, parse_spec, split_file_payload
from mska_core.lazy import lazy_attributes

_LAZY = {
    "load_backbone": "mska_core.backbones.loaders",
    "build_arch": "mska_core.backbones.loaders",
    "build_vit": "mska_core.backbones.vit",
    "convert_state_dict": "mska_core.backbones.vit",
    "official_to_timm": "mska_core.backbones.vit",
    "timm_to_official": "mska_core.backbones.vit",
    "resample_official": "mska_core.backbones.vit",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["BackboneOptions", "parse_spec", "split_file_payload", *_LAZY]

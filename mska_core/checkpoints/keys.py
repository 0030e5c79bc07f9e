"""Key-name helpers shared by formats, backbones and encoder loading (no torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Key components that wrappers add around a model: DistributedDataParallel and torch.compile.
WRAPPER_COMPONENTS = ("module", "_orig_mod")


def strip_wrappers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop every ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) component from the keys."""
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        parts = [p for p in str(key).split(".") if p not in WRAPPER_COMPONENTS]
        out[".".join(parts)] = value
    return out


def common_prefix(keys: list[str]) -> str:
    """The longest dotted prefix (ending in ``.``) that every key shares; ``""`` when none."""
    if not keys:
        return ""
    parts = [k.split(".")[:-1] for k in keys]
    shared: list[str] = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        shared.append(column[0])
    return ".".join(shared) + "." if shared else ""


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}

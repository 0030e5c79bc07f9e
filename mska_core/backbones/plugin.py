"""Built-in plugin: the backbones that mska-core supplies (records only; factories import torch lazily)."""

from __future__ import annotations

from mska_core.hookspecs import hookimpl


@hookimpl
def mska_backbone_loaders() -> list:
    return []


@hookimpl
def mska_backbone_archs() -> list:
    return []

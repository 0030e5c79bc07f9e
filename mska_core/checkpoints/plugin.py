"""Built-in plugin: the checkpoints that mska-core supplies (records only; factories import torch lazily)."""

from __future__ import annotations

from mska_core.hookspecs import hookimpl


@hookimpl
def mska_checkpoint_formats() -> list:
    return []

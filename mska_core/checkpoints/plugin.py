"""Built-in plugin: the checkpoint formats that mska-core supplies (records only; torch loads lazily)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mska_core.hookspecs import hookimpl
from mska_core.records import CheckpointFormat


def _deferred(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module("mska_core.checkpoints.formats"), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


_FORMATS = (
    ("mska", "mska", True, "mska-core payload (torch.save of plain data; DESIGN §6)"),
    ("safetensors", "safetensors", True, "safetensors; metadata as JSON strings in __metadata__"),
    ("state_dict", "state_dict", False, "a bare state dict, or one under 'model'/'state_dict'/..."),
    ("lightning", "lightning", False, "PyTorch Lightning .ckpt (state_dict + pytorch-lightning_version)"),
    ("dino", "dino", False, "DINO v1 checkpoint.pth (student/teacher; argparse.Namespace allowed)"),
    ("mska-paper", "mska_paper", False, "sutwangyan/MSKA checkpoints ({'model': ...}), keys converted"),
)


@hookimpl
def mska_checkpoint_formats() -> list[CheckpointFormat]:
    return [
        CheckpointFormat(
            name=name,
            sniff=_deferred(f"sniff_{stem}"),
            read=_deferred(f"read_{stem}"),
            write=_deferred(f"write_{stem}") if writable else None,
            description=description,
        )
        for name, stem, writable, description in _FORMATS
    ]

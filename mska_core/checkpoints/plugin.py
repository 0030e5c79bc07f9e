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


#: name, function stem, the suffixes it writes (none: read-only), description
_FORMATS = (
    ("mska", "mska", (".pt", ".pth"), "mska-core payload (torch.save of plain data; DESIGN §6)"),
    ("safetensors", "safetensors", (".safetensors",), "safetensors; metadata as JSON strings in __metadata__"),
    ("state_dict", "state_dict", (), "a bare state dict, or one under 'model'/'state_dict'/..."),
    ("lightning", "lightning", (), "PyTorch Lightning .ckpt (state_dict + pytorch-lightning_version)"),
    ("dino", "dino", (), "DINO v1 checkpoint.pth (student/teacher; argparse.Namespace allowed)"),
    ("mska-paper", "mska_paper", (), "sutwangyan/MSKA checkpoints ({'model': ...}), keys converted"),
)


@hookimpl
def mska_checkpoint_formats() -> list[CheckpointFormat]:
    return [
        CheckpointFormat(
            name=name,
            sniff=_deferred(f"sniff_{stem}"),
            read=_deferred(f"read_{stem}"),
            write=_deferred(f"write_{stem}") if suffixes else None,
            description=description,
            suffixes=suffixes,
        )
        for name, stem, suffixes, description in _FORMATS
    ]

"""Checkpoints: our payload, safe loading, atomic saving, formats, and loading into the encoder.

Importing this package is cheap (no torch); the names that need torch load on first use.
"""

from __future__ import annotations

from mska_core.checkpoints.payload import FORMAT, FORMAT_VERSION, KINDS, Checkpoint, make_payload
from mska_core.checkpoints.probe import FileProbe
from mska_core.lazy import lazy_attributes

_LAZY = {
    "load_checkpoint": "mska_core.checkpoints.loading",
    "save_checkpoint": "mska_core.checkpoints.loading",
    "list_checkpoints": "mska_core.checkpoints.loading",
    "detect_format": "mska_core.checkpoints.loading",
    "as_checkpoint": "mska_core.checkpoints.loading",
    "safe_torch_load": "mska_core.checkpoints.safe",
    "KeyMismatch": "mska_core.checkpoints.mismatch",
    "WeightMismatchError": "mska_core.checkpoints.mismatch",
    "load_strict": "mska_core.checkpoints.mismatch",
    "load_mska_encoder_state": "mska_core.checkpoints.encoder_state",
    "check_mska_encoder_state": "mska_core.checkpoints.encoder_state",
    "LoadReport": "mska_core.checkpoints.encoder_state",
    "StreamLoad": "mska_core.checkpoints.encoder_state",
    "describe": "mska_core.checkpoints.describe",
    "describe_run": "mska_core.checkpoints.describe",
    "diff_checkpoints": "mska_core.checkpoints.diff",
    "DiffReport": "mska_core.checkpoints.diff",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["FORMAT", "FORMAT_VERSION", "KINDS", "Checkpoint", "FileProbe", "make_payload", *_LAZY]

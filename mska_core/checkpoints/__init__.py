"""Checkpoints: a file → a payload → a module.

- :mod:`~mska_core.checkpoints.files`: what a file is and reading it safely (bounded, never running
  pickled code);
- :mod:`~mska_core.checkpoints.schema`: what a checkpoint holds (the :class:`Checkpoint` record, our
  payload's constants, the plain-data rule, wrapper prefixes in keys), below both of the next two;
- :mod:`~mska_core.checkpoints.formats`: the built-in formats, how each is sniffed, read and written
  (registered by :mod:`~mska_core.checkpoints.plugin`; :mod:`~mska_core.checkpoints.paper` converts
  the MSKA reference's keys);
- :mod:`~mska_core.checkpoints.payload`: our payload schema and the calls from a path to a payload
  and back (:func:`load_checkpoint`, :func:`read_payload`, :func:`save_checkpoint`);
- :mod:`~mska_core.checkpoints.encoder_state`: weights into modules (strict comparison, routing
  payloads into an encoder's streams);
- :mod:`~mska_core.checkpoints.inspector`: what ``mska inspect`` shows (describe, run folders, diff).

Importing this package is cheap (no torch); the names that need torch load on first use.
"""

from __future__ import annotations

from mska_core.checkpoints.files import FileProbe
from mska_core.checkpoints.payload import make_payload
from mska_core.checkpoints.schema import FORMAT, FORMAT_VERSION, KINDS, Checkpoint
from mska_core.lazy import lazy_attributes

_LAZY = {
    "load_checkpoint": "mska_core.checkpoints.payload",
    "read_payload": "mska_core.checkpoints.payload",
    "save_checkpoint": "mska_core.checkpoints.payload",
    "output_suffix": "mska_core.checkpoints.payload",
    "list_checkpoints": "mska_core.checkpoints.payload",
    "detect_format": "mska_core.checkpoints.payload",
    "as_checkpoint": "mska_core.checkpoints.payload",
    "strip_wrappers": "mska_core.checkpoints.schema",
    "safe_torch_load": "mska_core.checkpoints.files",
    "KeyMismatch": "mska_core.checkpoints.encoder_state",
    "WeightMismatchError": "mska_core.checkpoints.encoder_state",
    "compare": "mska_core.checkpoints.encoder_state",
    "load_strict": "mska_core.checkpoints.encoder_state",
    "load_mska_encoder_state": "mska_core.checkpoints.encoder_state",
    "check_mska_encoder_state": "mska_core.checkpoints.encoder_state",
    "LoadReport": "mska_core.checkpoints.encoder_state",
    "StreamLoad": "mska_core.checkpoints.encoder_state",
    "describe": "mska_core.checkpoints.inspector",
    "describe_run": "mska_core.checkpoints.inspector",
    "diff_checkpoints": "mska_core.checkpoints.inspector",
    "DiffReport": "mska_core.checkpoints.inspector",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["FORMAT", "FORMAT_VERSION", "KINDS", "Checkpoint", "FileProbe", "make_payload", *_LAZY]

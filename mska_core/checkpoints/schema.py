"""What a checkpoint holds, below both the formats and the payload calls.

- :data:`FORMAT`, :data:`FORMAT_VERSION`, :data:`KINDS`: our payload's name, version and kinds
  (DESIGN.md §6);
- :class:`Checkpoint`: what every checkpoint format reads a file into, and what ``write`` takes;
- :func:`check_plain`: the plain-data rule that lets ``torch.load(weights_only=True)`` read a payload;
- :func:`strip_wrappers`: state-dict keys without the components DDP and ``torch.compile`` add.

:mod:`~mska_core.checkpoints.formats` (how each format reads and writes) and
:mod:`~mska_core.checkpoints.payload` (from a path to a payload and back) both stand on this module
and never import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import CheckpointError

FORMAT = "mska-core"
FORMAT_VERSION = 1
KINDS = ("stream-encoder", "backbone", "model", "training-state")


@attrs.define
class Checkpoint:
    """What a checkpoint format reads, and what its ``write`` receives: its name, the metadata, the
    tensors and the file.

    - ``format``: the name of the format that read it (``"mska"`` for a payload about to be written).
    - ``metadata``: everything but the tensors, plain data (for our payloads: format, kind, stream,
      arch, arch_config, epoch, created, plugins, providers, config ...).
    - ``state_dict``: key -> tensor, with ``module.`` and ``_orig_mod.`` removed from the keys.
    - ``path``: the file it was read from (``None`` in memory).
    """

    format: str
    metadata: dict[str, Any] = attrs.field(factory=dict)
    state_dict: dict[str, Any] = attrs.field(factory=dict)
    path: Path | None = None

    @property
    def kind(self) -> str | None:
        return self.metadata.get("kind")

    @property
    def stream(self) -> str | None:
        return self.metadata.get("stream")

    @property
    def arch(self) -> str | None:
        return self.metadata.get("arch")

    def describe(self) -> str:
        """A short phrase for messages: where it came from and what it is."""
        where = str(self.path) if self.path else "in-memory payload"
        what = [f"format {self.format}"]
        for key in ("kind", "stream", "arch"):
            if self.metadata.get(key):
                what.append(f"{key} {self.metadata[key]}")
        return f"{where} ({', '.join(what)}, {len(self.state_dict)} tensors)"


def check_plain(value: Any, where: str = "payload") -> None:
    """Raise :class:`CheckpointError` naming the first value that ``weights_only`` could not read."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if is_tensor(value):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{where}: key {key!r} is a {type(key).__name__}; keys must be str or int")
            check_plain(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    raise CheckpointError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold plain data "
        "(dict, list, str, int, float, bool, None, tensors) only — convert it first"
    )


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (without importing torch)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype") and hasattr(value, "shape")


def is_state_dict(value: Any) -> bool:
    """Whether ``value`` is a non-empty mapping whose every value is a tensor."""
    return isinstance(value, Mapping) and bool(value) and all(is_tensor(v) for v in value.values())


# -- state-dict keys -------------------------------------------------------------------------------


#: Key components that wrappers add around a model: DistributedDataParallel and torch.compile.
WRAPPER_COMPONENTS = ("module", "_orig_mod")


def strip_wrappers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop every ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) component from the keys."""
    return {strip_wrapper_key(key): value for key, value in state_dict.items()}


def strip_wrapper_key(key: Any) -> str:
    """One key without its ``module.`` and ``_orig_mod.`` components."""
    return ".".join(p for p in str(key).split(".") if p not in WRAPPER_COMPONENTS)

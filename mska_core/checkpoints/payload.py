"""Our checkpoint payload (DESIGN.md §6) and the :class:`Checkpoint` every format reads into.

A payload is plain data (dicts, lists, str, int, float, bool, None, tensors) so that
``torch.load(path, weights_only=True)`` reads it, and ``stream`` and ``state_dict`` are top-level
keys so that a plain ``torch.load(p)["stream"]`` works.
"""

from __future__ import annotations

import datetime
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
    """What a checkpoint format reads: its name, the metadata, the tensors and the file.

    ``metadata`` holds everything but the tensors (for our payloads: kind, stream, arch,
    arch_config, epoch, created, plugins ...); ``state_dict`` maps key to tensor.
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


def make_payload(
    kind: str,
    state_dict: Mapping[str, Any],
    *,
    stream: str | None = None,
    arch: str | None = None,
    arch_config: Mapping[str, Any] | None = None,
    min_loss: float | None = None,
    epoch: int | None = None,
    global_step: int | None = None,
    config: Any = None,
    registry: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build our checkpoint payload: the given fields plus format, version, time and provenance.

    ``config`` may be a :class:`~mska_core.config.Config` (stored resolved, as plain data) or plain
    data already. ``extra`` keys (optimizer state, a vocabulary ...) must be plain data too.
    ``plugins`` records the plugin versions of ``registry``, the one that made the weights (the
    process-wide registry when not given).
    """
    if kind not in KINDS:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; valid: {', '.join(KINDS)}")
    if config is not None and attrs.has(type(config)):
        from mska_core.config import unstructure

        config = unstructure(config)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "stream": stream,
        "arch": arch,
        "arch_config": dict(arch_config) if arch_config is not None else None,
        "state_dict": {str(k): _detached(v) for k, v in state_dict.items()},
        "min_loss": None if min_loss is None else float(min_loss),
        "epoch": epoch,
        "global_step": global_step,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mska_core_version": _core_version(),
        "plugins": _plugin_versions(registry),
        "config": config,
    }
    payload.update(extra)
    check_plain(payload)
    return payload


def check_plain(value: Any, where: str = "payload") -> None:
    """Raise :class:`CheckpointError` naming the first value that ``weights_only`` could not read."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if _is_tensor(value):
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


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype") and hasattr(value, "shape")


def _detached(value: Any) -> Any:
    return value.detach() if _is_tensor(value) else value


def _core_version() -> str:
    from mska_core import __version__

    return __version__


def _plugin_versions(registry: Any) -> dict[str, str]:
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    return dict(registry.host.versions())

"""Weights into modules: comparing a state dict with a module, and loading exported weights into an
:class:`~mska_core.encoder.MSKAEncoder`, stream by stream.

Loading is strict. When weights do not fit, the error is one line (counts and the first keys) and
carries a :class:`KeyMismatch` whose :meth:`~KeyMismatch.table` renders every key in a rich table.

A payload is routed by what it holds:

- image backbone (ViT) weights — our ``kind="backbone"`` exports, ``stream-encoder`` exports with
  an ``arch`` and ViT keys, official DINOv2 or DINO files — go to the stream's crop backbone,
  through the architecture's ``convert_state_dict``;
- keypoint-branch weights (a ``stream-encoder`` export without ViT keys) go to the keypoint branch;
- a whole branch (keys under ``keypoint.`` and ``crop.``) goes to the branch;
- a whole model (keys under ``branches.<stream>.``, e.g. a converted MSKA paper checkpoint) gives
  each stream its own part.

``hand=`` goes to every stream of weight group ``hand`` (each gets its own copy), ``face=`` to the
``face`` group, and ``streams={name: ...}`` to one stream, overriding the group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from mska_core.checkpoints.payload import as_checkpoint, strip_prefix
from mska_core.checkpoints.schema import Checkpoint
from mska_core.errors import BackboneError, CheckpointError

# -- comparing weights with a module ---------------------------------------------------------------


_SHOWN = 3


@attrs.frozen
class KeyMismatch:
    """How a state dict differs from the keys and shapes a module expects."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()  # key, expected, found

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: counts and the first few keys of each kind."""
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label} ({_first(keys)})")
        if self.mismatched:
            shown = ", ".join(
                f"{k} {_shape(found)} vs {_shape(expected)}" for k, expected, found in self.mismatched[:_SHOWN]
            )
            more = f", +{len(self.mismatched) - _SHOWN} more" if len(self.mismatched) > _SHOWN else ""
            parts.append(f"{len(self.mismatched)} of another shape ({shown}{more})")
        return "; ".join(parts) if parts else "all keys fit"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """``(problem, key, expected, found)`` for every key that does not fit."""
        rows = [("missing", k, "present", "absent") for k in self.missing]
        rows += [("unexpected", k, "absent", "present") for k in self.unexpected]
        rows += [("shape", k, _shape(e), _shape(f)) for k, e, f in self.mismatched]
        return rows

    def table(self, title: str = "weights that do not fit") -> Any:
        """A rich table of :meth:`rows`."""
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in ("problem", "key", "model expects", "checkpoint has"):
            table.add_column(column, overflow="fold")
        for row in self.rows():
            table.add_row(*row)
        return table

    def as_dict(self) -> dict[str, Any]:
        return {
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [
                {"key": k, "expected": list(e), "found": list(f)} for k, e, f in self.mismatched
            ],
        }


class WeightMismatchError(CheckpointError, BackboneError):
    """Weights whose keys or shapes do not fit a module; ``.mismatch`` holds every key."""

    def __init__(self, message: str, mismatch: KeyMismatch) -> None:
        super().__init__(message)
        self.mismatch = mismatch


def compare(expected: Mapping[str, Any], state_dict: Mapping[str, Any]) -> KeyMismatch:
    """Compare ``state_dict`` with ``expected`` (a module's ``state_dict()``), by key and shape."""
    missing = tuple(k for k in expected if k not in state_dict)
    unexpected = tuple(k for k in state_dict if k not in expected)
    mismatched = tuple(
        (k, tuple(expected[k].shape), tuple(state_dict[k].shape))
        for k in expected
        if k in state_dict and hasattr(state_dict[k], "shape") and tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    return KeyMismatch(missing, unexpected, mismatched)


def load_strict(module: Any, state_dict: Mapping[str, Any], *, what: str) -> KeyMismatch:
    """Load ``state_dict`` into ``module`` when every key and shape fits; else raise with a report.

    ``what`` names the weights and the target for the message (``"face.pt into dinov2_vits14"``).
    """
    mismatch = compare(module.state_dict(), state_dict)
    if not mismatch.ok:
        raise WeightMismatchError(f"{what}: weights do not fit: {mismatch.summary()}", mismatch)
    module.load_state_dict(dict(state_dict), strict=True)
    return mismatch


def _first(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", +{len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


# -- exported weights into the encoder -------------------------------------------------------------


BACKBONE, KEYPOINT, BRANCH, MODEL = "image backbone", "keypoint branch", "whole branch", "whole model"
_VIT_KEY = "patch_embed.proj.weight"


@attrs.frozen
class StreamLoad:
    """What happened (or would happen) to one stream."""

    stream: str
    source: str
    holds: str  # what the payload is: BACKBONE, KEYPOINT, BRANCH or MODEL
    target: str  # the part of the stream it goes to, e.g. "branches.face.crop.backbone"
    tensors: int = 0
    mismatch: KeyMismatch = attrs.field(factory=KeyMismatch)
    error: str | None = None  # why it fits nowhere in this stream
    loaded: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.mismatch.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream, "source": self.source, "holds": self.holds, "target": self.target,
            "tensors": self.tensors, "ok": self.ok, "loaded": self.loaded, "error": self.error,
            **self.mismatch.as_dict(),
        }


@attrs.frozen
class LoadReport:
    """Per stream: what was offered, where it went, and what did not fit."""

    streams: tuple[StreamLoad, ...] = ()

    @property
    def ok(self) -> bool:
        return all(entry.ok for entry in self.streams)

    def __getitem__(self, stream: str) -> StreamLoad:
        for entry in self.streams:
            if entry.stream == stream:
                return entry
        raise KeyError(stream)

    def summary(self) -> str:
        return "; ".join(
            f"{e.stream}: {'loaded' if e.loaded else 'fits' if e.ok else e.error or e.mismatch.summary()}"
            for e in self.streams
        ) or "nothing offered"

    def table(self, title: str = "weights per stream") -> Any:
        """A rich table with one row per stream."""
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in ("stream", "payload holds", "target", "tensors", "result"):
            table.add_column(column, overflow="fold")
        for e in self.streams:
            if e.error:
                result = f"[red]fits nowhere:[/red] {e.error}"
            elif not e.mismatch.ok:
                result = f"[red]does not fit:[/red] {e.mismatch.summary()}"
            else:
                result = "[green]loaded[/green]" if e.loaded else "[green]would load[/green]"
            table.add_row(e.stream, e.holds, e.target, str(e.tensors), result)
        return table

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "streams": [e.as_dict() for e in self.streams]}


@attrs.define
class _Plan:
    entry: StreamLoad
    module: Any = None
    state_dict: dict[str, Any] = attrs.field(factory=dict)
    checkpoint: Checkpoint | None = None  # where the weights come from


def payload_holds(checkpoint: Checkpoint) -> str:
    """What a checkpoint's state dict is: BACKBONE, KEYPOINT, BRANCH or MODEL."""
    keys = list(checkpoint.state_dict)
    if any(k.startswith("branches.") or ".branches." in k for k in keys):
        return MODEL
    if keys and all(k.startswith(("keypoint.", "crop.")) for k in keys):
        return BRANCH
    if checkpoint.kind == "backbone" or any(k.endswith(_VIT_KEY) for k in keys):
        return BACKBONE
    return KEYPOINT


def load_mska_encoder_state(
    encoder: Any,
    face: Any = None,
    hand: Any = None,
    streams: Mapping[str, Any] | None = None,
    strict: bool = True,
    *,
    groups: Mapping[str, Any] | None = None,
    registry: Any = None,
    allow_stream_change: bool = False,
) -> LoadReport:
    """Load exported weights into ``encoder``'s streams and return a :class:`LoadReport`.

    Each argument is a path, one of our payload dicts, a bare state dict or a
    :class:`~mska_core.checkpoints.Checkpoint`. ``groups`` maps a weight group to the payload that
    initialises every stream of that group (equal, independent tensors); ``face=`` and ``hand=`` are
    shorthands for the groups ``face`` and ``hand`` (one hand export initialises both hands);
    ``streams`` entries override a group per stream.
    With ``strict`` nothing is loaded unless every key of every stream fits (the error's
    ``.mismatch`` lists them); otherwise the keys that fit are loaded and the report lists the rest.
    A payload that fits nowhere in a stream (image weights for a keypoint-only stream) is always a
    :class:`~mska_core.errors.CheckpointError`. Files are read through the checkpoint formats of
    ``registry`` (the process-wide one when none is given).

    Keypoint weights of a checkpoint that records its streams' identity (``providers``, as ``mska
    train`` writes) are refused for a stream that another plugin supplies now or that reads other
    joints (one line naming the stream, both providers and what differs), unless
    ``allow_stream_change``.
    """
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    plans = _plan(encoder, groups=_groups(groups, face=face, hand=hand), streams=streams, registry=registry)
    if not allow_stream_change:
        for plan in plans:
            _check_identity(encoder, plan)
    for plan in plans:
        if plan.entry.error:
            raise CheckpointError(f"stream {plan.entry.stream!r}: {plan.entry.error}")
    if strict:
        for plan in plans:
            if not plan.entry.mismatch.ok:
                raise WeightMismatchError(
                    f"stream {plan.entry.stream!r}: {plan.entry.source} does not fit {plan.entry.target}: "
                    f"{plan.entry.mismatch.summary()}",
                    plan.entry.mismatch,
                )
    done = []
    for plan in plans:
        expected = plan.module.state_dict()
        fitting = {
            k: v.detach().clone()  # each stream gets its own copy: hand_left and hand_right stay independent
            for k, v in plan.state_dict.items()
            if k in expected and tuple(expected[k].shape) == tuple(v.shape)
        }
        plan.module.load_state_dict(fitting, strict=False)  # fit was checked above, key by key
        done.append(attrs.evolve(plan.entry, loaded=True))
    return LoadReport(tuple(done))


def _check_identity(encoder: Any, plan: _Plan) -> None:
    """Keypoint weights of a stream whose recorded identity (provider, joints) differs from the encoder's."""
    from mska_core.config.identity import check_same_stream
    from mska_core.errors import ConfigError

    if plan.entry.holds == BACKBONE or plan.checkpoint is None:
        return
    recorded = ((plan.checkpoint.metadata.get("providers") or {}).get("streams") or {})
    name = plan.entry.stream if plan.entry.holds == MODEL else (plan.checkpoint.stream or plan.entry.stream)
    entry = recorded.get(name)
    if not isinstance(entry, Mapping):
        return
    try:
        check_same_stream(plan.entry.stream, entry, encoder.specs[plan.entry.stream], encoder.layout,
                          plan.entry.source)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def check_mska_encoder_state(
    encoder: Any, face: Any = None, hand: Any = None, streams: Mapping[str, Any] | None = None,
    *, groups: Mapping[str, Any] | None = None, registry: Any = None,
) -> LoadReport:
    """What :func:`load_mska_encoder_state` would do, per stream, without loading or raising on fit."""
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    plans = _plan(encoder, groups=_groups(groups, face=face, hand=hand), streams=streams, registry=registry)
    return LoadReport(tuple(p.entry for p in plans))


def _groups(groups: Mapping[str, Any] | None, **shorthands: Any) -> dict[str, Any]:
    """``groups`` with the ``face=``/``hand=`` shorthands merged in; naming a group twice is an error."""
    merged = dict(groups or {})
    for group, source in shorthands.items():
        if source is None:
            continue
        if group in merged:
            raise CheckpointError(f"weight group {group!r} is given twice: as {group}= and in groups=")
        merged[group] = source
    return merged


# -- planning -------------------------------------------------------------------------------------


def _plan(encoder: Any, *, groups: Mapping[str, Any], streams: Mapping[str, Any] | None,
          registry: Any) -> list[_Plan]:
    names = list(encoder.stream_names)
    assigned: dict[str, Any] = {}
    for group, source in groups.items():
        members = [s for s in names if encoder.specs[s].weight_group == group]
        if not members:
            groups = sorted({encoder.specs[s].weight_group for s in names})
            raise CheckpointError(
                f"weights were given for {group!r}, but no stream of this encoder is in weight group {group!r} "
                f"(streams: {', '.join(names)}; groups: {', '.join(groups)})"
            )
        for stream in members:
            assigned[stream] = source
    for stream, source in (streams or {}).items():
        if stream not in names:
            raise CheckpointError(f"streams={{{stream!r}: ...}}: no such stream in this encoder; streams: {', '.join(names)}")
        assigned[stream] = source
    cache: dict[int, Checkpoint] = {}
    plans = []
    for stream in names:
        if stream not in assigned:
            continue
        source = assigned[stream]
        if id(source) not in cache:
            cache[id(source)] = as_checkpoint(source, registry=registry)
        plan = _plan_stream(encoder, stream, cache[id(source)], registry)
        plans.append(attrs.evolve(plan, checkpoint=cache[id(source)]))
    return plans


def _plan_stream(encoder: Any, stream: str, checkpoint: Checkpoint, registry: Any) -> _Plan:
    branch = encoder.branches[stream]
    holds = payload_holds(checkpoint)
    source = checkpoint.describe()
    state_dict = dict(checkpoint.state_dict)
    base = f"branches.{stream}"
    keypoint = getattr(branch, "keypoint", None)
    crop = getattr(branch, "crop", None)
    if holds == MODEL:
        prefix = next(k[: k.index("branches.")] for k in state_dict if "branches." in k)
        state_dict = strip_prefix(state_dict, f"{prefix}branches.{stream}.")
        if not state_dict:
            present = sorted({k.split("branches.", 1)[1].split(".")[0] for k in checkpoint.state_dict if "branches." in k})
            return _Plan(StreamLoad(stream, source, holds, base, error=(
                f"{source} is a whole model without stream {stream!r} (it has {', '.join(present)})")))
        return _fit(stream, source, holds, base, branch, state_dict)
    if holds == BRANCH:
        parts = {k.split(".", 1)[0] for k in state_dict}
        expected = {k: v for k, v in branch.state_dict().items() if k.split(".", 1)[0] in parts}
        return _fit(stream, source, holds, base, branch, state_dict, expected=expected)
    if holds == BACKBONE:
        if crop is None:
            return _Plan(StreamLoad(stream, source, holds, f"{base}.crop", tensors=len(state_dict), error=(
                f"{source} holds image backbone (ViT) weights, but stream {stream!r} has no crop backbone: "
                f"it expects keypoint-branch weights ({_expects(keypoint)}); set [model.streams.{stream}] "
                "backbone to use them, or give a keypoint-encoder export")))
        backbone = crop.backbone
        arch = checkpoint.arch or getattr(backbone, "arch", None)
        if arch and arch in registry.backbone_archs:
            img_size = (getattr(backbone, "arch_config", None) or {}).get("img_size")
            try:
                state_dict = registry.backbone_archs.get(arch).convert_state_dict(state_dict, img_size=img_size)
            except CheckpointError:
                raise
            except Exception as exc:  # noqa: BLE001 - a converter's own failure, in one line
                return _Plan(StreamLoad(stream, source, holds, f"{base}.crop.backbone", error=str(exc).splitlines()[0]))
        return _fit(stream, source, holds, f"{base}.crop.backbone", backbone, state_dict)
    if keypoint is None:
        return _Plan(StreamLoad(stream, source, holds, f"{base}.keypoint", tensors=len(state_dict), error=(
            f"{source} holds keypoint-branch weights, but stream {stream!r} has no keypoint branch: it expects "
            f"image backbone weights for its crop backbone ({_expects(crop.backbone if crop else None)})")))
    if state_dict and all(k.startswith("keypoint.") for k in state_dict):
        state_dict = strip_prefix(state_dict, "keypoint.")
    return _fit(stream, source, holds, f"{base}.keypoint", keypoint, state_dict)


def _fit(stream: str, source: str, holds: str, target: str, module: Any, state_dict: dict[str, Any],
         *, expected: Mapping[str, Any] | None = None) -> _Plan:
    mismatch = compare(module.state_dict() if expected is None else expected, state_dict)
    entry = StreamLoad(stream, source, holds, target, tensors=len(state_dict), mismatch=mismatch)
    return _Plan(entry, module, state_dict)


def _expects(module: Any) -> str:
    if module is None:
        return "nothing"
    keys = list(module.state_dict())
    arch = getattr(module, "arch", None)
    return (f"arch {arch}, " if arch else "") + f"{len(keys)} tensors such as {keys[0] if keys else '-'}"

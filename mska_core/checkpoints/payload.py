"""Our checkpoint payload (DESIGN.md §6) and the calls that go from a path to a payload and back.

The :class:`~mska_core.checkpoints.schema.Checkpoint` record every format reads into, the payload's
constants and the plain-data rule live in :mod:`~mska_core.checkpoints.schema`, below both this module
and the formats (which never import each other).

A payload is plain data (dicts, lists, str, int, float, bool, None, tensors) so that
``torch.load(path, weights_only=True)`` reads it, and ``stream`` and ``state_dict`` are top-level
keys so that a plain ``torch.load(p)["stream"]`` works.

- :func:`load_checkpoint` reads any file a registered format claims into a :class:`Checkpoint`
  (one call: look at the file, find its one format, read it);
- :func:`read_payload` reads one of our own files back as the payload dict, checked (format, kind,
  the keys the caller needs);
- :func:`save_checkpoint` writes a payload atomically through the format its path asks for.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.checkpoints.files import FileProbe
from mska_core.checkpoints.schema import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    Checkpoint,
    check_plain,
    is_state_dict,
    is_tensor,
    strip_wrappers,
)
from mska_core.errors import CheckpointError, PluginError


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
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
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
        "plugins": dict(registry.host.versions()),
        "config": config,
    }
    payload.update(extra)
    check_plain(payload)
    return payload


def _detached(value: Any) -> Any:
    return value.detach() if is_tensor(value) else value


def _core_version() -> str:
    from mska_core import __version__

    return __version__


# -- state-dict keys -------------------------------------------------------------------------------


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


# -- a path to a payload and back ------------------------------------------------------------------


#: File names that are never checkpoints: the temporary files of an atomic write in progress.
TEMPORARY_SUFFIX = ".tmp"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")


def detect_format(probe: FileProbe, *, registry: Any) -> Any:
    """The one :class:`~mska_core.records.CheckpointFormat` of ``registry`` that claims ``probe``'s file.

    None claiming it raises :class:`CheckpointError` with what the file looks like; two claiming
    it raise one naming both.
    """
    formats = list(registry.checkpoint_formats)
    if probe.is_torch:
        probe.load()  # an unsafe or unreadable torch file fails here, with its own message
    claims = []
    for fmt in formats:
        try:
            claimed = fmt.sniff(probe)
        except PluginError as exc:
            # A format whose sniff fails cannot claim anything; the others still read the file. Its
            # plugin is reported once and marked failed (fatal under MSKA_STRICT_PLUGINS).
            _drop_format(registry, fmt, str(exc))
            continue
        if claimed:
            claims.append(fmt)
    if len(claims) > 1:
        names = " and ".join(f"{f.name!r} ({f.provider})" for f in claims[:2])
        raise CheckpointError(
            f"{probe.path}: claimed by two checkpoint formats, {names}; disable one plugin with "
            "MSKA_DISABLE_PLUGINS"
        )
    if claims:
        return claims[0]
    if probe.problem:
        raise CheckpointError(f"{probe.path}: {probe.problem}")
    registered = ", ".join(f.name for f in formats) or "none"
    if probe.is_torch:
        obj = probe.load()
        if isinstance(obj, dict):
            keys = ", ".join(map(str, list(obj)[:6])) or "none"
            looks = f"a torch file whose top-level keys ({keys}) match no format"
        else:
            looks = f"a torch file holding a {type(obj).__name__}, not a dict of tensors"
    else:
        looks = f"neither a torch file nor safetensors (it starts with {probe.head[:8]!r})"
    contested = registry.checkpoint_formats.contested()
    unused = (f"; format {', '.join(repr(n) for n in contested)} {'is' if len(contested) == 1 else 'are'} "
              "supplied by several plugins and reads nothing until you choose one ([plugins.providers], "
              "--set plugins.providers.NAME=PLUGIN)" if contested else "")
    raise CheckpointError(f"{probe.path}: not a checkpoint: {looks}; registered formats: {registered}{unused}")


def _drop_format(registry: Any, fmt: Any, error: str) -> None:
    host = getattr(registry, "host", None)
    provider = fmt.provider
    if host is None or provider is None or provider.plugin not in host.infos:
        return
    info = host.infos[provider.plugin]
    if info.status == "loaded":
        host.fail(info, error)


def load_checkpoint(path: str | Path, *, select: str | None = None, registry: Any = None) -> Checkpoint:
    """Read ``path`` through the one checkpoint format that claims it; never runs pickled code.

    ``select`` picks a part of multi-part files (``"student"`` of a DINO checkpoint; the teacher
    is the default). Formats are those of ``registry`` (the process-wide one when none is given).
    """
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    probe = FileProbe.open(path, select=select)
    fmt = detect_format(probe, registry=registry)
    checkpoint = fmt.read(probe)
    if not isinstance(checkpoint, Checkpoint):
        raise CheckpointError(
            f"{probe.path}: checkpoint format {fmt.name!r} ({fmt.provider}) returned "
            f"{type(checkpoint).__name__}, expected a Checkpoint"
        )
    return checkpoint


def read_payload(path: str | Path, *, kinds: Sequence[str] | None = None, require: Iterable[str] = (),
                 needed_by: str = "this command", hint: str = "give a checkpoint that mska-core wrote",
                 registry: Any) -> dict[str, Any]:
    """Read one of our own checkpoint files back as its payload dict, checked; never runs pickled code.

    The file is read through its format (:func:`load_checkpoint`: our torch payload or a safetensors
    file with our metadata) and must hold an mska-core payload of a ``format_version`` this version
    reads, of one of ``kinds`` (any kind when ``None``), with every key of ``require``. Anything else
    raises :class:`CheckpointError` in one line: the file, what it holds, what ``needed_by`` needs,
    and ``hint`` (what to do).
    """
    checkpoint = load_checkpoint(path, registry=registry)
    where = checkpoint.path or Path(path)
    metadata = checkpoint.metadata
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{where}: a {checkpoint.format} checkpoint, not an mska-core payload, which "
                              f"{needed_by} needs; {hint}")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{where}: payload format_version {version!r}; this mska-core reads versions up to "
                              f"{FORMAT_VERSION} (upgrade mska-core)")
    if kinds is not None and checkpoint.kind not in kinds:
        expected = " or ".join(repr(k) for k in kinds)
        raise CheckpointError(f"{where}: kind {checkpoint.kind!r}, expected {expected}, which {needed_by} needs; "
                              f"{hint}")
    payload = {**metadata, "state_dict": checkpoint.state_dict}
    missing = [key for key in require if key not in payload]
    if missing:
        raise CheckpointError(
            f"{where}: the checkpoint lacks {', '.join(repr(k) for k in missing)}, which {needed_by} needs; it is "
            f"damaged or was written by something else — {hint}"
        )
    return payload


def save_checkpoint(payload: Checkpoint | Mapping[str, Any], path: str | Path, *, format: str | None = None,
                    registry: Any = None) -> Path:
    """Write ``payload`` to ``path`` atomically through a checkpoint format's ``write``; return the path.

    ``payload`` is one of our payload dicts (:func:`~mska_core.checkpoints.make_payload`) or a
    :class:`Checkpoint` (its metadata and state dict, as a format's ``read`` returns it): every
    format's ``write(checkpoint, path)`` receives a :class:`Checkpoint`. The format is ``format`` when
    given (``[run] format``), else the writable format whose ``suffixes`` claim the path's suffix
    (``.safetensors``: the tensors as tensors, every other key as JSON metadata), else ``mska``
    (``torch.save`` of plain data). Everything must be plain data; the previous file stays intact
    until the new one is complete. Formats are those of ``registry`` (the process-wide one when none
    is given).
    """
    checkpoint = payload if isinstance(payload, Checkpoint) else as_written(payload, path)
    check_plain({**checkpoint.metadata, "state_dict": checkpoint.state_dict})
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    path = Path(path)
    fmt = writer_for(path, format=format, registry=registry)
    fmt.write(checkpoint, path)
    return path


def as_written(payload: Mapping[str, Any], path: str | Path | None = None) -> Checkpoint:
    """The :class:`Checkpoint` a format's ``write`` receives for one of our payload dicts."""
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"cannot save a {type(payload).__name__}; give a payload dict (make_payload) or a "
                              "Checkpoint")
    metadata = {k: v for k, v in payload.items() if k != "state_dict"}
    return Checkpoint("mska", metadata, dict(payload.get("state_dict") or {}), Path(path) if path else None)


def output_suffix(format: str, *, registry: Any) -> str:
    """The file suffix a run writes its checkpoints with in ``format`` (``[run] format``): the first of
    the format's ``suffixes``; a format that cannot write, or names no suffix, is a
    :class:`~mska_core.errors.ConfigError`."""
    from mska_core.errors import ConfigError

    fmt = registry.checkpoint_formats.get(format)
    if fmt.write is None or not fmt.suffixes:
        writable = ", ".join(f.name for f in registry.checkpoint_formats if f.write is not None and f.suffixes)
        raise ConfigError(f"run.format = {format!r}: checkpoint format {format!r} ({fmt.provider}) "
                          f"{'writes no files' if fmt.write is None else 'names no file suffix'}; formats that "
                          f"write run outputs: {writable}")
    return fmt.suffixes[0]


def writer_for(path: Path, *, format: str | None = None, registry: Any) -> Any:
    """The writable :class:`~mska_core.records.CheckpointFormat` of ``registry`` that ``save_checkpoint``
    uses for ``path``."""
    formats = registry.checkpoint_formats
    if format is not None:
        fmt = formats.get(format)
        if fmt.write is None:
            writable = ", ".join(f.name for f in formats if f.write is not None) or "none"
            raise CheckpointError(f"checkpoint format {format!r} can only be read; formats that write: {writable}")
        return fmt
    claims = [f for f in formats if f.write is not None and path.suffix in f.suffixes]
    if len(claims) > 1:
        names = " and ".join(f"{f.name!r} ({f.provider})" for f in claims[:2])
        raise CheckpointError(f"{path}: two checkpoint formats write {path.suffix!r} files, {names}; "
                              "disable one plugin with MSKA_DISABLE_PLUGINS or pass format=")
    return claims[0] if claims else formats.get("mska")


def list_checkpoints(folder: str | Path, *, suffixes: Iterable[str] = CHECKPOINT_SUFFIXES) -> list[Path]:
    """Checkpoint files in ``folder`` (by suffix: ``suffixes``, e.g. with those of plugin formats),
    oldest first; temporary files are never listed."""
    folder = Path(folder)
    suffixes = tuple(suffixes)
    found = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix in suffixes and not p.name.startswith(".")
        and not p.name.endswith(TEMPORARY_SUFFIX)
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def as_checkpoint(source: Any, *, registry: Any) -> Checkpoint:
    """A :class:`Checkpoint` from a path, one of our payload dicts, a bare state dict or a Checkpoint."""
    if isinstance(source, Checkpoint):
        return source
    if isinstance(source, (str, Path)):
        return load_checkpoint(source, registry=registry)
    if isinstance(source, dict):
        if "state_dict" in source and source.get("format") == "mska-core":
            metadata = {k: v for k, v in source.items() if k != "state_dict"}
            return Checkpoint("mska", metadata, strip_wrappers(source["state_dict"]))
        if is_state_dict(source):
            return Checkpoint("state_dict", {}, strip_wrappers(source))
    raise CheckpointError(
        f"cannot use a {type(source).__name__} as weights; give a path, an mska-core payload, a state dict "
        "or a Checkpoint"
    )

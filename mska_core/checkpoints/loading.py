"""Reading and writing checkpoints through the registered formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mska_core.checkpoints.payload import Checkpoint, check_plain
from mska_core.checkpoints.probe import FileProbe
from mska_core.errors import CheckpointError, PluginError

#: File names that are never checkpoints: the temporary files of an atomic write in progress.
TEMPORARY_SUFFIX = ".tmp"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")


def detect_format(probe: FileProbe, *, registry: Any = None) -> Any:
    """The one :class:`~mska_core.records.CheckpointFormat` that claims ``probe``'s file.

    None claiming it raises :class:`CheckpointError` with what the file looks like; two claiming
    it raise one naming both.
    """
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
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
    raise CheckpointError(f"{probe.path}: not a checkpoint: {looks}; registered formats: {registered}")


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
    is the default).
    """
    probe = FileProbe.open(path, select=select)
    fmt = detect_format(probe, registry=registry)
    checkpoint = fmt.read(probe)
    if not isinstance(checkpoint, Checkpoint):
        raise CheckpointError(
            f"{probe.path}: checkpoint format {fmt.name!r} ({fmt.provider}) returned "
            f"{type(checkpoint).__name__}, expected a Checkpoint"
        )
    return checkpoint


def save_checkpoint(payload: dict[str, Any], path: str | Path, *, format: str | None = None,
                    registry: Any = None) -> Path:
    """Write ``payload`` to ``path`` atomically through a checkpoint format's ``write``; return the path.

    The format is ``format`` when given, else the writable format whose ``suffixes`` claim the
    path's suffix (``.safetensors``: the tensors of ``state_dict``, every other key as JSON metadata),
    else ``mska`` (``torch.save`` of plain data). The payload must be plain data (see
    :func:`~mska_core.checkpoints.make_payload`); the previous file stays intact until the new one is
    complete.
    """
    check_plain(payload)
    path = Path(path)
    fmt = writer_for(path, format=format, registry=registry)
    fmt.write(payload, path)
    return path


def writer_for(path: Path, *, format: str | None = None, registry: Any = None) -> Any:
    """The writable :class:`~mska_core.records.CheckpointFormat` that ``save_checkpoint`` uses for ``path``."""
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
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


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder`` (by suffix), oldest first; temporary files are never listed."""
    folder = Path(folder)
    found = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES and not p.name.startswith(".")
        and not p.name.endswith(TEMPORARY_SUFFIX)
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def as_checkpoint(source: Any, *, registry: Any = None) -> Checkpoint:
    """A :class:`Checkpoint` from a path, one of our payload dicts, a bare state dict or a Checkpoint."""
    from mska_core.checkpoints.formats import _is_state_dict
    from mska_core.checkpoints.keys import strip_wrappers

    if isinstance(source, Checkpoint):
        return source
    if isinstance(source, (str, Path)):
        return load_checkpoint(source, registry=registry)
    if isinstance(source, dict):
        if "state_dict" in source and source.get("format") == "mska-core":
            metadata = {k: v for k, v in source.items() if k != "state_dict"}
            return Checkpoint("mska", metadata, strip_wrappers(source["state_dict"]))
        if _is_state_dict(source):
            return Checkpoint("state_dict", {}, strip_wrappers(source))
    raise CheckpointError(
        f"cannot use a {type(source).__name__} as weights; give a path, an mska-core payload, a state dict "
        "or a Checkpoint"
    )

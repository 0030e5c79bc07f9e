"""Atomic file writing: every file mska-core writes goes through here.

A temporary file is created in the destination folder, written, flushed and fsynced, then moved over
the destination with :func:`os.replace`, so a reader sees the old file or the new one, never half.

A writer holds an exclusive ``flock`` on its temporary file while it writes. A process killed in the
middle of a write leaves its temporary file behind, unlocked; the next successful write of the same
destination removes every such leftover (a temporary file still locked belongs to a live writer and
is left alone).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # marks the temporary file as being written
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, mode) as handle:
            recorder = _RecordingFile(handle)
            try:
                yield recorder
                handle.flush()
                os.fsync(handle.fileno())
            except Exception as exc:
                # A writer (torch.save) may turn the OSError of a full disk into its own error: raise
                # the OSError itself, with the destination's name, so the message says what happened.
                failure = exc if isinstance(exc, OSError) else recorder.error
                if failure is not None:
                    raise OSError(failure.errno, failure.strerror, str(path)) from exc
                raise
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    remove_stale_temporaries(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[IO], None]) -> Path:
    """Call ``writer(handle)`` on a temporary file that then replaces ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        writer(handle)
    return Path(path)


TEMPORARY_SUFFIX = ".tmp"


class _RecordingFile:
    """A file object that remembers the first OSError its ``write`` raised (and re-raises it)."""

    def __init__(self, handle: IO) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` left behind; return them.

    A temporary file whose writer is alive is locked and kept.
    """
    path = Path(path)
    removed: list[Path] = []
    prefix = _temporary_prefix(path)
    with contextlib.suppress(OSError):
        candidates = [p for p in path.parent.iterdir()
                      if p.name.startswith(prefix) and p.name.endswith(TEMPORARY_SUFFIX)]
        for candidate in candidates:
            try:
                fd = os.open(candidate, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer holds it
                os.close(fd)
                continue
            try:
                os.unlink(candidate)
                removed.append(candidate)
            except OSError:
                pass
            finally:
                os.close(fd)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jsonl(path: str | Path, *, torn_tail: bool = False) -> list:
    """The records of a JSON-lines file (``metrics.jsonl``); a line that is not JSON is a
    :class:`~mska_core.errors.DataError` naming the file and the line. A missing file has none; a path
    that is not a regular file (a directory, a named pipe, a device) is refused without being opened.

    With ``torn_tail``, a last line without a line end is dropped: the writer ends every record with
    one, so such a line is a write that a kill cut short.
    """
    import json
    import stat

    from mska_core.errors import DataError

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file (a {file_kind(mode)}); give the JSON-lines file a run wrote")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSON-lines file (not UTF-8 text); move it away and run again") from None
    lines = text.split("\n")
    if torn_tail:
        lines[-1] = ""
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise DataError(
                f"{path}: line {number} is not JSON, so the file is not the JSON-lines record this command "
                "writes; repair the line or move the file away"
            ) from None
    return records


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words (``os.stat`` mode): directory, named pipe ..."""
    import stat

    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")

"""A cheap first look at a file, taken once and shared by every format's ``sniff``.

:meth:`FileProbe.open` reads the first bytes, the zip directory or the safetensors header, and
notes what is wrong with the file (truncated, a zip that is not a torch file ...) without failing,
so that a plugin format may still claim it. The torch object is loaded at most once, on demand,
with ``weights_only=True`` (memory-mapped for zip files) and the formats' allow-list.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import CheckpointError

HEAD_BYTES = 64
_MISSING = object()


@attrs.define
class FileProbe:
    """What a format's ``sniff`` may look at.

    - ``container``: ``"zip"`` (torch's default format), ``"pickle"`` (legacy torch or plain
      pickle), ``"safetensors"`` or ``"unknown"``;
    - ``members``: the names inside a zip file; ``header``: the safetensors JSON header;
    - ``problem``: why the built-in formats cannot read it (``None`` when nothing is wrong);
    - ``select``: which part a multi-part format should read (``"student"`` of a DINO file).
    """

    path: Path
    size: int
    head: bytes
    container: str = "unknown"
    members: tuple[str, ...] = ()
    header: dict[str, Any] | None = None
    problem: str | None = None
    select: str | None = None
    _object: Any = attrs.field(default=_MISSING, repr=False, alias="_object")

    @classmethod
    def open(cls, path: str | Path, *, select: str | None = None) -> FileProbe:
        """Look at ``path``; raise :class:`CheckpointError` only when it is not a readable file."""
        path = Path(path).expanduser()
        if not path.exists():
            raise CheckpointError(f"{path}: no such file")
        if path.is_dir():
            inside = sorted(p.name for p in path.iterdir())[:5]
            raise CheckpointError(
                f"{path}: is a directory; give a checkpoint file" + (f" (it holds {', '.join(inside)})" if inside else "")
            )
        size = path.stat().st_size
        if size == 0:
            raise CheckpointError(f"{path}: is empty (0 bytes); was it written completely?")
        try:
            with open(path, "rb") as handle:
                head = handle.read(HEAD_BYTES)
                probe = cls(path=path, size=size, head=head, select=select)
                probe._classify(handle)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        return probe

    def _classify(self, handle: Any) -> None:
        if self.head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            self.container = "zip"
            try:
                handle.seek(0)
                with zipfile.ZipFile(handle) as archive:
                    self.members = tuple(archive.namelist())
            except (zipfile.BadZipFile, OSError, EOFError):
                self.problem = (
                    f"a zip archive without its central directory ({self.size} bytes): truncated or "
                    "still being written"
                )
                return
            if not any(m == "data.pkl" or m.endswith("/data.pkl") for m in self.members):
                shown = ", ".join(self.members[:4]) + (" ..." if len(self.members) > 4 else "")
                self.problem = f"a zip archive but not a torch checkpoint (no data.pkl; it holds {shown or 'nothing'})"
            return
        if self._classify_safetensors(handle):
            return
        if self.head[:1] == b"\x80":
            self.container = "pickle"

    def _classify_safetensors(self, handle: Any) -> bool:
        if self.size < 10 or self.head[8:9] != b"{":
            return False
        from mska_core.checkpoints.safe import MAX_SAFETENSORS_HEADER, safetensors_header_problem

        length = int.from_bytes(self.head[:8], "little")
        if length > self.size - 8:
            self.container = "safetensors"
            self.problem = f"a safetensors file cut short: its header alone needs {length} bytes, the file has {self.size}"
            return True
        if length > MAX_SAFETENSORS_HEADER:
            self.container = "safetensors"
            self.problem = f"a safetensors header of {length} bytes (at most {MAX_SAFETENSORS_HEADER} are read)"
            return True
        handle.seek(8)
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False
        if not isinstance(header, dict):
            return False
        self.container, self.header = "safetensors", header
        problem = safetensors_header_problem(header, self.size - 8 - length)
        if problem is not None:
            self.problem = problem if problem.startswith("a safetensors") else f"a damaged safetensors file: {problem}"
        return True

    @property
    def is_torch(self) -> bool:
        """A zip or pickle file that the built-in torch formats may read."""
        return self.container in ("zip", "pickle") and self.problem is None

    def load(self) -> Any:
        """The torch object in the file, loaded once (``weights_only``; mmap for zip files)."""
        if self._object is _MISSING:
            from mska_core.checkpoints.safe import allowed_globals, safe_torch_load

            self._object = safe_torch_load(self.path, allow=allowed_globals(), mmap=self.container == "zip")
        return self._object

    def torch_dict(self) -> dict[str, Any] | None:
        """The loaded object when the file is a torch file holding a dict, else ``None``."""
        if not self.is_torch:
            return None
        obj = self.load()
        return obj if isinstance(obj, dict) else None

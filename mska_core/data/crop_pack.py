"""The packed crop format: a clip's crops of one stream in one file, read frame by frame.

::

    header   16 bytes   b"MSKACROP", uint32 format version, uint32 0
    frames              the JPEG file of frame 0, of frame 1, ... one after the other
    index    8 (T+1)    uint64 offsets: frame i is bytes [offset[i], offset[i+1]) of the file
    footer   24 bytes   uint64 offset of the index, uint32 T, uint32 crop side, b"MSKAEND\\0"

(all little-endian). Each frame is exactly the JPEG file the folder format writes for it
(``crops/STREAM/ID/NNNNNN.jpg``), so both decode to the same pixels. A writer streams frames in order
and writes the index and footer last; a file without its footer is not a packed crop file, so a
half-written one is never read as a clip. ``mska extract`` writes it under ``.partial/ID`` and moves it
into place whole (:mod:`mska_core.data.contract`).

:class:`CropPack` reads the footer and the index (two small reads) and then only the bytes of the
frames asked for: one file per clip and stream, whatever frames the augmentation picks.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from mska_core.errors import DataError

MAGIC = b"MSKACROP"
END = b"MSKAEND\0"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sII")
_FOOTER = struct.Struct("<QII8s")


class CropPackWriter:
    """Writes a packed crop file frame by frame (frames in order); :meth:`close` writes the index.

    ``fsync`` makes :meth:`close` flush the file to disk (extraction does: the clip it belongs to is
    moved into place next).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.handle: IO[bytes] = self.path.open("wb")
        self.handle.write(_HEADER.pack(MAGIC, FORMAT_VERSION, 0))
        self.offsets = [_HEADER.size]
        self.side = 0

    def add(self, jpeg: bytes, side: int) -> None:
        """Append the next frame's JPEG file (a crop ``side`` pixels square)."""
        if self.side and side != self.side:
            raise DataError(f"{self.path}: crops of one clip and stream must share one size ({self.side} px, got "
                            f"{side} px)")
        self.side = side
        self.handle.write(jpeg)
        self.offsets.append(self.offsets[-1] + len(jpeg))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def close(self) -> None:
        """Write the index and footer and close the file."""
        index_at = self.offsets[-1]
        self.handle.write(struct.pack(f"<{len(self.offsets)}Q", *self.offsets))
        self.handle.write(_FOOTER.pack(index_at, len(self), self.side, END))
        self.handle.flush()
        if self.fsync:
            os.fsync(self.handle.fileno())
        self.handle.close()

    def abort(self) -> None:
        """Close without an index (the file is not a packed crop file) and remove it."""
        self.handle.close()
        self.path.unlink(missing_ok=True)


class CropPack:
    """A packed crop file opened for reading: :attr:`frames` crops of :attr:`side` pixels.

    ``source`` is the file's path, or its bytes (a packed file carried inside a WebDataset shard).
    ``region`` ``(offset, size)`` says the packed file is those bytes of the file ``source`` (a member
    of a tar shard, read in place). Only the footer and the index are read on opening; :meth:`jpeg` and
    :meth:`read` read the bytes of the frames asked for. Any problem with the file is a
    :class:`~mska_core.errors.DataError` naming it.
    """

    def __init__(self, source: str | Path | bytes, name: str = "", *, region: tuple[int, int] | None = None) -> None:
        self.data = source if isinstance(source, bytes) else None
        self.path = Path(name) if name else Path("<packed crops>") if isinstance(source, bytes) else Path(source)
        self.region = region
        self.file = Path(source) if not isinstance(source, bytes) else None
        try:
            with self._open() as handle:
                self.frames, self.side, self.offsets = _read_index(handle, self.path)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read packed crops ({exc.strerror or exc})") from None

    def _open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.file is not None
        if self.region is not None:
            return FileRegion(self.file.open("rb"), *self.region)
        return self.file.open("rb")

    def __len__(self) -> int:
        return self.frames

    def jpeg(self, index: int, handle: IO[bytes] | None = None) -> bytes:
        """The JPEG file of frame ``index``."""
        if not 0 <= index < self.frames:
            raise DataError(f"{self.path}: frame {index} asked for, the file holds {self.frames}")
        start, end = self.offsets[index], self.offsets[index + 1]
        if handle is None:
            with self._open() as own:
                own.seek(start)
                return own.read(end - start)
        handle.seek(start)
        return handle.read(end - start)

    def read(self, frames: Sequence[int]) -> list[Any]:
        """The decoded crops of ``frames`` (each distinct frame read and decoded once), as uint8 RGB
        numpy arrays ``[S, S, 3]`` in the order of ``frames``."""
        import io

        import numpy as np
        from PIL import Image, UnidentifiedImageError

        decoded: dict[int, Any] = {}
        with self._open() as handle:
            for index in sorted(set(int(f) for f in frames)):
                data = self.jpeg(index, handle)
                try:
                    with Image.open(io.BytesIO(data)) as image:
                        decoded[index] = np.asarray(image.convert("RGB"))
                except (OSError, UnidentifiedImageError) as exc:
                    raise DataError(f"{self.path}: frame {index} is not a readable JPEG ({exc})") from None
        return [decoded[int(f)] for f in frames]


class FileRegion(io.RawIOBase):
    """``size`` bytes of an open binary file from ``offset`` on, as a file of their own (seek, read,
    tell; closing it closes the file): a tar member read in place."""

    def __init__(self, handle: IO[bytes], offset: int, size: int) -> None:
        super().__init__()
        self.handle, self.offset, self.size, self.position = handle, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, base + position)
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, count: int = -1) -> bytes:
        left = max(0, self.size - self.position)
        count = left if count is None or count < 0 else min(count, left)
        self.handle.seek(self.offset + self.position)
        data = self.handle.read(count)
        self.position += len(data)
        return data

    def close(self) -> None:
        self.handle.close()
        super().close()


def pack_bytes(jpegs: Sequence[bytes], side: int) -> bytes:
    """A whole packed crop file, in memory, of the JPEG files ``jpegs`` (crops ``side`` pixels square)."""
    offsets = [_HEADER.size]
    for data in jpegs:
        offsets.append(offsets[-1] + len(data))
    return b"".join([_HEADER.pack(MAGIC, FORMAT_VERSION, 0), *jpegs,
                     struct.pack(f"<{len(offsets)}Q", *offsets),
                     _FOOTER.pack(offsets[-1], len(jpegs), side, END)])


def is_packed(path: str | Path) -> bool:
    """Whether ``path`` is a whole packed crop file (its header and footer are there)."""
    try:
        with Path(path).open("rb") as handle:
            _read_index(handle, Path(path))
    except (OSError, DataError):
        return False
    return True


def pack_info(path: str | Path) -> tuple[int, int]:
    """``(frames, side)`` of a packed crop file, from its footer alone."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            frames, side, _ = _read_footer(handle, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read packed crops ({exc.strerror or exc})") from None
    return frames, side


def _read_footer(handle: IO[bytes], path: Path) -> tuple[int, int, int]:
    size = handle.seek(0, os.SEEK_END)
    if size < _HEADER.size + _FOOTER.size + 8:
        raise DataError(f"{path}: not a whole packed crop file ({size} bytes; a killed writer leaves such files)")
    handle.seek(0)
    magic, version, _ = _HEADER.unpack(handle.read(_HEADER.size))
    if magic != MAGIC:
        raise DataError(f"{path}: not a packed crop file (it does not start with {MAGIC!r})")
    if version > FORMAT_VERSION:
        raise DataError(f"{path}: packed crop format {version} is newer than this mska-core reads "
                        f"({FORMAT_VERSION}); upgrade mska-core")
    handle.seek(size - _FOOTER.size)
    index_at, frames, side, end = _FOOTER.unpack(handle.read(_FOOTER.size))
    if end != END or index_at + 8 * (frames + 1) + _FOOTER.size != size:
        raise DataError(f"{path}: the packed crop file has no index (it was not written to the end)")
    return frames, side, index_at


def _read_index(handle: IO[bytes], path: Path) -> tuple[int, int, tuple[int, ...]]:
    frames, side, index_at = _read_footer(handle, path)
    handle.seek(index_at)
    offsets = struct.unpack(f"<{frames + 1}Q", handle.read(8 * (frames + 1)))
    if offsets[0] != _HEADER.size or offsets[-1] != index_at or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise DataError(f"{path}: the packed crop file's index is inconsistent")
    return frames, side, offsets

"""The output folder of ``mska extract`` and its table of finished clips.

The layout and names are :mod:`mska_core.data.contract`'s (:class:`~mska_core.data.contract.ExtractedLayout`);
this module adds what a writer does with them. A clip is written under ``.partial/ID`` and moved into
place when whole: crops first, then boxes, then its keypoint file; its line in ``clips.tsv`` (or in the
run's ``clips.K-of-N.tsv`` part) is appended last. A clip is finished only when it has that line (and
its files), so a killed run leaves nothing that a later run would take as done, and the later run
starts unfinished clips over.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

from mska_core.data.contract import (
    CLIPS_HEADER,
    PACKED_SUFFIX,
    PARTIAL,
    ClipRow,
    ExtractedLayout,
    read_all_clips,
    read_clips,
)

__all__ = ["CLIPS_HEADER", "PARTIAL", "ClipRow", "OutputFolder", "append_clip", "read_clips", "read_all_clips",
           "write_clips"]


@attrs.frozen
class OutputFolder(ExtractedLayout):
    """Paths inside ``OUT``, and writing a clip into place."""

    def crops(self, stream: str, clip_id: str, packed: bool = True) -> Path:
        """Where a clip's crops of ``stream`` go: its packed file, or its folder of JPEG files."""
        return self.crop_pack(stream, clip_id) if packed else self.crop_folder(stream, clip_id)

    def partial_crops(self, clip_id: str, stream: str, packed: bool = True) -> Path:
        """Where a clip's crops of ``stream`` are written before the clip is whole."""
        return self.partial(clip_id) / "crops" / (f"{stream}{PACKED_SUFFIX}" if packed else stream)

    def has_crops(self, stream: str, clip_id: str) -> bool:
        return self.crop_pack(stream, clip_id).is_file() or self.crop_folder(stream, clip_id).is_dir()

    def is_finished(self, row: ClipRow | None, streams: Iterable[str]) -> bool:
        """Whether a clip with ``row`` in ``clips.tsv`` has its files, crops of every stream included."""
        if row is None or not self.keypoints(row.id).is_file():
            return False
        return all(stream in row.streams and self.has_crops(stream, row.id) for stream in streams)

    def discard(self, clip_id: str, streams: Iterable[str]) -> None:
        """Remove whatever an unfinished run left of ``clip_id`` (before it is written again)."""
        shutil.rmtree(self.partial(clip_id), ignore_errors=True)
        for path in (self.keypoints(clip_id), self.boxes(clip_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for stream in streams:
            shutil.rmtree(self.crop_folder(stream, clip_id), ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.crop_pack(stream, clip_id).unlink()

    def publish(self, clip_id: str, streams: Iterable[str], packed: bool = True) -> None:
        """Move a whole clip from ``.partial/ID`` into place, its keypoint file last."""
        partial = self.partial(clip_id)
        for stream in streams:
            target = self.crops(stream, clip_id, packed)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.partial_crops(clip_id, stream, packed), target)
        for source, target in ((partial / "boxes.npz", self.boxes(clip_id)),
                               (partial / "keypoints.npy", self.keypoints(clip_id))):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        shutil.rmtree(partial, ignore_errors=True)


def append_clip(path: Path, row: ClipRow) -> None:
    """Append ``row`` to ``clips.tsv`` (writing the header first if the file is new), durably."""
    new = not path.is_file() or path.stat().st_size == 0
    text = ("\t".join(CLIPS_HEADER) + "\n" if new else "") + "\t".join(row.cells()) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_clips(path: Path, rows: Mapping[str, ClipRow]) -> None:
    """Rewrite ``clips.tsv`` atomically with ``rows`` sorted by id."""
    from mska_core.io import atomic_write_bytes

    buffer = io.StringIO()
    buffer.write("\t".join(CLIPS_HEADER) + "\n")
    for key in sorted(rows):
        buffer.write("\t".join(rows[key].cells()) + "\n")
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))

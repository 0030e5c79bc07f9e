"""The output folder of ``mska extract`` and its table of finished clips (see ``docs/data.md``).

::

    OUT/
      clips.tsv                  one line per finished clip (header: CLIPS_HEADER)
      keypoints/ID.npy           float32 [T, J, 3]: x, y in pixels, confidence
      crops/STREAM/ID/000000.jpg one square crop per frame
      boxes/ID.npz               per stream: int32 [T, 3] boxes (x, y, side), bool [T] missing frames
      .partial/ID/               a clip being written (removed when it is finished or restarted)

A clip is written under ``.partial/ID`` and moved into place when whole: crops first, then boxes, then
its keypoint file; its line in ``clips.tsv`` is appended last. A clip is finished only when it has that
line (and its files), so a killed run leaves nothing that a later run would take as done, and the later
run starts unfinished clips over.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

CLIPS_HEADER = ("id", "video", "frames", "fps", "width", "height", "layout", "source", "version", "streams")
PARTIAL = ".partial"


@attrs.frozen
class ClipRow:
    """One line of ``clips.tsv``: a finished clip."""

    id: str
    video: str
    frames: int
    fps: float
    width: int
    height: int
    layout: str
    source: str  # "npy:PATH", "pose:PATH", "pickle:PATH:NAME" or "estimator:NAME"
    version: str  # the estimator's distribution version; empty for keypoint files
    streams: tuple[str, ...]

    def cells(self) -> list[str]:
        return [self.id, self.video, str(self.frames), f"{self.fps:g}", str(self.width), str(self.height),
                self.layout, self.source, self.version, ",".join(self.streams)]

    @classmethod
    def from_cells(cls, cells: list[str]) -> ClipRow:
        return cls(id=cells[0], video=cells[1], frames=int(cells[2]), fps=float(cells[3]),
                   width=int(cells[4]), height=int(cells[5]), layout=cells[6], source=cells[7],
                   version=cells[8], streams=tuple(s for s in cells[9].split(",") if s))


@attrs.frozen
class OutputFolder:
    """Paths inside ``OUT``."""

    root: Path

    @property
    def clips_tsv(self) -> Path:
        return self.root / "clips.tsv"

    def keypoints(self, clip_id: str) -> Path:
        return self.root / "keypoints" / f"{clip_id}.npy"

    def crops(self, stream: str, clip_id: str) -> Path:
        return self.root / "crops" / stream / clip_id

    def boxes(self, clip_id: str) -> Path:
        return self.root / "boxes" / f"{clip_id}.npz"

    def partial(self, clip_id: str) -> Path:
        return self.root / PARTIAL / clip_id

    def is_finished(self, row: ClipRow | None, streams: Iterable[str]) -> bool:
        """Whether a clip with ``row`` in ``clips.tsv`` has its files, crops of every stream included."""
        if row is None or not self.keypoints(row.id).is_file():
            return False
        return all(stream in row.streams and self.crops(stream, row.id).is_dir() for stream in streams)

    def discard(self, clip_id: str, streams: Iterable[str]) -> None:
        """Remove whatever an unfinished run left of ``clip_id`` (before it is written again)."""
        shutil.rmtree(self.partial(clip_id), ignore_errors=True)
        for path in (self.keypoints(clip_id), self.boxes(clip_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for stream in streams:
            shutil.rmtree(self.crops(stream, clip_id), ignore_errors=True)

    def publish(self, clip_id: str, streams: Iterable[str]) -> None:
        """Move a whole clip from ``.partial/ID`` into place, its keypoint file last."""
        partial = self.partial(clip_id)
        for stream in streams:
            target = self.crops(stream, clip_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial / "crops" / stream, target)
        for source, target in ((partial / "boxes.npz", self.boxes(clip_id)),
                               (partial / "keypoints.npy", self.keypoints(clip_id))):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        shutil.rmtree(partial, ignore_errors=True)


def read_clips(path: Path) -> dict[str, ClipRow]:
    """The rows of ``clips.tsv`` by id (a later line wins; a torn last line is ignored)."""
    if not path.is_file():
        return {}
    rows: dict[str, ClipRow] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for cells in list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
            if len(cells) != len(CLIPS_HEADER):
                continue
            try:
                row = ClipRow.from_cells(cells)
            except ValueError:
                continue
            rows[row.id] = row
    return rows


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

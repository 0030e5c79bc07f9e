"""Annotations for ``mska extract --annotations TABLE --split NAME``: the output becomes a corpus in our
directory format (``docs/data.md``) that ``mska train`` reads with ``[data] source = "directory"``.

The table is any annotation table of the data contract (:func:`mska_core.data.contract.read_annotations`):
the directory format's ``id gloss text`` (one line per input, matched by clip id), a segments table
(``id video start end gloss text``: each line a clip cut from a video) or a PHOENIX-2014T corpus CSV.
For every finished clip of the run, ``OUT/SPLIT/ID.npy`` holds its keypoints normalised as the
directory format expects ([-1, 1], y up, from the clip's own frame size, as MSKA pickles are) and
``OUT/SPLIT.tsv`` its line.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mska_core.data.contract import Annotation, normalize_pixel_array, read_annotations, write_annotations
from mska_core.errors import DataError
from mska_core.extract.outputs import ClipRow, OutputFolder


class Annotations:
    """The rows of an ``--annotations`` table, and gloss and text per clip id."""

    def __init__(self, path: Path, rows: Sequence[Annotation]) -> None:
        self.path = path
        self.rows = list(rows)
        self.lines = {row.clip_id: (row.gloss, row.text) for row in self.rows}

    @classmethod
    def read(cls, path: Path) -> Annotations:
        if not path.is_file():
            raise DataError(f"--annotations {str(path)!r} does not exist; give a TSV with the header "
                            "id<TAB>gloss<TAB>text (or id, video, start, end, gloss, text for segments), or a "
                            "PHOENIX-2014T corpus CSV")
        return cls(path, read_annotations(path, "--annotations table"))

    @property
    def segments(self) -> bool:
        """Whether the rows name their videos (a segments table or a PHOENIX corpus CSV)."""
        return any(row.video is not None for row in self.rows)

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self.lines

    def mirrored(self, clip_id: str) -> bool | None:
        """The row's ``mirrored`` column for ``clip_id`` (``None``: the table does not say)."""
        return next((row.mirrored for row in self.rows if row.clip_id == clip_id), None)


def write_split(root: Path, split: str, rows: Sequence[ClipRow], annotations: Annotations) -> Path:
    """Write ``root/SPLIT/ID.npy`` (normalised) and ``root/SPLIT.tsv`` for ``rows``; return the TSV's path."""
    from mska_core.io import atomic_write_bytes

    folder = OutputFolder(root)
    lines = []
    for row in rows:
        points = np.load(folder.keypoints(row.id), allow_pickle=False)
        buffer = io.BytesIO()
        np.save(buffer, normalize_pixel_array(points, row.width, row.height))
        atomic_write_bytes(root / split / f"{row.id}.npy", buffer.getvalue())
        gloss, text = annotations.lines[row.id]
        lines.append((row.id, gloss, text))
    return atomic_write_bytes(root / f"{split}.tsv", write_annotations(lines))

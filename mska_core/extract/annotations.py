"""Annotations for ``mska extract --annotations TSV --split NAME``: the output becomes a corpus in our
directory format (``docs/data.md``) that ``mska train`` reads with ``[data] source = "directory"``.

The TSV has the directory format's header ``id<TAB>gloss<TAB>text``. For every finished clip of the
run, ``OUT/SPLIT/ID.npy`` holds its keypoints normalised as the directory format expects ([-1, 1], y
up, from the clip's own frame size, as MSKA pickles are) and ``OUT/SPLIT.tsv`` its line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mska_core.errors import DataError
from mska_core.extract.outputs import ClipRow, OutputFolder


class Annotations:
    """Gloss and text per clip id, read from a TSV with the header ``id<TAB>gloss<TAB>text``."""

    def __init__(self, path: Path, lines: dict[str, tuple[str, str]]) -> None:
        self.path = path
        self.lines = lines

    @classmethod
    def read(cls, path: Path) -> Annotations:
        from mska_core.data.directory import HEADER

        if not path.is_file():
            raise DataError(f"--annotations {str(path)!r} does not exist; give a TSV with the header "
                            "id<TAB>gloss<TAB>text")
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not rows or tuple(cell.strip().lower() for cell in rows[0][:3]) != HEADER:
            raise DataError(f"{path}: the first line must be the header 'id<TAB>gloss<TAB>text'")
        lines: dict[str, tuple[str, str]] = {}
        for number, row in enumerate(rows[1:], start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise DataError(f"{path}:{number}: expected id, gloss and text separated by tabs")
            lines[row[0].strip()] = (row[1].strip(), row[2].strip() if len(row) > 2 else "")
        return cls(path, lines)

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self.lines


def write_split(root: Path, split: str, rows: Sequence[ClipRow], annotations: Annotations) -> Path:
    """Write ``root/SPLIT/ID.npy`` (normalised) and ``root/SPLIT.tsv`` for ``rows``; return the TSV's path."""
    from mska_core.io import atomic_write_bytes

    folder = OutputFolder(root)
    lines = ["id\tgloss\ttext"]
    for row in rows:
        points = np.load(folder.keypoints(row.id), allow_pickle=False)
        buffer = io.BytesIO()
        np.save(buffer, normalized(points, row.width, row.height))
        atomic_write_bytes(root / split / f"{row.id}.npy", buffer.getvalue())
        gloss, text = annotations.lines[row.id]
        lines.append(f"{row.id}\t{gloss}\t{text}")
    return atomic_write_bytes(root / f"{split}.tsv", ("\n".join(lines) + "\n").encode("utf-8"))


def normalized(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel keypoints ``[T, J, 3]`` mapped to [-1, 1] with y up, as MSKA pickles are read."""
    import torch

    from mska_core.data.pickles import normalize_pixels

    return normalize_pixels(torch.from_numpy(np.ascontiguousarray(points)), width, height).numpy()

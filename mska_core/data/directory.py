"""Our own directory format: one keypoint file per clip and a TSV per split (see ``docs/data.md``).

::

    ROOT/
      train.tsv            id <TAB> gloss <TAB> text, with that header line
      dev.tsv
      test.tsv
      train/ID.npy         float [T, J, 3]: x, y, confidence (or ID.npz with an array "keypoints")
      dev/ID.npy
      test/ID.npz

Coordinates are in [-1, 1] with y up, unless ``[data] normalize = true``: then they are pixels and are
normalised as MSKA pickles are (``frame_width``, ``frame_height``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mska_core.data.contract import ANNOTATION_HEADER, Annotation, read_annotations, write_annotations
from mska_core.data.samples import Sample
from mska_core.errors import DataError

HEADER = ANNOTATION_HEADER  # the table format is defined in mska_core.data.contract
__all__ = ["HEADER", "KEYPOINT_SUFFIXES", "Annotation", "read_annotations", "read_keypoint_file", "read_split",
           "write_split"]
KEYPOINT_SUFFIXES = (".npy", ".npz")


def read_keypoint_file(path: str | Path) -> Any:
    """A float tensor ``[T, J, C]`` from an ``.npy`` file or an ``.npz`` with an array ``keypoints``."""
    import numpy as np
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"keypoint file {str(path)!r} not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "keypoints" not in archive:
                    raise DataError(f"{path}: an .npz clip needs an array named 'keypoints'; found "
                                    f"{', '.join(archive.files) or 'none'}")
                array = archive["keypoints"]
        else:
            array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a numpy keypoint file ({exc})") from None
    if array.ndim != 3 or array.shape[-1] < 3:
        raise DataError(f"{path}: keypoints have shape {array.shape}, expected [T, J, 3] (x, y, confidence)")
    return torch.from_numpy(np.ascontiguousarray(array[..., :3], dtype=np.float32))


def read_split(root: str | Path, split: str, table: str | None = None, *, normalize: bool = False,
               width: int = 210, height: int = 260) -> list[Sample]:
    """The samples of ``split`` under ``root`` (the TSV is ``table`` or ``SPLIT.tsv``)."""
    from mska_core.data.contract import normalize_pixels

    root = Path(root)
    tsv = root / (table or f"{split}.tsv")
    samples = []
    for row in read_annotations(tsv, f"{split} table"):
        path = _clip_path(root / split, row.clip_id, tsv, row.line)
        keypoints = read_keypoint_file(path)
        if normalize:
            keypoints = normalize_pixels(keypoints, width, height)
        samples.append(Sample(name=row.clip_id, keypoints=keypoints, gloss=row.gloss, text=row.text,
                              path=str(path)))
    return samples


def _clip_path(folder: Path, clip_id: str, tsv: Path, line: int) -> Path:
    for suffix in KEYPOINT_SUFFIXES:
        path = folder / f"{clip_id}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"{tsv}:{line}: no keypoint file for {clip_id!r} (looked for {folder / clip_id}.npy and .npz)")


def write_split(root: str | Path, split: str, samples: list[Sample]) -> Path:
    """Write ``samples`` in the directory format (atomically, file by file); returns the TSV's path."""
    import io

    import numpy as np

    from mska_core.io import atomic_write_bytes

    root = Path(root)
    for sample in samples:
        buffer = io.BytesIO()
        np.save(buffer, sample.keypoints.numpy())
        atomic_write_bytes(root / split / f"{sample.name}.npy", buffer.getvalue())
    return atomic_write_bytes(root / f"{split}.tsv", write_annotations([(s.name, s.gloss, s.text) for s in samples]))

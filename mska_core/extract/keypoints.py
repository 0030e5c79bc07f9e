"""Where a clip's keypoints come from: files that already exist, or a registered keypoint estimator.

Files (``mska extract --keypoints PATH``) are matched to videos by clip id:

- a folder: every ``ID.npy``, ``ID.npz`` (float ``[T, J, 3]``: x, y in pixels, confidence) and
  ``ID.pose`` (pose-format, any header a registered layout reads) below it, searched recursively;
- one such file: the clip of the same name;
- any other file: one MSKA pickle ``{name: {"keypoint": [T, J, 3], ...}}`` in pixels, matched by
  ``name`` or by its last path component (``train/ID`` matches ``ID``).

Every file is read by :mod:`mska_core.data.keypoint_files`, the reader ``mska predict`` and the
``pose`` data source use too. The layout of a file's keypoints is the one its ``.pose`` header maps
onto, or the registered layout with its joint count, unless ``[extract] layout`` names one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mska_core.data.keypoint_files import (
    KEYPOINT_FILE_SUFFIXES,
    KeypointClip,
    keypoint_array,
    read_keypoint_file,
    resolve_layout,
)
from mska_core.errors import DataError

__all__ = ["KEYPOINT_FILE_SUFFIXES", "ClipKeypoints", "EstimatorRef", "KeypointFiles", "KeypointRef",
           "read_keypoints", "resolve_layout"]

#: A clip's points ``float32 [T, J, 3]`` (pixels, confidence) in ``layout``.
ClipKeypoints = KeypointClip


@attrs.frozen
class KeypointRef:
    """A clip's keypoints before they are read: a file (``kind`` ``npy``/``npz``/``pose``) or, for a pickle
    already read, the array itself. Plain data, so it travels to worker processes."""

    kind: str
    path: Path
    name: str
    array: Any = None

    @property
    def source(self) -> str:
        """What ``clips.tsv`` records as the clip's keypoint source."""
        return f"{self.kind}:{self.path}" + (f":{self.name}" if self.kind == "pickle" else "")


@attrs.frozen
class EstimatorRef:
    """A registered keypoint estimator, by name, with the layout and version it reports."""

    name: str
    layout: str
    version: str


class KeypointFiles:
    """The keypoint files under ``--keypoints PATH``, indexed by clip id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._refs: dict[str, KeypointRef] = {}
        if self.path.is_dir():
            self._index_folder()
        elif self.path.is_file() and self.path.suffix in KEYPOINT_FILE_SUFFIXES:
            self._refs[self.path.stem] = KeypointRef(self.path.suffix[1:], self.path, self.path.stem)
        elif self.path.is_file():
            self._index_pickle()
        else:
            raise DataError(f"--keypoints {str(self.path)!r} does not exist; give a folder of .npy/.npz/.pose "
                            "files, one such file, or an MSKA pickle")

    def lookup(self, clip_id: str) -> KeypointRef | None:
        """The keypoints of ``clip_id``, or ``None`` when ``--keypoints`` has none."""
        return self._refs.get(clip_id)

    def describe_missing(self, clip_id: str) -> str:
        if self.path.is_dir():
            return (f"no keypoints for {clip_id!r} (looked for {clip_id}.npy, .npz or .pose under "
                    f"{self.path})")
        return f"no keypoints for {clip_id!r} in {self.path}"

    def _index_folder(self) -> None:
        files = sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix in KEYPOINT_FILE_SUFFIXES)
        for file in files:
            other = self._refs.get(file.stem)
            if other is not None:
                raise DataError(f"two keypoint files for clip {file.stem!r}: {other.path} and {file}; "
                                "keep one")
            self._refs[file.stem] = KeypointRef(file.suffix[1:], file, file.stem)

    def _index_pickle(self) -> None:
        from mska_core.data.pickles import read_pickle

        data = read_pickle(self.path)
        if not isinstance(data, dict):
            raise DataError(f"{self.path}: expected an MSKA pickle, a dict of clips (name -> entry), got "
                            f"{type(data).__name__}")
        for key, entry in data.items():
            if not isinstance(entry, dict) or "keypoint" not in entry:
                raise DataError(f"{self.path}: entry {key!r} lacks 'keypoint' (expected name, gloss, text, "
                                "num_frames, keypoint)")
            name = str(entry.get("name", key))
            array = np.asarray(entry["keypoint"].numpy() if hasattr(entry["keypoint"], "numpy")
                               else entry["keypoint"])
            ref = KeypointRef("pickle", self.path, name, array)
            self._refs[name] = ref
            self._refs.setdefault(name.rsplit("/", 1)[-1], ref)


def read_keypoints(ref: KeypointRef, layouts: Mapping[str, Any], layout: str | None = None) -> KeypointClip:
    """Read the points behind ``ref`` through the one keypoint reader
    (:func:`~mska_core.data.keypoint_files.read_keypoint_file`) and decide their layout (``layouts``
    maps registered names to :class:`~mska_core.records.KeypointLayout` records)."""
    if ref.kind == "pickle":
        return keypoint_array(ref.array, layouts, layout, f"{ref.path}:{ref.name}")
    return read_keypoint_file(ref.path, layouts, layout)

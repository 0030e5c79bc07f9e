"""Where a clip's keypoints come from: files that already exist, or a registered keypoint estimator.

Files (``mska extract --keypoints PATH``) are matched to videos by clip id:

- a folder: every ``ID.npy`` (float ``[T, J, 3]``: x, y in pixels, confidence) and ``ID.pose``
  (pose-format) below it, searched recursively;
- one ``.npy`` or ``.pose`` file: the clip of the same name;
- any other file: one MSKA pickle ``{name: {"keypoint": [T, J, 3], ...}}`` in pixels, matched by
  ``name`` or by its last path component (``train/ID`` matches ``ID``).

The layout of a file's keypoints is the registered layout with its joint count, unless
``[extract] layout`` names one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mska_core.errors import DataError

KEYPOINT_FILE_SUFFIXES = (".npy", ".pose")


@attrs.frozen
class KeypointRef:
    """A clip's keypoints before they are read: a file (``kind`` ``npy``/``pose``) or, for a pickle
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


@attrs.frozen
class ClipKeypoints:
    """A clip's points ``float32 [T, J, 3]`` (pixels, confidence) in ``layout``."""

    points: np.ndarray
    layout: str


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
            raise DataError(f"--keypoints {str(self.path)!r} does not exist; give a folder of .npy/.pose "
                            "files, one such file, or an MSKA pickle")

    def lookup(self, clip_id: str) -> KeypointRef | None:
        """The keypoints of ``clip_id``, or ``None`` when ``--keypoints`` has none."""
        return self._refs.get(clip_id)

    def describe_missing(self, clip_id: str) -> str:
        if self.path.is_dir():
            return (f"no keypoints for {clip_id!r} (looked for {clip_id}.npy or {clip_id}.pose under "
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


def read_keypoints(ref: KeypointRef, layouts: Mapping[str, int], layout: str | None = None) -> ClipKeypoints:
    """Read the points behind ``ref`` and decide their layout (``layouts`` maps names to joint counts)."""
    if ref.kind == "npy":
        try:
            array = np.load(ref.path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{ref.path}: not a numpy keypoint file ({exc})") from None
    elif ref.kind == "pose":
        array, pose_layout = _read_pose(ref.path)
        layout = layout or pose_layout
    else:
        array = ref.array
    array = np.asarray(array)
    where = ref.path if ref.kind != "pickle" else f"{ref.path}:{ref.name}"
    if array.ndim != 3 or array.shape[-1] < 3 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{where}: keypoints have shape {tuple(array.shape)} ({array.dtype}), expected "
                        "numbers [T, J, 3] (x, y in pixels, confidence)")
    points = np.ascontiguousarray(array[..., :3], dtype=np.float32)
    return ClipKeypoints(points=points, layout=resolve_layout(points.shape[1], layouts, layout, where))


def resolve_layout(num_joints: int, layouts: Mapping[str, int], layout: str | None, where: object) -> str:
    """``layout`` if given (checking the joint count), else the one registered layout with ``num_joints``."""
    if layout is not None:
        if layout not in layouts:
            raise DataError(f"[extract] layout {layout!r} is not registered; registered: "
                            f"{', '.join(layouts)}")
        if layouts[layout] != num_joints:
            raise DataError(f"{where}: {num_joints} joints, but layout {layout!r} has {layouts[layout]}")
        return layout
    matches = [name for name, count in layouts.items() if count == num_joints]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{name} ({count})" for name, count in layouts.items())
    if not matches:
        raise DataError(f"{where}: {num_joints} joints per frame match no registered layout ({known})")
    raise DataError(f"{where}: {num_joints} joints fit layouts {', '.join(matches)}; choose one with "
                    "--set extract.layout=NAME")


def _read_pose(path: Path) -> tuple[Any, str | None]:
    """Points ``[T, J, 3]`` in pixels and their layout from a pose-format file."""
    from mska_core.data.pose import read_pose_points

    return read_pose_points(path)

"""The one reader of keypoint files: ``.npy``, ``.npz``, ``.pose`` and MSKA pickle entries.

``[data] source = "pose"``, ``mska extract --keypoints`` and ``mska predict CLIP`` all read a clip's
points through :func:`read_keypoint_file`, so a file that one of them reads, the others read too.

- ``.npy``: float ``[T, J, 3]`` (x, y, confidence); ``.npz``: the same in an array ``keypoints``;
- ``.pose``: pose-format, read through the layouts' header maps (:mod:`mska_core.data.pose`); the
  header's frame size comes with the points;
- an MSKA pickle ``{name: {"keypoint": [T, J, 3], ...}}``: one entry, by name.

The points come back as the file holds them (pixels, or [-1, 1] for a directory-format corpus); the
caller normalises them (:func:`mska_core.data.pickles.normalize_pixels`) with the frame size the file
records, or the one the config names. The layout is the one the file says (``.pose``), the one the
caller asks for, or the registered layout with the points' joint count.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mska_core.errors import DataError

#: The suffixes of keypoint files (anything else given as a keypoint file is read as a pickle).
KEYPOINT_FILE_SUFFIXES = (".npy", ".npz", ".pose")


@attrs.frozen
class KeypointClip:
    """A clip's points float32 ``[T, J, 3]`` as its file holds them, in ``layout``; its ``name`` (the
    file's stem, or the pickle entry's name); the frame size
    ``(width, height)`` the file records (``.pose`` headers; ``None`` for the others), and the kind
    of ``.pose`` header it was read through."""

    points: np.ndarray = attrs.field(repr=False)
    layout: str
    name: str = ""
    frame_size: tuple[int, int] | None = None
    header: str = ""


def read_keypoint_file(path: str | Path, layouts: Mapping[str, Any], layout: str | None = None, *,
                       entry: str | None = None) -> KeypointClip:
    """The points of the keypoint file at ``path`` (an entry ``entry`` of a pickle).

    ``layouts`` maps registered layout names to their :class:`~mska_core.records.KeypointLayout`;
    ``layout`` is the one the points must be in (``None``: decided from the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"keypoint file {str(path)!r} not found")
    if path.suffix == ".pose":
        from mska_core.data.pose import read_pose

        clip = read_pose(path, layouts.values(), layout)
        size = (clip.width, clip.height) if clip.width > 0 and clip.height > 0 else None
        return KeypointClip(points=clip.keypoints, layout=clip.layout, name=path.stem, frame_size=size,
                            header=clip.header)
    if path.suffix in (".npy", ".npz"):
        return attrs.evolve(keypoint_array(_read_numpy(path), layouts, layout, path), name=path.stem)
    name, array = pickle_entry(path, entry)
    return attrs.evolve(keypoint_array(array, layouts, layout, f"{path}:{name}"), name=name)


def keypoint_array(array: Any, layouts: Mapping[str, Any], layout: str | None, where: object) -> KeypointClip:
    """A clip from an array read elsewhere (a pickle entry): checked to be ``[T, J, 3]`` numbers."""
    array = np.asarray(array.numpy() if hasattr(array, "numpy") else array)
    if array.ndim != 3 or array.shape[-1] < 3 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{where}: keypoints have shape {tuple(array.shape)} ({array.dtype}), expected "
                        "numbers [T, J, 3] (x, y, confidence)")
    points = np.ascontiguousarray(array[..., :3], dtype=np.float32)
    return KeypointClip(points=points, layout=resolve_layout(points.shape[1], layouts, layout, where))


def pickle_entry(path: Path, entry: str | None) -> tuple[str, Any]:
    """``(name, keypoint array)`` of one entry of an MSKA pickle (the only one when ``entry`` is ``None``)."""
    from mska_core.data.pickles import read_pickle

    data = read_pickle(path)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: not an MSKA pickle (a dict of clips, name -> entry)")
    if entry is None:
        if len(data) != 1:
            raise DataError(f"{path}: the pickle holds {len(data)} clips; name one as {path}:NAME "
                            f"(e.g. {path}:{next(iter(data))})")
        entry = next(iter(data))
    if entry not in data:
        raise DataError(f"{path}: no clip named {entry!r}")
    value = data[entry]
    if not isinstance(value, dict) or "keypoint" not in value:
        raise DataError(f"{path}: entry {entry!r} lacks 'keypoint' (expected name, gloss, text, num_frames, "
                        "keypoint)")
    return str(entry), value["keypoint"]


def resolve_layout(num_joints: int, layouts: Mapping[str, Any], layout: str | None, where: object) -> str:
    """``layout`` if given (checking the joint count), else the one registered layout with ``num_joints``."""
    if layout is not None:
        if layout not in layouts:
            raise DataError(f"layout {layout!r} is not registered; registered: {', '.join(layouts)}")
        if layouts[layout].num_joints != num_joints:
            raise DataError(f"{where}: {num_joints} joints, but layout {layout!r} has "
                            f"{layouts[layout].num_joints}")
        return layout
    matches = [name for name, record in layouts.items() if record.num_joints == num_joints]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{name} ({record.num_joints})" for name, record in layouts.items())
    if not matches:
        raise DataError(f"{where}: {num_joints} joints per frame match no registered layout ({known})")
    raise DataError(f"{where}: {num_joints} joints fit layouts {', '.join(matches)}; choose one with "
                    "--set extract.layout=NAME")


def _read_numpy(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "keypoints" not in archive:
                    raise DataError(f"{path}: an .npz clip needs an array named 'keypoints'; found "
                                    f"{', '.join(archive.files) or 'none'}")
                return archive["keypoints"]
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a numpy keypoint file ({exc})") from None

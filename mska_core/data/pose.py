"""Reading ``.pose`` files of the sign-language-processing community (the ``pose-format`` library).

A ``.pose`` file keeps a header (named components, each a list of named points, and the frame size)
apart from a body (``[frames, people, points, dims]`` coordinates with a mask, a confidence per point,
and the frame rate). :func:`read_pose` turns one into the points mska-core reads everywhere: float32
``[T, J, 3]`` (x and y in pixels, confidence) in one of our layouts, chosen from the header's
components:

- MediaPipe Holistic (``pose_format.utils.holistic``): ``POSE_LANDMARKS`` (33), ``FACE_LANDMARKS``
  (468, or 478 with refined irises: the first 468 are kept), ``LEFT_HAND_LANDMARKS`` (21),
  ``RIGHT_HAND_LANDMARKS`` (21), in that order -> ``mediapipe_holistic`` (543). Other components
  (``POSE_WORLD_LANDMARKS``) are left out.
- COCO-WholeBody-133 as MMPose writes it (``pose_format.utils.cocowholebody133_header``): ``BODY``
  (23: 17 body points, 6 feet), ``FACE`` (68), ``LEFT_HAND`` (21), ``RIGHT_HAND`` (21) ->
  ``coco_wholebody`` (133).

Only the first person of each frame is read. A masked point (the estimator found nothing) gets
confidence 0 and coordinates 0; confidences are taken as stored (validation on the way in checks them,
see :mod:`mska_core.data.validate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import DataError

#: Header components (name, points taken) that make up each layout, in the layout's joint order.
COMPONENT_LAYOUTS: dict[str, tuple[tuple[str, int], ...]] = {
    "mediapipe_holistic": (
        ("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", 468), ("LEFT_HAND_LANDMARKS", 21),
        ("RIGHT_HAND_LANDMARKS", 21),
    ),
    "coco_wholebody": (("BODY", 23), ("FACE", 68), ("LEFT_HAND", 21), ("RIGHT_HAND", 21)),
}


@attrs.frozen
class PoseClip:
    """The points of one ``.pose`` file: ``keypoints`` float32 numpy ``[T, J, 3]`` (x, y in pixels,
    confidence) in ``layout``, the frame rate, and the frame size the header records."""

    keypoints: Any = attrs.field(repr=False)
    layout: str
    fps: float
    width: int
    height: int


def read_pose(path: str | Path) -> PoseClip:
    """The points, layout, frame rate and frame size of the ``.pose`` file at ``path``.

    Raises :class:`~mska_core.errors.DataError` for a missing or unreadable file, or a header whose
    components map to none of :data:`COMPONENT_LAYOUTS`.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise DataError(f"pose file {str(path)!r} not found")
    try:
        from pose_format import Pose
    except ImportError:  # pragma: no cover - pose-format is a dependency
        raise DataError("reading .pose files needs the pose-format package: pip install pose-format") from None
    try:
        pose = Pose.read(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - the library raises many types for a bad file
        raise DataError(f"{path}: not a readable .pose file ({type(exc).__name__}: {exc})") from None
    header, body = pose.header, pose.body
    layout, columns = _layout_columns(header, path)
    data = np.ma.asarray(body.data)  # [T, people, P, dims]
    confidence = np.asarray(body.confidence, dtype=np.float32)  # [T, people, P]
    if data.ndim != 4 or data.shape[-1] < 2 or confidence.shape != data.shape[:3]:
        raise DataError(f"{path}: pose body has shape {tuple(data.shape)} with confidence "
                        f"{tuple(confidence.shape)}; expected [frames, people, points, dims]")
    frames = data.shape[0]
    if data.shape[1] == 0:  # nobody in any frame
        points = np.zeros((frames, len(columns), 3), dtype=np.float32)
    else:
        first = data[:, 0][:, columns, :2]  # [T, J, 2], masked where not found
        missing = np.ma.getmaskarray(first).any(axis=-1)  # [T, J]
        xy = np.asarray(first.filled(0.0), dtype=np.float32)
        conf = confidence[:, 0][:, columns]
        conf = np.where(missing, np.float32(0.0), conf)
        points = np.concatenate([xy, conf[..., None]], axis=-1).astype(np.float32)
    dims = header.dimensions
    return PoseClip(keypoints=np.ascontiguousarray(points), layout=layout, fps=float(body.fps),
                    width=int(dims.width), height=int(dims.height))


def read_pose_points(path: str | Path) -> tuple[Any, str]:
    """``(keypoints float32 [T, J, 3] in pixels, layout name)`` of a ``.pose`` file (see :func:`read_pose`)."""
    clip = read_pose(path)
    return clip.keypoints, clip.layout


def _layout_columns(header: Any, path: Path) -> tuple[str, list[int]]:
    """The layout a header maps to and, per joint of that layout, its point index in the file."""
    offsets: dict[str, tuple[int, int]] = {}
    start = 0
    for component in header.components:
        offsets[component.name] = (start, len(component.points))
        start += len(component.points)
    for layout, parts in COMPONENT_LAYOUTS.items():
        if all(name in offsets and offsets[name][1] >= count for name, count in parts):
            return layout, [offsets[name][0] + i for name, count in parts for i in range(count)]
    found = ", ".join(f"{name} ({count})" for name, (_, count) in offsets.items()) or "none"
    expected = "; ".join(
        f"{layout}: " + ", ".join(f"{name} ({count})" for name, count in parts)
        for layout, parts in COMPONENT_LAYOUTS.items()
    )
    raise DataError(f"{path}: the pose header's components ({found}) match no known layout; expected {expected}")

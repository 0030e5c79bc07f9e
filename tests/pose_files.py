"""Real ``.pose`` files of every common header kind, written with pose-format's own writer.

The headers are pose-format's: MMPose COCO-WholeBody (``cocowholebody_components``), OpenPose 137
(``OpenPose_Components``), and MediaPipe Holistic as pose-format's Holistic writer lays it out (its
helper imports mediapipe, so the components are built here with MediaPipe's point names), optionally
with world landmarks or refined irises, or reduced by pose-format's own ``reduce_holistic``.

Every writer takes COCO-WholeBody points ``[T, 133, 3]`` in pixels (x, y, confidence) and places them
where the header kind keeps them, so one synthetic clip can be written in every kind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mska_core.layouts import MEDIAPIPE_HAND_POINTS, MEDIAPIPE_POSE_POINTS

#: The COCO-WholeBody joint that each of MediaPipe's 33 pose landmarks is taken from.
HOLISTIC_POSE_FROM_COCO = (0, 1, 1, 1, 2, 2, 2, 3, 4, 0, 0, 5, 6, 7, 8, 9, 10, 9, 10, 9, 10, 9, 10, 11, 12, 13,
                           14, 15, 16, 15, 16, 15, 16)
#: The COCO-WholeBody body joint each OpenPose BODY_25 point is taken from (neck: shoulder, mid-hip: hip).
OPENPOSE_BODY_FROM_COCO = (0, 5, 6, 8, 10, 5, 7, 9, 11, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, 17, 18, 19, 20, 21,
                           22)


def write(path: Path, points: np.ndarray, components: list, *, width: int, height: int, fps: float = 25.0,
          dims: int = 2) -> Path:
    """``points`` ``[T, P, 3]`` (x, y, confidence) as a one-person .pose file; ``dims`` 3 adds z = 0.
    A point with confidence 0 is masked, as estimators write a point they did not find."""
    from numpy import ma
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    points = np.asarray(points, dtype=np.float32)
    xy = points[..., :2] if dims == 2 else np.concatenate([points[..., :2], np.zeros_like(points[..., :1])], -1)
    mask = np.repeat((points[..., 2] == 0)[..., None], dims, axis=-1)
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=components)
    body = NumPyPoseBody(fps=fps, data=ma.masked_array(xy[:, None], mask=mask[:, None]),
                         confidence=points[:, None, :, 2])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        Pose(header, body).write(handle)
    return path


def _component(name: str, points, point_format: str):
    from pose_format.pose_header import PoseHeaderComponent

    return PoseHeaderComponent(name=name, points=list(points), limbs=[], colors=[(255, 255, 255)],
                               point_format=point_format)


def holistic_components(*, world: bool = False, refined: bool = False) -> list:
    """pose-format's Holistic header (POSE, FACE, LEFT_HAND, RIGHT_HAND landmarks, then, with
    ``world``, POSE_WORLD_LANDMARKS), with 478 face points when ``refined``."""
    face = [str(i) for i in range(478 if refined else 468)]
    components = [_component("POSE_LANDMARKS", MEDIAPIPE_POSE_POINTS, "XYZC"),
                  _component("FACE_LANDMARKS", face, "XYZC"),
                  _component("LEFT_HAND_LANDMARKS", MEDIAPIPE_HAND_POINTS, "XYZC"),
                  _component("RIGHT_HAND_LANDMARKS", MEDIAPIPE_HAND_POINTS, "XYZC")]
    if world:
        components.append(_component("POSE_WORLD_LANDMARKS", MEDIAPIPE_POSE_POINTS, "XYZC"))
    return components


def holistic_points(coco: np.ndarray, *, world: bool = False, refined: bool = False) -> np.ndarray:
    """Holistic points ``[T, 543 (+10) (+33), 3]`` from COCO-WholeBody points: pose landmarks from the
    nearest body joint, the face mesh from the 68 face points in turn, the hands as they are."""
    pose = coco[:, list(HOLISTIC_POSE_FROM_COCO)]
    face = coco[:, [23 + i % 68 for i in range(478 if refined else 468)]]
    parts = [pose, face, coco[:, 91:112], coco[:, 112:133]]
    if world:
        world_points = pose.copy()
        world_points[..., :2] = world_points[..., :2] / 1000.0  # metres around the hips
        parts.append(world_points)
    return np.concatenate(parts, axis=1)


def write_holistic(path: Path, coco: np.ndarray, *, width: int, height: int, world: bool = False,
                   refined: bool = False, reduced: bool = False) -> Path:
    """A Holistic .pose file of ``coco``'s clip; ``reduced`` passes it through pose-format's
    ``reduce_holistic`` (178 points) before writing."""
    write(path, holistic_points(coco, world=world, refined=refined), holistic_components(world=world, refined=refined),
          width=width, height=height, dims=3)
    if reduced:
        from pose_format import Pose
        from pose_format.utils.generic import reduce_holistic

        pose = reduce_holistic(Pose.read(path.read_bytes()))
        with open(path, "wb") as handle:
            pose.write(handle)
    return path


def write_openpose(path: Path, coco: np.ndarray, *, width: int, height: int) -> Path:
    """An OpenPose BODY_25 + face (70) + hands .pose file (137 points, 2-D with confidence)."""
    from pose_format.utils.openpose import OpenPose_Components

    face = coco[:, 23:91]
    pupils = face[:, [37, 43]]  # near the eyes
    points = np.concatenate([coco[:, list(OPENPOSE_BODY_FROM_COCO)], face, pupils, coco[:, 91:112],
                             coco[:, 112:133]], axis=1)
    return write(path, points, OpenPose_Components, width=width, height=height)


def write_mmpose(path: Path, coco: np.ndarray, *, width: int, height: int) -> Path:
    """An MMPose COCO-WholeBody .pose file (pose-format's header: BODY 23, FACE 68, hands 21 + 21)."""
    from pose_format.utils.cocowholebody133_header import cocowholebody_components

    return write(path, coco, cocowholebody_components(), width=width, height=height)


#: Every header kind: name -> (writer, the layout it reads into).
KINDS = {
    "holistic": (lambda p, c, **kw: write_holistic(p, c, **kw), "mediapipe_holistic"),
    "holistic-world": (lambda p, c, **kw: write_holistic(p, c, world=True, **kw), "mediapipe_holistic"),
    "holistic-refined": (lambda p, c, **kw: write_holistic(p, c, refined=True, **kw), "mediapipe_holistic"),
    "holistic-reduced": (lambda p, c, **kw: write_holistic(p, c, world=True, reduced=True, **kw),
                         "mediapipe_holistic"),
    "openpose-137": (write_openpose, "coco_wholebody"),
    "mmpose-wholebody": (write_mmpose, "coco_wholebody"),
}

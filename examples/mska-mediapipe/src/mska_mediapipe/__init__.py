"""MediaPipe Holistic as a keypoint estimator for ``mska extract --estimator mediapipe-holistic``.

Holistic's landmarks become mska-core's ``mediapipe_holistic`` layout (543 joints): pose 0–32, face
mesh 33–500, left hand 501–521, right hand 522–542, "left" being the signer's left as in Holistic.
x and y are pixels of the frame; a pose point's confidence is its visibility, a face or hand point's
is 1 when Holistic found that part and 0 (all of the part) when it did not.

Importing this module imports nothing heavy: mediapipe is imported when the estimator is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mska_core import KeypointEstimator, hookimpl

__version__ = "0.1.0"

#: (first joint, number of joints) of each Holistic part in the ``mediapipe_holistic`` layout.
PARTS = {
    "pose_landmarks": (0, 33),
    "face_landmarks": (33, 468),
    "left_hand_landmarks": (501, 21),
    "right_hand_landmarks": (522, 21),
}
NUM_JOINTS = 543

#: Options ``build`` accepts, with their defaults (Holistic's own names).
DEFAULTS: dict[str, Any] = {
    "static_image_mode": False,  # track between frames, as in a video
    "min_detection_confidence": 0.5,
    "min_tracking_confidence": 0.5,
    "smooth_landmarks": True,
}


class HolisticEstimator:
    """Maps one RGB frame (``uint8 [H, W, 3]``) to ``float32 [543, 3]`` points (pixels, confidence)."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        import mediapipe as mp

        settings = {**DEFAULTS, **{k: v for k, v in dict(options or {}).items() if k in DEFAULTS}}
        # model complexity 1 is the pose model the 0.10.21 wheel ships; the face mesh is the 468-point one
        self._holistic = mp.solutions.holistic.Holistic(model_complexity=1, refine_face_landmarks=False,
                                                        **settings)

    def __call__(self, frame: Any) -> Any:
        import numpy as np

        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        height, width = frame.shape[:2]
        results = self._holistic.process(frame)
        return landmarks_to_points(results, width, height)

    def close(self) -> None:
        self._holistic.close()


def landmarks_to_points(results: Any, width: int, height: int) -> Any:
    """Holistic's results as ``float32 [543, 3]`` in the ``mediapipe_holistic`` layout."""
    import numpy as np

    points = np.zeros((NUM_JOINTS, 3), dtype=np.float32)
    for attribute, (start, count) in PARTS.items():
        found = getattr(results, attribute, None)
        if found is None:
            continue
        marks = found.landmark
        xy = np.array([(m.x * width, m.y * height) for m in marks[:count]], dtype=np.float32)
        points[start:start + len(xy), :2] = xy
        if attribute == "pose_landmarks":
            points[start:start + len(xy), 2] = np.clip([m.visibility for m in marks[:count]], 0.0, 1.0)
        else:
            points[start:start + len(xy), 2] = 1.0
    return points


def build(options: Mapping[str, Any]) -> HolisticEstimator:
    return HolisticEstimator(options)


@hookimpl
def mska_keypoint_estimators() -> list[KeypointEstimator]:
    return [
        KeypointEstimator(
            name="mediapipe-holistic",
            layout="mediapipe_holistic",
            build=build,
            description="MediaPipe Holistic 0.10.21 (pose, face mesh, hands; offline models, complexity 1)",
        )
    ]

"""The ``body`` stream: the union of both hand streams and the face stream (79 points), as in MSKA.

The order is the paper's: left arm and hand, right arm and hand (without the shared nose), face.
"""

from __future__ import annotations

from mska_core import StreamSpec, hookimpl

_COCO_FACE = (23, 26, 29, 33, 36, 39, 41, 43, 46, 48, 53, 56, 59, 62, 65, 68,
              71, 72, 73, 74, 75, 76, 77, 79, 80, 81)
_MP_FACE = tuple(33 + i for i in (162, 58, 149, 377, 365, 389, 63, 66, 296, 293, 4, 2, 33, 133,
                                  362, 263, 61, 39, 37, 0, 267, 269, 291, 314, 17, 84))

COCO_WHOLEBODY_BODY = (
    0, 1, 3, 5, 7, 9, *range(91, 112),
    2, 4, 6, 8, 10, *range(112, 133),
    *_COCO_FACE,
)
MEDIAPIPE_HOLISTIC_BODY = (
    0, 2, 7, 11, 13, 15, *range(501, 522),
    5, 8, 12, 14, 16, *range(522, 543),
    *_MP_FACE,
)


@hookimpl
def mska_streams() -> list[StreamSpec]:
    return [
        StreamSpec(
            name="body",
            description="both arms and hands with the face (79 points)",
            joints={"coco_wholebody": COCO_WHOLEBODY_BODY, "mediapipe_holistic": MEDIAPIPE_HOLISTIC_BODY},
            weight_group="body",
            crops=False,
        )
    ]

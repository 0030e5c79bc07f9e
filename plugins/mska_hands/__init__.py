"""The ``hand_left`` and ``hand_right`` streams: each hand with the arm and head points, as in MSKA.

Both streams belong to the weight group ``hand``: one pretrained hand encoder initialises both.
"""

from __future__ import annotations

from mska_core import CropRegion, StreamSpec, hookimpl

#: COCO-WholeBody: nose, one eye, one ear, shoulder, elbow, wrist, then the 21 hand points.
COCO_WHOLEBODY_LEFT = (0, 1, 3, 5, 7, 9, *range(91, 112))
COCO_WHOLEBODY_RIGHT = (0, 2, 4, 6, 8, 10, *range(112, 133))

#: MediaPipe Holistic: the same six pose points (nose, eye, ear, shoulder, elbow, wrist), then the
#: hand's 21 landmarks (left hand at 501–521, right hand at 522–542).
MEDIAPIPE_HOLISTIC_LEFT = (0, 2, 7, 11, 13, 15, *range(501, 522))
MEDIAPIPE_HOLISTIC_RIGHT = (0, 5, 8, 12, 14, 16, *range(522, 543))


def _hand_crop(coco_wholebody: range, mediapipe_holistic: range) -> CropRegion:
    """A crop around the 21 hand points only (not the arm), with room for the fingers' spread."""
    return CropRegion(
        joints={"coco_wholebody": coco_wholebody, "mediapipe_holistic": mediapipe_holistic},
        scale=1.6,
        min_size=24,
        render_as="hand",
    )


@hookimpl
def mska_streams() -> list[StreamSpec]:
    return [
        StreamSpec(
            name="hand_left",
            description="left hand with arm and head points (27 points)",
            joints={"coco_wholebody": COCO_WHOLEBODY_LEFT, "mediapipe_holistic": MEDIAPIPE_HOLISTIC_LEFT},
            weight_group="hand",
            crop_region=_hand_crop(range(91, 112), range(501, 522)),
        ),
        StreamSpec(
            name="hand_right",
            description="right hand with arm and head points (27 points)",
            joints={"coco_wholebody": COCO_WHOLEBODY_RIGHT, "mediapipe_holistic": MEDIAPIPE_HOLISTIC_RIGHT},
            weight_group="hand",
            crop_region=_hand_crop(range(112, 133), range(522, 543)),
        ),
    ]

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


#: The hand crop's side over its 21 landmarks' extent. Measured (``python -m bench.hand_crops``,
#: bench/RESULTS.md): on rendered hands every scale from 1.2 keeps the whole hand (10th-percentile
#: coverage 1.000) and the hand's share of the crop falls as the scale grows (0.37 at 1.2, 0.31 at 1.3,
#: 0.21 at the former 1.6, where a hand near the face brings half the face along). 1.3 is the smallest
#: scale that keeps every rendered hand whole, plus one step for the jitter of estimated landmarks.
HAND_CROP_SCALE = 1.3


def _hand_crop(coco_wholebody: range, mediapipe_holistic: range) -> CropRegion:
    """A crop around the 21 hand points only (not the arm), at :data:`HAND_CROP_SCALE`."""
    return CropRegion(
        joints={"coco_wholebody": coco_wholebody, "mediapipe_holistic": mediapipe_holistic},
        scale=HAND_CROP_SCALE,
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

"""The ``face`` stream: 26 face points (jaw, brows, nose, eyes, lips), as in the MSKA paper."""

from __future__ import annotations

from mska_core import CropRegion, StreamSpec, hookimpl

#: The paper's 26 COCO-WholeBody face points (a subset of the 68 points at 23–90).
COCO_WHOLEBODY_FACE = (
    23, 26, 29, 33, 36, 39,  # jaw
    41, 43, 46, 48,  # eyebrows
    53, 56,  # nose tip and base
    59, 62, 65, 68,  # eye corners
    71, 72, 73, 74, 75, 76, 77, 79, 80, 81,  # outer lips
)

#: The same 26 points in MediaPipe Holistic (face mesh starts at joint 33), through the usual
#: correspondence between the 68 points of 300W and the 468-point face mesh.
MEDIAPIPE_HOLISTIC_FACE = tuple(
    33 + i
    for i in (
        162, 58, 149, 377, 365, 389,  # jaw
        63, 66, 296, 293,  # eyebrows
        4, 2,  # nose tip and base
        33, 133, 362, 263,  # eye corners
        61, 39, 37, 0, 267, 269, 291, 314, 17, 84,  # outer lips
    )
)


@hookimpl
def mska_streams() -> list[StreamSpec]:
    return [
        StreamSpec(
            name="face",
            description="face: jaw, brows, nose, eyes and lips (26 points)",
            joints={
                "coco_wholebody": COCO_WHOLEBODY_FACE,
                "mediapipe_holistic": MEDIAPIPE_HOLISTIC_FACE,
            },
            weight_group="face",
            # the crop spans all 68 face points (COCO-WholeBody) or the whole face mesh (MediaPipe)
            crop_region=CropRegion(
                joints={"coco_wholebody": range(23, 91), "mediapipe_holistic": range(33, 501)},
                scale=1.3,
                min_size=32,
                render_as="face",
            ),
        )
    ]

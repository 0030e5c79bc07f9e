"""A ``mouth`` stream for mska-core: the 20 lip points (outer and inner contour) of each layout.

Mouthings carry lexical information in many sign languages; a dedicated stream lets the encoder
attend to the lips on their own. This module only declares the stream: mska-core builds its keypoint
branch, fuses it with the others, and loads its weights.
"""

from __future__ import annotations

from mska_core import CropRegion, StreamSpec, hookimpl

__version__ = "0.1.0"

#: COCO-WholeBody: points 48-67 of the 68-point face (71-90 in the whole body).
COCO_WHOLEBODY_LIPS = tuple(range(71, 91))

#: MediaPipe Holistic: the face-mesh landmarks that correspond to those 20 points (the face mesh
#: starts at joint 33 of the holistic layout).
MEDIAPIPE_HOLISTIC_LIPS = tuple(
    33 + i
    for i in (61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer contour
              78, 82, 13, 312, 308, 317, 14, 87)  # inner contour
)


@hookimpl
def mska_streams() -> list[StreamSpec]:
    return [
        StreamSpec(
            name="mouth",
            description="lips: outer and inner contour (20 points)",
            joints={"coco_wholebody": COCO_WHOLEBODY_LIPS, "mediapipe_holistic": MEDIAPIPE_HOLISTIC_LIPS},
            weight_group="mouth",
            # a crop around the lips for `mska extract` and crop backbones; the synthetic corpus
            # draws no mouth sprite (render_as is unset)
            crop_region=CropRegion(
                joints={"coco_wholebody": COCO_WHOLEBODY_LIPS, "mediapipe_holistic": MEDIAPIPE_HOLISTIC_LIPS},
                scale=1.8,
                min_size=16,
            ),
        )
    ]

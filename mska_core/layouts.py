"""The keypoint layouts mska-core supplies (a built-in plugin).

- ``coco_wholebody``: 133 joints as produced by COCO-WholeBody models (HRNet, RTMPose): body 0–16,
  feet 17–22, face 23–90 (the 68 points of 300W), left hand 91–111, right hand 112–132.
- ``mediapipe_holistic``: 543 joints as MediaPipe Holistic's landmarks concatenated in the order
  pose (33), face mesh (468), left hand (21), right hand (21). "Left" is the signer's left in both.
"""

from __future__ import annotations

from mska_core.hookspecs import hookimpl
from mska_core.records import KeypointLayout

COCO_WHOLEBODY = KeypointLayout(
    name="coco_wholebody",
    num_joints=133,
    parts={
        "body": range(17),
        "feet": range(17, 23),
        "face": range(23, 91),
        "left_hand": range(91, 112),
        "right_hand": range(112, 133),
    },
    description="COCO-WholeBody, 133 joints (body, feet, 68 face points, two hands)",
)

MEDIAPIPE_HOLISTIC = KeypointLayout(
    name="mediapipe_holistic",
    num_joints=543,
    parts={
        "pose": range(33),
        "face": range(33, 501),
        "left_hand": range(501, 522),
        "right_hand": range(522, 543),
    },
    description="MediaPipe Holistic, 543 joints (pose 33, face mesh 468, left hand 21, right hand 21)",
)


@hookimpl
def mska_keypoint_layouts() -> list[KeypointLayout]:
    return [COCO_WHOLEBODY, MEDIAPIPE_HOLISTIC]

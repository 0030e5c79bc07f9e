"""The keypoint layouts mska-core supplies (a built-in plugin), and the ``.pose`` headers they read.

- ``coco_wholebody``: 133 joints as produced by COCO-WholeBody models (HRNet, RTMPose): body 0–16,
  feet 17–22, face 23–90 (the 68 points of 300W), left hand 91–111, right hand 112–132. ``.pose``
  files of MMPose's COCO-WholeBody header (``BODY``, ``FACE``, ``LEFT_HAND``, ``RIGHT_HAND``) and of
  OpenPose BODY_25 + face + hands (137 points: the neck, mid-hip and the two pupils are left out) map
  onto it.
- ``mediapipe_holistic``: 543 joints as MediaPipe Holistic's landmarks concatenated in the order
  pose (33), face mesh (468), left hand (21), right hand (21). ``.pose`` files of pose-format's
  Holistic header map onto it: full, with world landmarks (left out), with refined irises (the ten
  iris points left out), and pose-format's ``reduce_holistic`` (178 points: 8 pose, 128 face contour
  points and the hands; the other joints are missing, at confidence 0).

"Left" is the signer's left in both. The point names below are those pose-format writes.
"""

from __future__ import annotations

from mska_core.hookspecs import hookimpl
from mska_core.records import KeypointLayout, PoseHeaderMap

# --- MediaPipe Holistic --------------------------------------------------------------------------

#: MediaPipe's pose landmarks, in order (``PoseLandmark``).
MEDIAPIPE_POSE_POINTS = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE",
    "RIGHT_EYE_OUTER", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
    "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY", "RIGHT_PINKY",
    "LEFT_INDEX", "RIGHT_INDEX", "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP", "LEFT_KNEE",
    "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE", "LEFT_HEEL", "RIGHT_HEEL", "LEFT_FOOT_INDEX",
    "RIGHT_FOOT_INDEX",
)

#: MediaPipe's hand landmarks, in order (``HandLandmark``).
MEDIAPIPE_HAND_POINTS = (
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP", "INDEX_FINGER_MCP", "INDEX_FINGER_PIP",
    "INDEX_FINGER_DIP", "INDEX_FINGER_TIP", "MIDDLE_FINGER_MCP", "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP",
    "MIDDLE_FINGER_TIP", "RING_FINGER_MCP", "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP",
    "PINKY_MCP", "PINKY_PIP", "PINKY_DIP", "PINKY_TIP",
)

#: The face mesh's 468 points are named by their index.
MEDIAPIPE_FACE_POINTS = tuple(str(i) for i in range(468))


def _named(points: tuple[str, ...], first: int) -> dict[str, int]:
    return {name: first + i for i, name in enumerate(points)}


MEDIAPIPE_HOLISTIC_HEADER = PoseHeaderMap(
    name="mediapipe_holistic",
    components={
        "POSE_LANDMARKS": _named(MEDIAPIPE_POSE_POINTS, 0),
        "FACE_LANDMARKS": _named(MEDIAPIPE_FACE_POINTS, 33),
        "LEFT_HAND_LANDMARKS": _named(MEDIAPIPE_HAND_POINTS, 501),
        "RIGHT_HAND_LANDMARKS": _named(MEDIAPIPE_HAND_POINTS, 522),
    },
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
    pose_headers=(MEDIAPIPE_HOLISTIC_HEADER,),
    # the pose's left/right pairs and the hands; the face mesh's points keep their indices
    mirror=((1, 4), (2, 5), (3, 6), *((i, i + 1) for i in range(7, 33, 2)),
            *((501 + k, 522 + k) for k in range(21))),
)

# --- COCO-WholeBody ------------------------------------------------------------------------------

#: COCO-WholeBody's body and feet points as MMPose (and pose-format's header for it) names them.
COCO_BODY_POINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle", "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)

COCO_WHOLEBODY_HEADER = PoseHeaderMap(
    name="coco_wholebody_133",
    components={
        "BODY": _named(COCO_BODY_POINTS, 0),
        "FACE": _named(tuple(f"face-{i}" for i in range(68)), 23),
        "LEFT_HAND": _named(tuple(f"hand_{i}" for i in range(21)), 91),
        "RIGHT_HAND": _named(tuple(f"hand_{i}" for i in range(21)), 112),
    },
)

#: OpenPose BODY_25 points and the COCO-WholeBody joint each becomes (the neck and mid-hip have none).
OPENPOSE_BODY_JOINTS = {
    "Nose": 0, "LEye": 1, "REye": 2, "LEar": 3, "REar": 4, "LShoulder": 5, "RShoulder": 6, "LElbow": 7,
    "RElbow": 8, "LWrist": 9, "RWrist": 10, "LHip": 11, "RHip": 12, "LKnee": 13, "RKnee": 14, "LAnkle": 15,
    "RAnkle": 16, "LBigToe": 17, "LSmallToe": 18, "LHeel": 19, "RBigToe": 20, "RSmallToe": 21, "RHeel": 22,
}

#: OpenPose's 70 face points as pose-format names them: the 68 points of 300W, then two pupils.
OPENPOSE_FACE_POINTS = (
    *(f"FB_{i}" for i in range(17)), *(f"FEB_{i}" for i in range(17, 27)), *(f"FN_{i}" for i in range(27, 36)),
    *(f"FE_{i}" for i in range(36, 48)), *(f"FLO_{i}" for i in range(48, 60)),
    *(f"FLI_{i}" for i in range(60, 68)), "FP_68", "FP_69",
)

#: OpenPose's hand points as pose-format names them (the order of COCO-WholeBody's hands).
OPENPOSE_HAND_POINTS = (
    "BASE", "T_STT", "T_BCMC", "T_MCP", "T_IP", "I_CMC", "I_MCP", "I_PIP", "I_DIP", "M_CMC", "M_MCP", "M_PIP",
    "M_DIP", "R_CMC", "R_MCP", "R_PIP", "R_DIP", "P_CMC", "P_MCP", "P_PIP", "P_DIP",
)

OPENPOSE_137_HEADER = PoseHeaderMap(
    name="openpose_137",
    components={
        "pose_keypoints_2d": OPENPOSE_BODY_JOINTS,
        "face_keypoints_2d": _named(OPENPOSE_FACE_POINTS[:68], 23),
        "hand_left_keypoints_2d": _named(OPENPOSE_HAND_POINTS, 91),
        "hand_right_keypoints_2d": _named(OPENPOSE_HAND_POINTS, 112),
    },
    required=("pose_keypoints_2d",),
)


def _face_300w_mirror(first: int) -> tuple[tuple[int, int], ...]:
    """The left/right pairs of the 68 points of 300W (jaw, brows, nose, eyes, lips), from ``first``."""
    pairs = [(k, 16 - k) for k in range(8)]  # jaw
    pairs += [(17 + k, 26 - k) for k in range(5)]  # eyebrows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lips
    pairs += [(60, 64), (61, 63), (67, 65)]  # inner lips
    return tuple((first + a, first + b) for a, b in pairs)


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
    pose_headers=(COCO_WHOLEBODY_HEADER, OPENPOSE_137_HEADER),
    mirror=(*((i, i + 1) for i in range(1, 17, 2)), (17, 20), (18, 21), (19, 22), *_face_300w_mirror(23),
            *((91 + k, 112 + k) for k in range(21))),
)


@hookimpl
def mska_keypoint_layouts() -> list[KeypointLayout]:
    return [COCO_WHOLEBODY, MEDIAPIPE_HOLISTIC]

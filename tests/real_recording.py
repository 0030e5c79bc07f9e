"""A short real recording: scikit-image's photograph of a real person (``skimage.data.astronaut()``,
Eileen Collins) made into a video in which she moves up and down, so that her gloved right hand (at
the photograph's bottom left) leaves the frame for most of the clip, while her left hand is never in
view — as in a phone recording where the other hand holds the phone.

Its keypoints are written with pose-format (MMPose's COCO-WholeBody header), placed by hand on the
photograph (face, shoulders, elbows, the glove) and moved with it; where the glove is out of view the
hand's points are not found (masked, confidence 0), as an estimator reports them, while the wrist is
extrapolated far below the frame with a low confidence, as MediaPipe Holistic does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The frame, and the scale at which the 512-px photograph is pasted into it.
SIZE, SCALE, FPS, FRAMES = 256, 0.55, 12, 24
#: Where things are on the 512-px photograph (x, y), placed by eye.
FACE_CENTRE, FACE_HALF = (225.0, 128.0), (48.0, 58.0)
GLOVE = (152.0, 494.0)  # her right hand (the image's left), at the bottom edge
SHOULDERS = {6: (112.0, 300.0), 5: (338.0, 300.0)}  # COCO: right, left shoulder
ELBOWS = {8: (58.0, 430.0), 7: (372.0, 440.0)}


def offset(frame: int) -> tuple[float, float]:
    """Where the photograph's top-left corner is in ``frame``: she moves up and down (and a little sideways)."""
    angle = 2 * np.pi * frame / FRAMES
    return (-8.0 + 6.0 * np.sin(angle), -14.0 - 26.0 * np.cos(angle))


def photo() -> np.ndarray:
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut())
    side = int(round(512 * SCALE))
    return np.asarray(image.resize((side, side), Image.BILINEAR))


def frames() -> list[np.ndarray]:
    """The RGB frames: the photograph pasted at :func:`offset` on a grey background."""
    from PIL import Image

    picture = Image.fromarray(photo())
    out = []
    for index in range(FRAMES):
        canvas = Image.new("RGB", (SIZE, SIZE), (90, 90, 90))
        dx, dy = offset(index)
        canvas.paste(picture, (int(round(dx)), int(round(dy))))
        out.append(np.asarray(canvas))
    return out


def _face_points() -> np.ndarray:
    """The 68 face points of 300W on the photograph: jaw, brows, nose, eyes, lips around the face."""
    cx, cy = FACE_CENTRE
    hx, hy = FACE_HALF
    points = []
    for t in np.linspace(np.pi, 0, 17):  # jaw, from her right ear to her left ear, under the chin
        points.append((cx - hx * np.cos(t), cy + hy * np.sin(t) * 0.95 - 10))
    for side in (-1, 1):  # brows
        for k in range(5):
            points.append((cx + side * (10 + 7 * k) if side > 0 else cx - 38 + 7 * k, cy - 30 - 3 * np.sin(k)))
    for k in range(4):  # nose bridge
        points.append((cx, cy - 20 + 8 * k))
    for k in range(5):  # nostrils
        points.append((cx - 10 + 5 * k, cy + 16))
    for side in (-1, 1):  # eyes
        ex = cx + side * 24
        for angle in np.linspace(0, 2 * np.pi, 6, endpoint=False):
            points.append((ex + 9 * np.cos(angle), cy - 12 + 4 * np.sin(angle)))
    for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False):  # outer lips
        points.append((cx + 20 * np.cos(angle), cy + 32 + 8 * np.sin(angle)))
    for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):  # inner lips
        points.append((cx + 14 * np.cos(angle), cy + 32 + 4 * np.sin(angle)))
    return np.asarray(points)


def _hand_points() -> np.ndarray:
    """21 points over the glove: the wrist, then four joints of each finger fanning out."""
    wx, wy = GLOVE[0] + 22, GLOVE[1] - 10
    points = [(wx, wy)]
    for finger in range(5):
        angle = np.pi * (0.55 + 0.12 * finger)
        for joint in range(1, 5):
            points.append((wx + 11 * joint * np.cos(angle), wy + 7 * joint * np.sin(angle)))
    return np.asarray(points)


def keypoints() -> np.ndarray:
    """COCO-WholeBody points ``[FRAMES, 133, 3]`` in the video's pixels: face, shoulders, elbows and
    the right hand while its glove is in view; the left hand never found."""
    base = np.zeros((133, 3), dtype=np.float32)
    base[23:91, :2] = _face_points()
    base[23:91, 2] = 0.95
    base[0, :2], base[0, 2] = (FACE_CENTRE[0], FACE_CENTRE[1] + 8), 0.95  # nose
    base[1, :2], base[2, :2] = (FACE_CENTRE[0] + 24, FACE_CENTRE[1] - 12), (FACE_CENTRE[0] - 24, FACE_CENTRE[1] - 12)
    base[3, :2], base[4, :2] = (FACE_CENTRE[0] + 50, FACE_CENTRE[1]), (FACE_CENTRE[0] - 50, FACE_CENTRE[1])
    base[1:5, 2] = 0.9
    for joints in (SHOULDERS, ELBOWS):
        for joint, xy in joints.items():
            base[joint, :2], base[joint, 2] = xy, 0.85
    base[10, :2], base[10, 2] = (GLOVE[0] + 22, GLOVE[1] - 10), 0.7  # right wrist
    base[112:133, :2], base[112:133, 2] = _hand_points(), 0.9
    out = np.zeros((FRAMES, 133, 3), dtype=np.float32)
    for index in range(FRAMES):
        dx, dy = offset(index)
        points = base.copy()
        points[:, 0] = points[:, 0] * SCALE + dx
        points[:, 1] = points[:, 1] * SCALE + dy
        points[base[:, 2] == 0] = 0.0
        if not hand_in_view(index):
            points[112:133] = 0.0  # the estimator finds no hand, but extrapolates the wrist below the frame
            points[10] = (points[10, 0], SIZE + EXTRAPOLATED, 0.3)
        out[index] = points
    return out


#: How far below the frame the estimator puts the wrist it cannot see (MediaPipe Holistic does this).
EXTRAPOLATED = 400.0


def hand_in_view(frame: int) -> bool:
    """Whether the glove is well inside the frame (its centre at least 16 px above the bottom edge)."""
    return GLOVE[1] * SCALE + offset(frame)[1] <= SIZE - 16


def write_recording(folder: Path, clip_id: str = "astronaut") -> tuple[Path, Path]:
    """``folder/videos/ID.mp4`` (H.264, PyAV) and ``folder/poses/ID.pose``; returns both paths."""
    import av
    from pose_files import write_mmpose

    video = folder / "videos" / f"{clip_id}.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.options = {"crf": "18"}
        for rgb in frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    pose = write_mmpose(folder / "poses" / f"{clip_id}.pose", keypoints(), width=SIZE, height=SIZE)
    return video, pose

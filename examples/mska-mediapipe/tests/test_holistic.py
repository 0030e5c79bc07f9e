"""MediaPipe Holistic on a real photograph (scikit-image's astronaut) made into a short video.

Skips with the reason when mediapipe 0.10.21 (which bundles the Holistic models) or scikit-image is not
installed: see this example's README for the environment they need.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

mp = pytest.importorskip("mediapipe", reason="mediapipe==0.10.21 is not installed (it needs numpy<2; see README)")
data = pytest.importorskip("skimage.data", reason="scikit-image (the astronaut photograph) is not installed")

import mska_mediapipe

from mska_core.registry import make_registry

#: Where the astronaut's face lies in the 512 x 512 photograph: x from, x to, y from, y to (pixels).
FACE_BOX = (150, 290, 40, 220)


def astronaut_video(path: Path, frames: int = 6) -> Path:
    """The photograph, shifted a few pixels per frame, as an H.264 mp4 (PyAV)."""
    import av

    image = data.astronaut()
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        for t in range(frames):
            frame = np.roll(image, 2 * t, axis=1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def inside_face(points: np.ndarray) -> np.ndarray:
    x0, x1, y0, y1 = FACE_BOX
    return (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)


def test_the_plugin_registers_one_estimator_in_the_mediapipe_holistic_layout():
    registry = make_registry(mska_mediapipe)
    record = registry.keypoint_estimators.get("mediapipe-holistic")
    assert record.layout == "mediapipe_holistic"
    assert registry.layouts.get(record.layout).num_joints == mska_mediapipe.NUM_JOINTS == 543


def test_holistic_finds_the_astronaut_s_face_and_pose():
    record = make_registry(mska_mediapipe).keypoint_estimators.get("mediapipe-holistic")
    estimator = record.build({"static_image_mode": True})
    try:
        points = estimator(data.astronaut())
    finally:
        estimator.close()
    assert points.shape == (543, 3) and points.dtype == np.float32
    face, pose = points[33:501], points[0:33]
    assert (face[:, 2] == 1).all(), "no face found"
    assert inside_face(face).mean() > 0.95
    assert pose[0, 2] > 0.5 and inside_face(pose[:1]).all(), "the pose's nose is not on the face"
    assert (pose[11:13, 2] > 0.5).all(), "both shoulders should be visible"


def test_mska_extract_runs_the_estimator_on_a_video(tmp_path: Path):
    video = astronaut_video(tmp_path / "astronaut.mp4")
    out = tmp_path / "out"
    env = dict(os.environ, MSKA_LOAD_PLUGINS="mediapipe")
    result = subprocess.run([sys.executable, "-m", "mska_core", "extract", str(video), "--estimator",
                             "mediapipe-holistic", "--out", str(out), "--streams", "face", "--no-progress"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    points = np.load(out / "keypoints" / "astronaut.npy")
    assert points.shape == (6, 543, 3)
    assert (points[:, 33:501, 2] == 1).all(), "the face was lost in some frame"
    row = (out / "clips.tsv").read_text().splitlines()[1].split("\t")
    assert row[6:9] == ["mediapipe_holistic", "estimator:mediapipe-holistic", mska_mediapipe.__version__]
    from mska_core.data.crop_pack import CropPack

    assert len(CropPack(out / "crops" / "face" / "astronaut.crops")) == 6  # one packed file, six crops
    with np.load(out / "boxes" / "astronaut.npz") as boxes:
        assert not boxes["face_missing"].any()
        x, y, side = boxes["face"][0]
    x0, x1, y0, y1 = FACE_BOX
    assert x0 - 40 <= x and x + side <= x1 + 40 and y0 - 40 <= y and y + side <= y1 + 40

"""Coordinates are checked on the way in: joints beyond the frame by more than ``[data] frame_margin``,
and frame sizes that contradict the points, are refused (naming the clip and the fraction of its
joints) or repaired (clamped to the border, confidence 0); the model sees a documented range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pose_files import write_mmpose

from mska_core import get_registry
from mska_core.config import DataConfig
from mska_core.data.datasets import load_corpus
from mska_core.errors import DataError

WIDTH, HEIGHT = 1280, 720


def signer(frames: int = 6, seed: int = 0) -> np.ndarray:
    """COCO-WholeBody points inside a 1280 x 720 frame, confidence 0.9."""
    rng = np.random.default_rng(seed)
    points = np.zeros((frames, 133, 3), dtype=np.float32)
    points[..., 0] = rng.uniform(300, 980, size=(frames, 133))
    points[..., 1] = rng.uniform(100, 700, size=(frames, 133))
    points[..., 2] = 0.9
    return points


def pose_corpus(root: Path, clips: dict[str, np.ndarray], *, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A ``pose`` source folder: ``clips`` in train (MMPose COCO-WholeBody .pose files), one good clip
    in dev and test."""
    for split, items in (("train", clips), ("dev", {"d0": signer(seed=1)}), ("test", {"t0": signer(seed=2)})):
        lines = ["id\tgloss\ttext"]
        for name, points in items.items():
            size = (width, height) if split == "train" else (WIDTH, HEIGHT)
            write_mmpose(root / split / f"{name}.pose", points, width=size[0], height=size[1])
            lines.append(f"{name}\tA B\ta b")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def extrapolated() -> np.ndarray:
    """A signer whose left wrist leaves the frame and is extrapolated by the estimator (y = 1684 in a
    720-pixel frame, as MediaPipe Holistic does), in frames 2 and 3."""
    points = signer()
    points[2:4, 9, 1] = 1684.0
    return points


def test_a_joint_far_beyond_the_frame_is_refused_naming_the_clip_and_the_fraction(tmp_path):
    root = pose_corpus(tmp_path, {"good": signer(), "wrist": extrapolated()})
    with pytest.raises(DataError) as caught:
        load_corpus(DataConfig(source="pose", path=str(root)), registry=get_registry())
    message = str(caught.value)
    assert "clip 'wrist'" in message and str(root / "train" / "wrist.pose") in message
    assert "2 of 798 found joints (0.3%) beyond the frame by more than 0.25 of its size" in message
    assert "\n" not in message and 'invalid = "repair"' in message


def test_repair_clamps_joints_beyond_the_frame_to_its_border_with_confidence_0(tmp_path, caplog):
    root = pose_corpus(tmp_path, {"wrist": extrapolated()})
    corpus = load_corpus(DataConfig(source="pose", path=str(root), invalid="repair"), registry=get_registry())
    points = corpus.train[0].keypoints
    assert points[2, 9].tolist() == pytest.approx([points[2, 9, 0].item(), -1.0, 0.0])  # bottom border, missing
    assert points[2, 9, 0].abs() <= 1 and points[1, 9, 2] == pytest.approx(0.9)  # other frames untouched
    assert any("clip 'wrist'" in r.getMessage() and "repaired" in r.getMessage() for r in caplog.records)


def test_a_joint_within_the_margin_is_kept_as_it_is(tmp_path):
    points = signer()
    points[2, 9, 1] = HEIGHT * 1.2  # 20 % of the frame below it: within the default margin of 25 %
    root = pose_corpus(tmp_path, {"near": points})
    corpus = load_corpus(DataConfig(source="pose", path=str(root)), registry=get_registry())
    assert corpus.train[0].keypoints[2, 9, 1] == pytest.approx(-1.4) and corpus.train[0].keypoints[2, 9, 2] > 0
    with pytest.raises(DataError, match="beyond the frame by more than 0.1 of its size"):
        load_corpus(DataConfig(source="pose", path=str(root), frame_margin=0.1), registry=get_registry())


def test_a_header_frame_size_that_contradicts_the_points_is_refused_and_never_repaired(tmp_path, caplog):
    root = pose_corpus(tmp_path, {"small": signer(), "good": signer(seed=3)}, width=256, height=256)
    (root / "train" / "good.pose").unlink()
    write_mmpose(root / "train" / "good.pose", signer(seed=3), width=WIDTH, height=HEIGHT)
    with pytest.raises(DataError, match=r"clip 'small'.*the frame size it was normalised with \(its .pose header's"):
        load_corpus(DataConfig(source="pose", path=str(root)), registry=get_registry())
    corpus = load_corpus(DataConfig(source="pose", path=str(root), invalid="repair"), registry=get_registry())
    assert [s.name for s in corpus.train] == ["good"]
    assert any("clip 'small'" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


def test_a_missing_joints_coordinates_are_brought_into_the_range_the_model_sees(tmp_path):
    from mska_core.data.validate import check_clip

    points = torch.zeros(4, 133, 3)
    points[..., 2] = 0.9
    points[1, 50] = torch.tensor([40.0, -7.0, 0.0])  # not found, coordinates wherever the file left them
    check = check_clip(points, 133)
    assert check.ok and check.keypoints[1, 50].tolist() == [1.5, -1.5, 0.0]

"""Training and prediction on .pose files of the common header kinds, written with pose-format
itself: reduced Holistic (178 points), OpenPose 137 (2-D with confidence), Holistic with world
landmarks. ``mska predict clip.pose`` reads a file as the ``pose`` source does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_mska
from pose_files import KINDS
from test_train import tiny_config

WIDTH, HEIGHT = 640, 480


def pixels(normalised: np.ndarray) -> np.ndarray:
    """The inverse of the reference's normalisation: [-1, 1] (y up) to pixels of a WIDTH x HEIGHT frame."""
    points = normalised.copy()
    points[..., 0] = (points[..., 0] + 1) / 2 * WIDTH
    points[..., 1] = HEIGHT - (points[..., 1] + 1) / 2 * HEIGHT
    return points


def write_corpus(root: Path, kind: str) -> Path:
    """The tiny synthetic corpus of ``test_train`` as .pose files of ``kind`` with SPLIT.tsv tables."""
    from mska_core.synthetic.corpus import make_corpus

    writer, _ = KINDS[kind]
    corpus = make_corpus(tiny_config(root / "config").data.synthetic)
    for split in ("train", "dev", "test"):
        lines = ["id\tgloss\ttext"]
        for sample in corpus.split(split):
            writer(root / split / f"{sample.name}.pose", pixels(sample.keypoints.numpy()), width=WIDTH, height=HEIGHT)
            lines.append(f"{sample.name}\t{sample.gloss}\t{sample.text}")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["holistic-reduced", "openpose-137", "holistic-world"])
def test_train_on_pose_files_of_a_header_kind_then_predict_a_pose_clip(kind, tmp_path):
    from mska_core.training.loop import FineTuning

    _, layout = KINDS[kind]
    root = write_corpus(tmp_path / "corpus", kind)
    config = tiny_config(tmp_path, "data.source=\"pose\"", f"data.path=\"{root}\"", f"model.layout=\"{layout}\"",
                         "train.epochs=1", "train.max_steps=2")
    result = FineTuning(config).run()
    clip = sorted((root / "test").glob("*.pose"))[0]
    proc = run_mska("predict", "--checkpoint", str(result.run_dir / "last.pt"), str(clip), "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["name"] == clip.stem and "fuse" in row["glosses"] and row["frames"] > 0

"""What ``mska extract`` writes is what pretraining and fine-tuning read: face crops pretrain with
``mska pretrain --train-dir OUT/crops/face``; with ``--annotations``/``--split`` OUT trains with
``mska train`` (keypoint streams)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_mska
from test_extract import make_clip, run_extract
from test_train import write_config

GLOSSES = {"alpha": ("RAIN TOMORROW", "it rains tomorrow"), "bravo": ("SUN", "the sun shines"),
           "charlie": ("RAIN NORTH", "it rains in the north")}


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("training-signers")
    for index, clip_id in enumerate(GLOSSES):
        make_clip(root / "videos", root / "keypoints", clip_id, frames=16, seed=index)
    lines = ["id\tgloss\ttext"] + [f"{clip_id}\t{gloss}\t{text}" for clip_id, (gloss, text) in GLOSSES.items()]
    (root / "annotations.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_extracted_face_crops_pretrain_with_mska_pretrain(signers: Path, tmp_path: Path):
    out = tmp_path / "out"
    extract = run_extract(str(signers / "videos"), "--keypoints", str(signers / "keypoints"), "--out", str(out),
                          "--streams", "face", "--crop-size", "32")
    assert extract.returncode == 0, extract.stderr
    result = run_mska("pretrain", "--stream", "face", "--train-dir", str(out / "crops" / "face"),
                      "--output-dir", str(tmp_path / "dino"), "--epochs", "1", "--batch-size", "8",
                      "--img-size", "28", "--set", "pretrain.local_crops=1", "--set", "pretrain.out_dim=64",
                      "--set", "pretrain.probe_every=0", "--export-checkpoint", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["global_step"] == 48 // 8 and summary["ignored"] == 0 and summary["skipped"] == 0
    assert Path(summary["exported"][0]).is_file()


@pytest.mark.slow
def test_with_annotations_and_splits_the_output_trains_with_mska_train(signers: Path, tmp_path: Path):
    out = tmp_path / "out"
    videos = signers / "videos"
    for split, clips in (("train", GLOSSES), ("dev", ("alpha", "bravo")), ("test", ("charlie",))):
        result = run_extract(*(str(videos / f"{clip_id}.mp4") for clip_id in clips), "--keypoints",
                             str(signers / "keypoints"), "--out", str(out), "--annotations",
                             str(signers / "annotations.tsv"), "--split", split, "--streams", "face")
        assert result.returncode == 0, result.stderr
    assert (out / "dev.tsv").read_text().splitlines() == [
        "id\tgloss\ttext", "alpha\tRAIN TOMORROW\tit rains tomorrow", "bravo\tSUN\tthe sun shines"]
    pixels = np.load(out / "keypoints" / "charlie.npy")
    normalised = np.load(out / "test" / "charlie.npy")
    np.testing.assert_allclose(normalised[..., 0], pixels[..., 0] / 256 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(normalised[..., 1], (192 - pixels[..., 1]) / 192 * 2 - 1, atol=1e-6)
    config = write_config(tmp_path / "config")
    result = run_mska("train", "--config", str(config), "--set", "data.source=\"directory\"",
                      "--set", f"data.path=\"{out}\"", "--set", "train.epochs=1", "--set", "train.batch_size=2",
                      "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (tmp_path / "config" / "runs" / "tiny" / "best.pt").is_file(), summary


def test_a_clip_without_an_annotation_fails_and_is_left_out_of_the_split(signers: Path, tmp_path: Path):
    annotations = tmp_path / "annotations.tsv"
    annotations.write_text("id\tgloss\ttext\nalpha\tRAIN\tit rains\n")
    out = tmp_path / "out"
    result = run_extract(str(signers / "videos"), "--keypoints", str(signers / "keypoints"), "--out", str(out),
                         "--annotations", str(annotations), "--split", "train", "--streams", "face")
    assert result.returncode == 1
    assert "no line for 'bravo' in the annotations" in result.stderr
    assert (out / "train.tsv").read_text().splitlines() == ["id\tgloss\ttext", "alpha\tRAIN\tit rains"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["alpha.npy"]

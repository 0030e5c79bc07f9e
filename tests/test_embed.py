"""``mska embed`` and :func:`mska_core.export.embed`: fused per-frame features and the pooled clip
vector of keypoint clips and videos, as the encoder computes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_mska
from test_train import fine_tune, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A tiny model trained two steps (``last.pt``) and two synthetic test clips as ``.npy`` files."""
    from mska_core.config import SyntheticConfig
    from mska_core.synthetic.corpus import make_corpus

    folder = tmp_path_factory.mktemp("embed")
    result = fine_tune(tiny_config(folder, "train.max_steps=2"))
    clips = []
    for index, clip in enumerate(make_corpus(SyntheticConfig(num_train=1, num_dev=1, num_test=2, vocab_size=5)).test):
        clips.append(folder / f"clip{index}.npy")
        np.save(clips[-1], clip.keypoints.numpy())
    return result.last, clips


def test_embed_writes_per_frame_features_and_their_mean_per_clip(run, tmp_path):
    last, clips = run
    out = tmp_path / "features.npz"
    result = run_mska("embed", "--checkpoint", str(last), *map(str, clips), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    arrays = np.load(out)
    assert list(arrays["names"]) == ["clip0", "clip1"] and str(arrays["head"]) == "fuse"
    for i, row in enumerate(rows):
        frames = arrays[f"frames_{i}"]
        assert row["head"] == "fuse" and row["streams"] == ["hand_left", "face"]
        assert frames.shape == (row["frames_encoded"] // 4, 16) == (row["feature_frames"], row["dim"])
        np.testing.assert_allclose(arrays["clips"][i], frames.mean(0), rtol=1e-6)
        np.testing.assert_allclose(arrays["gloss_clips"][i], arrays[f"gloss_frames_{i}"].mean(0), rtol=1e-6)
        assert row["vector"] == pytest.approx(arrays["clips"][i].tolist(), abs=1e-6)


def test_the_features_are_the_fused_input_of_the_head_as_the_encoder_computes_it(run):
    from mska_core.cli.predict_cmd import read_clip
    from mska_core.encoder import ClipBatch
    from mska_core.export import embed
    from mska_core.registry import get_registry
    from mska_core.training.trained import load_trained

    last, clips = run
    trained = load_trained(last, registry=get_registry())
    layouts = {layout.name: layout for layout in get_registry().layouts}
    _, keypoints = read_clip(str(clips[0]), trained.config, layouts)
    embedding = embed(trained, keypoints)
    frames = keypoints.shape[0] // 4 * 4
    with torch.no_grad():
        encoded = trained.model.encoder(ClipBatch(keypoints[:frames].unsqueeze(0), torch.tensor([frames])))
    torch.testing.assert_close(embedding.frames, encoded.head_inputs["fuse"][0])
    torch.testing.assert_close(embedding.gloss_frames, encoded.gloss_features["fuse"][0])
    hand = embed(last, keypoints, head="hand")
    assert hand.streams == ("hand_left",) and hand.frames.shape == (frames // 4, 8)
    torch.testing.assert_close(hand.frames, encoded.stream_features["hand_left"][0])


def test_an_unknown_head_is_one_line_and_exit_code_2(run):
    last, clips = run
    result = run_mska("embed", "--checkpoint", str(last), str(clips[0]), "--head", "torso")
    assert result.returncode == 2 and "--head 'torso'" in result.stderr and "fuse, hand" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_embed_video_reads_the_video_as_predict_does(run, tmp_path):
    from test_extract import make_clip

    from mska_core.export import embed
    from mska_core.extract.keypoints import KeypointFiles
    from mska_core.extract.memory import read_video
    from mska_core.extract.videos import Video
    from mska_core.registry import get_registry
    from mska_core.training.trained import load_trained

    last, _ = run
    make_clip(tmp_path / "videos", tmp_path / "keypoints", "signer", frames=20)
    video = tmp_path / "videos" / "signer.mp4"
    result = run_mska("embed", "--checkpoint", str(last), str(video), "--keypoints", str(tmp_path / "keypoints"),
                      "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["name"] == "signer" and row["frames"] == 20 and row["feature_frames"] == 5
    clip = read_video(Video("signer", video), KeypointFiles(tmp_path / "keypoints").lookup("signer"), [],
                      crop_size=56, jpeg_quality=95, layouts={layout.name: layout for layout in get_registry().layouts})
    expected = embed(load_trained(last, registry=get_registry()), clip.keypoints)
    assert row["vector"] == pytest.approx(expected.clip.tolist(), abs=1e-5)

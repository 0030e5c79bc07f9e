"""``mska predict VIDEO``: a raw video through ``mska extract``'s own extraction held in memory gives
what the extracted clip gives; and no clip is ever cut, however long (whole, or stitched windows)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_mska
from test_extract import make_clip, run_extract
from test_train import write_config

GLOSSES = {"alpha": ("RAIN TOMORROW", "it rains tomorrow"), "bravo": ("SUN", "the sun shines"),
           "charlie": ("RAIN NORTH", "it rains in the north"), "delta": ("SUN NORTH", "sun in the north")}


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four rendered mp4 signers with their pixel keypoints, extracted into a directory-format corpus
    (``OUT/SPLIT/ID.npy``), and a model trained one step on it (keypoint streams): a model this young
    still answers with glosses, and they change with its input."""
    root = tmp_path_factory.mktemp("predict-signers")
    for index, clip_id in enumerate(GLOSSES):
        make_clip(root / "videos", root / "keypoints", clip_id, frames=16 + 4 * index, seed=index)
    lines = ["id\tgloss\ttext"] + [f"{clip_id}\t{gloss}\t{text}" for clip_id, (gloss, text) in GLOSSES.items()]
    (root / "annotations.tsv").write_text("\n".join(lines) + "\n")
    out = root / "out"
    for split, clips in (("train", ("alpha", "bravo")), ("dev", ("charlie",)), ("test", ("charlie", "delta"))):
        result = run_extract(*(str(root / "videos" / f"{c}.mp4") for c in clips), "--keypoints",
                             str(root / "keypoints"), "--out", str(out), "--annotations",
                             str(root / "annotations.tsv"), "--split", split, "--streams", "face")
        assert result.returncode == 0, result.stderr
    config = write_config(root / "config")
    result = run_mska("train", "--config", str(config), "--set", 'data.source="directory"',
                      "--set", f'data.path="{out}"', "--set", "train.max_steps=1", "--set", "train.batch_size=2",
                      "--json")
    assert result.returncode == 0, result.stderr
    return root


def checkpoint(root: Path) -> str:
    return str(root / "config" / "runs" / "tiny" / "last.pt")


def predict(*args: str) -> tuple[list[dict], str]:
    result = run_mska("predict", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_predict_video_gives_the_glosses_of_the_extracted_clip(signers: Path):
    videos = [str(signers / "videos" / f"{c}.mp4") for c in ("charlie", "delta")]
    from_videos, _ = predict("--checkpoint", checkpoint(signers), *videos, "--keypoints", str(signers / "keypoints"))
    extracted = [str(signers / "out" / "test" / f"{c}.npy") for c in ("charlie", "delta")]
    from_clips, _ = predict("--checkpoint", checkpoint(signers), *extracted)
    for video, clip in zip(from_videos, from_clips):
        assert video["name"] == clip["name"]
        assert video["glosses"] == clip["glosses"] and video["translation"] == clip["translation"]
        assert video["frames_encoded"] == clip["frames_encoded"] == video["frames"]
    assert all(row["gloss"] for row in from_videos)  # a young model: glosses, not an empty answer


def test_a_video_in_memory_holds_the_keypoints_and_crops_mska_extract_writes(signers: Path):
    """The arrays behind the glosses are equal: the points as the extracted corpus stores them, and
    each crop pixel for pixel as a reader of the JPEG files gets it."""
    from mska_core.data.crop_files import CropFolders
    from mska_core.extract.boxes import StreamCrop
    from mska_core.extract.keypoints import KeypointFiles
    from mska_core.extract.memory import read_video
    from mska_core.extract.videos import Video
    from mska_core.registry import get_registry

    registry = get_registry()
    face = registry.streams.get("face")
    clip = read_video(Video("delta", signers / "videos" / "delta.mp4"),
                      KeypointFiles(signers / "keypoints").lookup("delta"), [StreamCrop("face", face.crop_region)],
                      crop_size=112, jpeg_quality=90, layouts={"coco_wholebody": registry.layouts.get("coco_wholebody")})
    np.testing.assert_array_equal(clip.keypoints, np.load(signers / "out" / "test" / "delta.npy"))
    folders = CropFolders(signers / "out" / "crops")
    stored = folders.read("face", "delta", list(range(folders.locate("face", "delta").count))).numpy()
    assert clip.crops["face"].shape == stored.shape == (28, 3, 112, 112)
    np.testing.assert_array_equal(clip.crops["face"], stored)


def test_predict_video_gives_what_evaluate_gives_on_the_test_split(signers: Path, tmp_path: Path):
    lines = tmp_path / "predictions.jsonl"
    result = run_mska("evaluate", "--checkpoint", checkpoint(signers), "--split", "test", "--predictions", str(lines))
    assert result.returncode == 0, result.stderr
    evaluated = {row["name"]: row for row in map(json.loads, lines.read_text().splitlines())}
    videos = [str(signers / "videos" / f"{c}.mp4") for c in ("charlie", "delta")]
    rows, _ = predict("--checkpoint", checkpoint(signers), *videos, "--keypoints", str(signers / "keypoints"))
    for row in rows:
        assert row["glosses"] == evaluated[row["name"]]["glosses"]
        assert row["translation"] == evaluated[row["name"]]["translation"]


def test_predict_video_with_an_estimator_gives_the_glosses_of_the_clip_extract_writes_with_it(signers: Path,
                                                                                             tmp_path: Path):
    from conftest import mska_env
    from plugin_fixtures import install_distribution
    from test_extract_plugins import BLOB_ESTIMATOR

    site = install_distribution(tmp_path / "site", "mska-colour-blobs", "0.3.0",
                                {"blobs": "mska_colour_blobs"}, {"mska_colour_blobs": BLOB_ESTIMATOR})
    closed = tmp_path / "closed.txt"
    env = {"PYTHONPATH": str(site), "MSKA_LOAD_PLUGINS": "blobs", "BLOB_CLOSED": str(closed)}
    video = str(signers / "videos" / "delta.mp4")
    result = run_extract(video, "--estimator", "colour-blobs", "--out", str(tmp_path / "out"), "--annotations",
                         str(signers / "annotations.tsv"), "--split", "test", "--streams", "face", **env)
    assert result.returncode == 0, result.stderr
    rows = []
    for clip in (str(tmp_path / "out" / "test" / "delta.npy"), video):
        extra = ("--estimator", "colour-blobs") if clip == video else ()
        result = run_mska("predict", "--checkpoint", checkpoint(signers), clip, *extra, "--json", env=mska_env(**env))
        assert result.returncode == 0, result.stderr
        rows += json.loads(result.stdout)
    assert rows[0]["glosses"] == rows[1]["glosses"] and rows[0]["translation"] == rows[1]["translation"]
    assert closed.read_text() == "closed\n" * 2  # extract's estimator and predict's, each closed once


def test_a_video_without_keypoints_is_one_line_and_exit_code_2(signers: Path, tmp_path: Path):
    video = str(signers / "videos" / "charlie.mp4")
    result = run_mska("predict", "--checkpoint", checkpoint(signers), video)
    assert result.returncode == 2 and "--keypoints PATH" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "keypoints").mkdir()
    result = run_mska("predict", "--checkpoint", checkpoint(signers), video, "--keypoints", str(tmp_path / "keypoints"))
    assert result.returncode == 2 and "no keypoints for 'charlie'" in result.stderr
    short = tmp_path / "short"
    short.mkdir()
    np.save(short / "charlie.npy", np.load(signers / "keypoints" / "charlie.npy")[:10])
    result = run_mska("predict", "--checkpoint", checkpoint(signers), video, "--keypoints", str(short))
    assert result.returncode == 2 and "more frames than its 10 keypoint frames" in result.stderr, result.stderr
    missing = str(tmp_path / "nobody.mp4")
    result = run_mska("predict", "--checkpoint", checkpoint(signers), missing, "--keypoints", str(short))
    assert result.returncode == 2 and f"{missing}: no such video file" in result.stderr, result.stderr


def long_clip(signers: Path, path: Path, frames: int) -> Path:
    """A clip of ``frames`` frames of the test signer, normalised as the directory format stores it."""
    points = np.load(signers / "out" / "test" / "charlie.npy")
    np.save(path, np.resize(points, (frames, *points.shape[1:])).astype(np.float32))
    return path


def test_a_long_clip_is_encoded_whole_with_a_notice(signers: Path, tmp_path: Path):
    clip = long_clip(signers, tmp_path / "long.npy", 5000)
    (row,), stderr = predict("--checkpoint", checkpoint(signers), str(clip))
    assert row["frames"] == row["frames_encoded"] == 5000 and row["windows"] == 1
    assert "long.npy: 5000 frames, more than the 400 the model was trained on" in stderr
    assert "all 5000 encoded at once" in stderr


def test_a_long_clip_in_windows_uses_every_frame_with_a_notice(signers: Path, tmp_path: Path):
    clip = long_clip(signers, tmp_path / "long.npy", 5000)
    (row,), stderr = predict("--checkpoint", checkpoint(signers), str(clip), "--window", "400", "--overlap", "100")
    assert row["frames_encoded"] == 5000 and row["windows"] == 17
    assert "encoded in 17 overlapping windows of 400 frames (overlap 100 frames)" in stderr


def test_bad_windows_are_one_line_and_exit_code_2(signers: Path):
    clip = str(signers / "out" / "test" / "charlie.npy")
    result = run_mska("predict", "--checkpoint", checkpoint(signers), clip, "--window", "8", "--overlap", "8")
    assert result.returncode == 2 and "0 <= overlap < window" in result.stderr, result.stderr
    result = run_mska("predict", "--checkpoint", checkpoint(signers), clip, "--window", "6")
    assert result.returncode == 2 and "multiple of 4" in result.stderr, result.stderr


# --- windows, in process ----------------------------------------------------------------------------


def test_windows_cover_every_output_frame_once_from_the_window_where_it_is_farthest_from_an_edge():
    from mska_core.evaluation.windows import plan_windows

    for frames, window, overlap in ((5000, 400, 100), (44, 16, 4), (400, 400, 100), (404, 400, 0), (52, 16, 12)):
        windows = plan_windows(frames, window, overlap, 4)
        assert windows[0].keep_start == 0 and windows[-1].keep_stop == frames // 4
        for earlier, later in itertools.pairwise(windows):
            assert earlier.keep_stop == later.keep_start  # contiguous, no frame twice, none missed
            assert later.start < earlier.stop  # neighbours overlap ...
            middle = (later.start + earlier.stop) / 2 / 4
            assert abs(earlier.keep_stop - middle) <= 0.5  # ... and are cut at the middle of the overlap
        for w in windows:
            assert w.start // 4 <= w.keep_start < w.keep_stop <= w.stop // 4 and w.stop - w.start <= window


def tiny_encoder():
    from mska_core.config import ModelConfig
    from mska_core.encoder import MSKAEncoder

    torch.manual_seed(0)
    model_cfg = ModelConfig(channels=(8, 8), inter_channels=(2, 2), temporal_kernels=(3, 3), strides=(2, 2),
                            num_heads=2, head_hidden=16, head_ff=16)
    return MSKAEncoder.from_config(model_cfg, vocab_size=7).eval()


HEAD = "fuse"


def test_stitched_windows_give_one_output_frame_per_4_frames_and_match_each_window_inside():
    from mska_core.encoder import ClipBatch
    from mska_core.evaluation.windows import encode_clip, plan_windows

    encoder = tiny_encoder()
    keypoints = torch.rand(1, 96, 133, 3) * 2 - 1
    keypoints[..., 2] = 1.0
    clips = ClipBatch(keypoints=keypoints, lengths=torch.tensor([96]))
    with torch.no_grad():
        whole = encoder(clips)
        stitched = encode_clip(encoder, clips, window=32, overlap=8)
        second = plan_windows(96, 32, 8, 4)[1]
        alone = encoder(ClipBatch(keypoints=keypoints[:, second.start:second.stop], lengths=torch.tensor([32])))
    assert stitched.logits[HEAD].shape == whole.logits[HEAD].shape == (1, 24, 7)
    assert int(stitched.lengths[0]) == 24 and bool(stitched.mask.all())
    offset = second.start // 4
    torch.testing.assert_close(stitched.logits[HEAD][:, second.keep_start:second.keep_stop],
                               alone.logits[HEAD][:, second.keep_start - offset:second.keep_stop - offset])
    torch.testing.assert_close(encode_clip(encoder, clips, window=96).logits[HEAD], whole.logits[HEAD])


def test_prediction_keeps_every_frame_of_a_long_clip_and_evaluation_frames_of_a_short_one():
    from mska_core.config import AugmentConfig
    from mska_core.data.augment import select_frames
    from mska_core.evaluation.windows import prediction_frames

    cfg = AugmentConfig(max_frames=400)
    assert prediction_frames(5000, cfg).tolist() == list(range(5000))
    assert prediction_frames(5003, cfg).tolist() == list(range(5000))
    for frames in (3, 17, 400):
        assert prediction_frames(frames, cfg).tolist() == select_frames(frames, cfg, None, train=False).tolist()

"""Real recordings as they come (a photograph of a real person made into a video, .pose keypoints
written with pose-format): a part that was not found never poses as a real crop. Extraction reports
each stream's found fraction (per run, per clip in clips.tsv), flags and (--strict) fails clips whose
stream is mostly missing, un-mirrors mirrored recordings, and draws a contact sheet; pretraining
trains on found crops only and counts the others; fine-tuning masks the crop features of those frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_mska
from real_recording import FRAMES, SIZE, hand_in_view, keypoints, write_recording

from mska_core.data.crop_files import CropFolders
from mska_core.extract.outputs import read_clips

IN_VIEW = sum(hand_in_view(i) for i in range(FRAMES))  # 7 of 24 frames


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recording")
    write_recording(folder)
    (folder / "train.tsv").write_text("id\tgloss\ttext\nastronaut\tHELLO\thello\n")
    return folder


@pytest.fixture(scope="module")
def extracted(recording) -> tuple[Path, dict]:
    out = recording / "out"
    proc = run_mska("extract", str(recording / "videos"), "--keypoints", str(recording / "poses"), "--out", str(out),
                    "--preview", "--crop-size", "28", "--annotations", str(recording / "train.tsv"), "--split",
                    "train", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    return out, {"stdout": json.loads(proc.stdout), "stderr": proc.stderr}


def test_extract_writes_each_streams_found_fraction_per_clip_and_says_it_per_run(extracted):
    out, run = extracted
    row = read_clips(out / "clips.tsv")["astronaut"]
    assert row.found == pytest.approx({"face": 1.0, "hand_left": 0.0, "hand_right": IN_VIEW / FRAMES}, abs=1e-3)
    with np.load(out / "boxes" / "astronaut.npz") as boxes:
        assert boxes["hand_right_missing"].tolist() == [not hand_in_view(i) for i in range(FRAMES)]
    assert "found in the frames written: face 100%, hand_left 0%, hand_right 29%" in run["stderr"]
    assert "flagged: clip astronaut: hand_left 0%, hand_right 29% of its 24 frames found" in run["stderr"]
    assert run["stdout"]["flagged"] == ["astronaut"]


def test_extract_reports_joints_beyond_the_frame_and_training_names_the_clip(extracted):
    from mska_core import get_registry
    from mska_core.config import DataConfig
    from mska_core.data.datasets import load_corpus
    from mska_core.errors import DataError

    out, run = extracted
    row = read_clips(out / "clips.tsv")["astronaut"]
    points = keypoints()
    beyond = FRAMES - IN_VIEW  # the extrapolated wrist of every frame without the hand
    assert row.outside == pytest.approx(beyond / int((points[..., 2] > 0).sum()), abs=1e-4)
    assert f"outside: clip astronaut: {row.outside:.1%} of its found joints beyond the frame" in run["stderr"]
    for split in ("dev", "test"):
        (out / f"{split}.tsv").write_text((out / "train.tsv").read_text())
        (out / split).mkdir(exist_ok=True)
        (out / split / "astronaut.npy").write_bytes((out / "train" / "astronaut.npy").read_bytes())
    with pytest.raises(DataError, match=f"clip 'astronaut'.*{beyond} of .* found joints .* beyond the frame"):
        load_corpus(DataConfig(source="directory", path=str(out)), registry=get_registry())
    repaired = load_corpus(DataConfig(source="directory", path=str(out), invalid="repair"), registry=get_registry())
    wrist = repaired.train[0].keypoints[:, 10]
    assert wrist[:, :2].abs().max() <= 1.0 and all(wrist[i, 2] == 0 for i in range(FRAMES) if not hand_in_view(i))


def test_extract_preview_draws_a_contact_sheet_of_frames_by_streams(extracted):
    from PIL import Image

    from mska_core.extract.preview import CELL, COLUMNS, HEADER_HEIGHT, LABEL_WIDTH, sampled_frames

    out, _ = extracted
    with Image.open(out / "preview" / "astronaut.png") as sheet:
        assert sheet.size == (LABEL_WIDTH + CELL * COLUMNS, HEADER_HEIGHT + CELL * 3)
        pixels = np.asarray(sheet.convert("RGB"))
    frames = sampled_frames(FRAMES)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    for line in range(3):  # face, hand_left, hand_right: a red frame around exactly the missing cells
        for column, frame in enumerate(frames):
            top, left = HEADER_HEIGHT + line * CELL, LABEL_WIDTH + column * CELL
            marked = red[top + 1: top + 4, left + CELL // 4: left + 3 * CELL // 4].mean() > 0.5
            assert marked == (line == 1 or (line == 2 and not hand_in_view(frame))), (line, frame)


def test_strict_fails_a_clip_whose_stream_is_mostly_missing_and_writes_nothing(recording, tmp_path):
    proc = run_mska("extract", str(recording / "videos"), "--keypoints", str(recording / "poses"), "--out",
                    str(tmp_path / "out"), "--strict", "--streams", "face,hand_right", "--no-progress")
    assert proc.returncode == 1
    assert "clip astronaut failed: hand_right found in hand_right 29% of its 24 frames, below [extract] " \
           "min_found = 0.5 (--strict)" in proc.stderr
    assert not (tmp_path / "out" / "keypoints" / "astronaut.npy").exists()
    proc = run_mska("extract", str(recording / "videos"), "--keypoints", str(recording / "poses"), "--out",
                    str(tmp_path / "out"), "--strict", "--min-found", "0.25", "--streams", "face,hand_right",
                    "--no-progress")
    assert proc.returncode == 0, proc.stderr


def test_pretrain_trains_on_found_crops_only_and_says_how_many_it_skipped(extracted, tmp_path):
    out, _ = extracted
    proc = run_mska("pretrain", "--stream", "hand_right", "--train-dir", str(out / "crops" / "hand_right"),
                    "--output-dir", str(tmp_path / "dino"), "--epochs", "1", "--set", "pretrain.img_size=28",
                    "--set", "pretrain.batch_size=4", "--set", "pretrain.local_crops=1", "--set",
                    "pretrain.probe_every=0", "--set", "pretrain.progress=false")
    assert proc.returncode == 0, proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())  # the console wraps at 80 columns
    assert f"{IN_VIEW} hand_right crops ({FRAMES - IN_VIEW} skipped: hand_right not found)" in said
    from mska_core.data.crops import CropFolder

    folder = CropFolder([out / "crops"])
    assert len(folder) == FRAMES + IN_VIEW  # every face crop, the found hand_right crops, no hand_left crop
    assert folder.not_found == {"face": [FRAMES, 0], "hand_left": [0, FRAMES], "hand_right": [IN_VIEW, FRAMES - IN_VIEW]}
    inspected = run_mska("inspect", str(tmp_path / "dino"), "--json")
    assert json.loads(inspected.stdout)["config"]["data"] == f"crops under {out / 'crops' / 'hand_right'}"


def test_pretrain_refuses_crops_that_are_all_of_frames_where_the_part_was_not_found(extracted):
    from mska_core.data.crops import CropFolder
    from mska_core.errors import DataError

    out, _ = extracted
    with pytest.raises(DataError, match=f"all {FRAMES} crops .* are of frames where their part was not found"):
        CropFolder([out / "crops" / "hand_left"])


CONFIG = """
[data]
source = "directory"
path = "{data}"
crops = true
invalid = "repair"

[data.augment]
max_frames = 64

[model]
channels = [8, 8]
inter_channels = [2, 2]
temporal_kernels = [3, 3]
strides = [2, 2]
num_heads = 2
head_hidden = 16
head_ff = 16
crop_dim = 8

[model.streams.hand_right]
backbone = "file::{backbone}:vit_tiny_test"

[model.heads.hand]
streams = ["hand_right"]
"""


def test_fine_tuning_masks_the_crop_features_of_frames_where_the_hand_was_not_found(extracted, tmp_path):
    from mska_core.backbones.vit import build_vit
    from test_crop_files import datasets

    out, _ = extracted
    for split in ("dev", "test"):  # the directory format wants every split
        (out / f"{split}.tsv").write_text((out / "train.tsv").read_text())
        (out / split).mkdir(exist_ok=True)
        (out / split / "astronaut.npy").write_bytes((out / "train" / "astronaut.npy").read_bytes())
    torch.manual_seed(0)
    backbone = tmp_path / "tiny.pt"
    torch.save(build_vit("vit_tiny_test", img_size=28).state_dict(), backbone)
    config = tmp_path / "crops.toml"
    config.write_text(CONFIG.format(data=out, backbone=backbone))
    dataset, model, collate, _ = datasets(config, train=False)
    item = dataset[0]
    frames = item.keypoints.shape[0]
    assert item.crop_found["hand_right"].tolist() == [hand_in_view(i) for i in range(frames)]
    batch = collate([item])
    present = batch.clips.crop_present["hand_right"]
    assert present.shape == (1, frames) and int(present.sum()) == sum(hand_in_view(i) for i in range(frames))
    model.eval()
    with torch.no_grad():
        reference = model.encoder(batch.clips).stream_features["hand_right"]
        crops = batch.clips.crops["hand_right"].clone()
        crops[~present] = torch.randn_like(crops[~present]) * 5  # anything at all where the hand was not found
        masked = model.encoder(type(batch.clips)(batch.clips.keypoints, batch.clips.lengths, {"hand_right": crops},
                                                 batch.clips.crop_present)).stream_features["hand_right"]
        crops[present] = torch.randn_like(crops[present]) * 5  # a found frame's crop does change it
        found = model.encoder(type(batch.clips)(batch.clips.keypoints, batch.clips.lengths, {"hand_right": crops},
                                                batch.clips.crop_present)).stream_features["hand_right"]
    assert torch.equal(masked, reference)
    assert not torch.allclose(found, reference)


def test_a_mirrored_recording_is_unmirrored_in_keypoints_and_crops(recording, extracted, tmp_path):
    out, _ = extracted
    proc = run_mska("extract", str(recording / "videos"), "--keypoints", str(recording / "poses"), "--out",
                    str(tmp_path / "mirrored"), "--mirrored", "--crop-size", "28", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    row = read_clips(tmp_path / "mirrored" / "clips.tsv")["astronaut"]
    assert row.mirrored and row.found["hand_left"] == pytest.approx(IN_VIEW / FRAMES, abs=1e-3)
    assert row.found["hand_right"] == 0.0
    plain, flipped = keypoints(), np.load(tmp_path / "mirrored" / "keypoints" / "astronaut.npy")
    found = plain[:, 112:133, 2] > 0
    np.testing.assert_allclose(flipped[:, 91:112, 0][found], SIZE - plain[:, 112:133, 0][found])  # right became left
    np.testing.assert_allclose(flipped[:, 91:112, 1:], plain[:, 112:133, 1:])
    np.testing.assert_allclose(flipped[:, 5, 0], SIZE - plain[:, 6, 0])  # and the shoulders traded places
    first = next(i for i in range(FRAMES) if hand_in_view(i))
    left = CropFolders(tmp_path / "mirrored" / "crops").read("hand_left", "astronaut", [first])[0].float()
    right = CropFolders(out / "crops").read("hand_right", "astronaut", [first])[0].float()
    assert (left - right.flip(-1)).abs().mean() < 12  # the same glove, seen the right way round
    assert (left - right).abs().mean() > 2 * (left - right.flip(-1)).abs().mean()


def test_an_annotation_tables_mirrored_column_decides_per_clip(recording, tmp_path):
    table = tmp_path / "train.tsv"
    table.write_text("id\tgloss\ttext\tmirrored\nastronaut\tHELLO\thello\ttrue\n")
    proc = run_mska("extract", str(recording / "videos"), "--keypoints", str(recording / "poses"), "--out",
                    str(tmp_path / "out"), "--annotations", str(table), "--split", "train", "--streams", "hand_left",
                    "--no-progress")
    assert proc.returncode == 0, proc.stderr
    row = read_clips(tmp_path / "out" / "clips.tsv")["astronaut"]
    assert row.mirrored and row.found["hand_left"] == pytest.approx(IN_VIEW / FRAMES, abs=1e-3)


def test_predict_masks_the_crops_of_video_frames_where_the_hand_was_not_found(recording, extracted, tmp_path):
    """``mska predict VIDEO`` reads the video through extraction in memory; the frames whose hand was
    not found get their crop features masked there too."""
    import argparse

    from mska_core.backbones.vit import build_vit
    from mska_core.cli.predict_cmd import ModelCrops, VideoReader
    from mska_core.config import load_config
    from mska_core.data.collate import Collator
    from mska_core.registry import get_registry
    from mska_core.training.loop import FineTuning
    from mska_core.training.trained import load_trained

    out, _ = extracted
    for split in ("dev", "test"):
        (out / f"{split}.tsv").write_text((out / "train.tsv").read_text())
        (out / split).mkdir(exist_ok=True)
        (out / split / "astronaut.npy").write_bytes((out / "train" / "astronaut.npy").read_bytes())
    torch.manual_seed(0)
    backbone = tmp_path / "tiny.pt"
    torch.save(build_vit("vit_tiny_test", img_size=28).state_dict(), backbone)
    config_file = tmp_path / "crops.toml"
    config_file.write_text(CONFIG.format(data=out, backbone=backbone) + "\n[losses.ctc]\n")
    config = load_config(config_file, [f'run.output_dir="{tmp_path / "runs"}"', "train.max_steps=1",
                                       "train.batch_size=1", "train.progress=false"])
    run_dir = FineTuning(config).run().run_dir
    registry = get_registry()
    trained = load_trained(run_dir / "last.pt", registry=registry)
    crops = ModelCrops.of(trained, registry)
    args = argparse.Namespace(keypoints=str(recording / "poses"), estimator=None, mirrored=False)
    clip = VideoReader(args, trained.config, registry, crops).read(str(recording / "videos" / "astronaut.mp4"))
    found = {stream: ~missing for stream, (_, missing) in clip.arrays.boxes.items()}
    item = crops.item("astronaut.mp4", clip.name, torch.from_numpy(clip.keypoints), clip.crops, trained, found)
    frames = item.keypoints.shape[0]
    assert item.crop_found["hand_right"].tolist() == [hand_in_view(i) for i in range(frames)]
    batch = Collator(trained.vocabularies, crops.normalization)([item])
    present = batch.clips.crop_present["hand_right"]
    encoder = trained.model.encoder.eval()
    with torch.no_grad():
        reference = encoder(batch.clips).stream_features["hand_right"]
        noisy = batch.clips.crops["hand_right"].clone()
        noisy[~present] = torch.randn_like(noisy[~present]) * 5
        masked = encoder(type(batch.clips)(batch.clips.keypoints, batch.clips.lengths, {"hand_right": noisy},
                                           batch.clips.crop_present)).stream_features["hand_right"]
    assert torch.equal(masked, reference)


def test_pretraining_skips_held_crops_in_the_folder_format_too(recording, tmp_path):
    from mska_core.data.crops import CropFolder

    proc = run_mska("extract", str(recording / "videos"), "--keypoints", str(recording / "poses"), "--out",
                    str(tmp_path / "out"), "--crop-format", "files", "--streams", "hand_right", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    folder = CropFolder([tmp_path / "out" / "crops" / "hand_right"])
    assert folder.not_found == {"hand_right": [IN_VIEW, FRAMES - IN_VIEW]}
    assert sorted(int(path.stem) for path in folder.files) == [i for i in range(FRAMES) if hand_in_view(i)]

"""``mska train`` on WebDataset shards (the ``shards`` data source): segments of a rendered recording
extracted with annotations, packed with ``mska pack``, indexed once and read by random access: every
clip once per epoch over 2 DDP ranks x 2 DataLoader workers, crops read from the tar files equal to the
extraction's, exact resume, and train / evaluate end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import mska_env, run_mska
from test_corpora import FPS, index_frames, still_keypoints, write_video_sized
from test_extract import crops_of, run_extract

#: (split, id, start, end, gloss) of the segments cut from one 8 s recording.
SEGMENTS = [("train", f"t{n}", 0.5 * n, 0.5 * n + 0.9, gloss) for n, gloss in
            enumerate(["A B", "B", "A C", "C", "B C", "A", "C A", "B A"])] + [
    ("dev", "d0", 4.5, 5.4, "A B"), ("dev", "d1", 5.5, 6.3, "C"),
    ("test", "e0", 6.5, 7.3, "B C"), ("test", "e1", 7.0, 7.9, "A")]
SIDE = 28  # the crop size: a multiple of the tiny ViT's patch


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(extraction, shards)``: the segments extracted per split (face and left-hand crops) and packed
    into ``SHARDS/SPLIT`` (three shards for train)."""
    root = tmp_path_factory.mktemp("shard-corpus")
    (root / "videos").mkdir()
    (root / "keypoints").mkdir()
    frames = 8 * FPS
    write_video_sized(root / "videos" / "recording.mp4", index_frames(frames))
    points = still_keypoints(frames)  # in a 210 x 260 frame: scaled into the recording's 96 x 64
    points[..., 0] *= 96 / 210
    points[..., 1] *= 64 / 260
    np.save(root / "keypoints" / "recording.npy", points)
    out = root / "out"
    for split in ("train", "dev", "test"):
        lines = ["id\tvideo\tstart\tend\tgloss\ttext"] + [f"{i}\trecording.mp4\t{s}\t{e}\t{g}\t{g.lower()}"
                                                          for sp, i, s, e, g in SEGMENTS if sp == split]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        result = run_extract(str(root / "videos"), "--keypoints", str(root / "keypoints"), "--out", str(out),
                             "--annotations", str(root / f"{split}.tsv"), "--split", split, "--streams",
                             "face,hand_left", "--crop-size", str(SIDE))
        assert result.returncode == 0, result.stderr
        packed = run_mska("pack", str(out), "--to", str(root / "shards" / split), "--split", split, "--shards",
                          "3" if split == "train" else "1")
        assert packed.returncode == 0, packed.stderr
    return out, root / "shards"


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mska_core.backbones.vit import build_vit

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("backbone") / "tiny.pt"
    torch.save(build_vit("vit_tiny_test", img_size=SIDE).state_dict(), path)
    return path


CONFIG = """
[run]
name = "shards"
output_dir = "{out}"
seed = 5

[data]
source = "shards"
path = "{data}"
crops = true

[data.augment]
speed_min = 0.5
speed_max = 1.5

[model]
channels = [8, 8]
inter_channels = [2, 2]
temporal_kernels = [3, 3]
strides = [2, 2]
num_heads = 2
head_hidden = 16
head_ff = 16
crop_dim = 8

[model.streams.face]
backbone = "file::{backbone}:vit_tiny_test"

[model.streams.hand_left]

[model.heads.fuse]
streams = ["hand_left", "face"]

[losses.ctc]

[optim]
lr = 1e-3

[train]
epochs = 2
batch_size = 4
log_every = 1
test_beam_size = 1
progress = false
"""


def write_config(folder: Path, data: Path, backbone: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "shards.toml"
    path.write_text(CONFIG.format(out=folder / "runs", data=data, backbone=backbone))
    return path


def shard_corpus(data: Path):
    from mska_core.config import load_config
    from mska_core.data.datasets import load_corpus
    from mska_core.registry import get_registry

    config = load_config(write_config(data.parent / "cfg", data, Path("unused.pt")), [])
    return load_corpus(config.data, registry=get_registry()), config


def test_the_shards_source_reads_every_split_with_normalised_keypoints(shards):
    from mska_core.data.contract import normalize_pixels

    out, data = shards
    corpus, _ = shard_corpus(data)
    assert [s.name for s in corpus.train] == [f"t{n}" for n in range(8)]
    assert [s.name for s in corpus.dev] == ["d0", "d1"] and [s.name for s in corpus.test] == ["e0", "e1"]
    d1 = corpus.dev[1]
    assert (d1.gloss, d1.text) == ("C", "c")
    pixels = torch.from_numpy(np.load(out / "keypoints" / "d1.npy"))
    torch.testing.assert_close(d1.keypoints, normalize_pixels(pixels, 96, 64))
    assert corpus.source.startswith("shards: ")


def test_crops_read_from_the_tar_files_are_the_extractions_at_the_frames_asked_for(shards):
    out, data = shards
    corpus, _ = shard_corpus(data)
    for name in ("t3", "e1"):
        frames = [5, 0, 5, 2]
        read = corpus.crops.read("hand_left", name, frames)  # uint8 [T, 3, S, S]
        expected = crops_of(out, "hand_left", name)[frames]  # [T, S, S, 3]
        np.testing.assert_array_equal(read.permute(0, 2, 3, 1).numpy(), expected)
    assert corpus.crops.image_size(corpus.train, "face") == SIDE


def _names_and_worker(items):
    from torch.utils.data import get_worker_info

    worker = get_worker_info()
    return [item.name for item in items], worker.id if worker is not None else -1


@pytest.mark.parametrize("epoch", [0, 1])
def test_two_ranks_and_two_dataloader_workers_read_every_clip_once_per_epoch(shards, epoch):
    """The training loop's own batch plan (:meth:`FineTuning._batches`, ``_local_batches``) for rank 0
    and rank 1 of 2, each with 2 real DataLoader workers reading crops from the shards."""
    from mska_core.data.crop_files import CropPlan, crop_folders
    from mska_core.data.datasets import ClipDataset
    from mska_core.data.vocab import Vocabularies
    from mska_core.registry import get_registry
    from mska_core.training.distributed import DistInfo
    from mska_core.training.loop import FineTuning

    _, data = shards
    corpus, config = shard_corpus(data)
    registry = get_registry()
    plan = CropPlan([registry.streams.get("face")], {"face": SIDE}, crop_folders(config.data, corpus),
                    config.data.crop_options)
    dataset = ClipDataset(corpus.train, Vocabularies.from_samples(corpus.train), config.data.augment, train=True,
                          seed=5, crops=plan)
    dataset.set_epoch(epoch)
    train = SimpleNamespace(batch_size=3, micro_batches=1, num_workers=2)
    seen, workers = [], set()
    for rank in (0, 1):
        loop = SimpleNamespace(train_set=dataset, config=SimpleNamespace(run=config.run, train=train),
                               info=DistInfo(rank=rank, world_size=2), collate=_names_and_worker,
                               device=torch.device("cpu"))
        batches = FineTuning._batches(loop, epoch)  # type: ignore[arg-type]
        for step in FineTuning._local_batches(loop, batches):  # type: ignore[arg-type]
            for names, worker in step:
                seen.extend(names)
                workers.add((rank, worker))
    assert sorted(seen) == sorted(s.name for s in corpus.train)  # every clip, exactly once
    assert workers == {(0, 0), (0, 1), (1, 0), (1, 1)}  # both ranks' two workers read


@pytest.mark.slow
def test_mska_train_on_shards_resumes_exactly_and_evaluates(shards, backbone_file, tmp_path):
    """A crop stream reads its crops from the shards; stopped after 3 steps and resumed, the run's
    records and weights are the uninterrupted run's; mska evaluate reads the test split's shards."""
    _, data = shards
    whole = run_mska("train", "--config", str(write_config(tmp_path / "a", data, backbone_file)), "--set",
                     "train.num_workers=2", "--json", env=mska_env())
    assert whole.returncode == 0, whole.stderr
    config_b = write_config(tmp_path / "b", data, backbone_file)
    stopped = run_mska("train", "--config", str(config_b), "--set", "train.max_steps=3", env=mska_env())
    assert stopped.returncode == 0, stopped.stderr
    resumed = run_mska("train", "--config", str(config_b), "--resume", "--set", "train.num_workers=2", env=mska_env())
    assert resumed.returncode == 0, resumed.stderr

    def records(run_dir: Path) -> list[dict]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in ("clips_per_s", "data_wait_s", "step_s")}
                for line in lines]

    run_a, run_b = tmp_path / "a" / "runs" / "shards", tmp_path / "b" / "runs" / "shards"
    assert [r["step"] for r in records(run_b) if r["kind"] == "train"] == [1, 2, 3, 4]
    assert records(run_b) == records(run_a)
    final_a = torch.load(run_a / "last.pt", weights_only=True)["state_dict"]
    final_b = torch.load(run_b / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    predictions = tmp_path / "predictions.jsonl"
    evaluated = run_mska("evaluate", "--checkpoint", str(run_a / "best.pt"), "--predictions", str(predictions),
                         "--json", env=mska_env())
    assert evaluated.returncode == 0, evaluated.stderr
    assert "wer" in json.loads(evaluated.stdout)
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert sorted(line["name"] for line in lines) == ["e0", "e1"]  # a prediction per clip of the test shards


def test_a_missing_split_folder_is_one_line_naming_it(shards, tmp_path):
    _, data = shards
    config = write_config(tmp_path, tmp_path / "empty", Path("unused.pt"))
    (tmp_path / "empty").mkdir()
    result = run_mska("train", "--config", str(config), env=mska_env())
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "no train shards" in result.stderr and "mska pack" in result.stderr


def test_a_truncated_shard_is_one_clear_error_naming_it(shards, tmp_path):
    import shutil

    from mska_core.errors import DataError

    _, data = shards
    copy = tmp_path / "shards"
    shutil.copytree(data, copy)
    shard = sorted((copy / "train").glob("*.tar"))[-1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a copy cut short
    with pytest.raises(DataError, match=str(shard)):
        corpus, _ = shard_corpus(copy)
        corpus.crops.scan(corpus.train, ["face", "hand_left"])


def test_shards_of_another_layout_than_the_models_are_refused_naming_the_setting(shards):
    from mska_core.data.datasets import load_corpus
    from mska_core.errors import DataError
    from mska_core.registry import get_registry

    _, data = shards
    _, config = shard_corpus(data)
    with pytest.raises(DataError, match=r"is in layout 'coco_wholebody', but model.layout is 'mediapipe_holistic'"):
        load_corpus(config.data, layout="mediapipe_holistic", registry=get_registry())


def test_the_missing_flags_of_the_extraction_travel_in_the_shards(shards, tmp_path):
    """A stream's part flagged missing in some frames (``boxes/ID.npz`` ``STREAM_missing``, as
    extraction writes it) is flagged missing in those frames when the clip is read from shards."""
    import shutil

    from mska_core.data.shards import pack_shards

    out, _ = shards
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    with np.load(copy / "boxes" / "d1.npz") as boxes:
        arrays = dict(boxes)
    frames = len(np.load(copy / "keypoints" / "d1.npy"))
    arrays["face_missing"] = np.arange(frames) % 3 == 0
    np.savez(copy / "boxes" / "d1.npz", **arrays)
    for split in ("train", "dev", "test"):
        pack_shards(copy, tmp_path / "shards" / split, 1, split=split)
    corpus, _ = shard_corpus(tmp_path / "shards")
    found = corpus.crops.found("face", "d1", [0, 1, 3, 5])
    assert found.tolist() == [False, True, False, True]
    assert corpus.crops.found("hand_left", "d1", [0, 1]).tolist() == [True, True]  # as extracted
    assert corpus.crops.found("mouth", "d1", [0]) is None  # no flags for a stream it has no boxes of

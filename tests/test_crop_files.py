"""Crop streams read real crops from disk: the layout mska extract writes, temporal alignment with the
keypoints, missing crops (error or mask), the size trap, per-backbone normalisation, frozen backbones,
and mska train / mska evaluate end to end on JPEG files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import mska_env, run_mska

#: Side of the crops written to disk (a multiple of the tiny ViT's patch, 14).
SIDE = 28
STREAMS = ("face", "hand_left")


def frame_colour(index: int) -> int:
    """The red value of frame ``index``'s crops: the frame index, recoverable after JPEG coding."""
    return 40 + 2 * index


def write_corpus(root: Path, *, num_train: int = 6) -> Path:
    """A directory-format corpus whose keypoints carry their frame index (joint 0's x is index / 1000)
    and whose crops (``root/crops/STREAM/ID/NNNNNN.jpg``) carry it in their colour."""
    from PIL import Image

    from mska_core.config import SyntheticConfig
    from mska_core.data.directory import write_split
    from mska_core.synthetic.corpus import make_corpus

    corpus = make_corpus(SyntheticConfig(num_train=num_train, num_dev=2, num_test=2, vocab_size=4, min_glosses=1,
                                         max_glosses=2, frames_per_gloss=5))
    for split in ("train", "dev", "test"):
        samples = []
        for sample in corpus.split(split):
            points = sample.keypoints.clone()
            points[:, 0, 0] = torch.arange(points.shape[0]) / 1000
            points[:, 0, 2] = 1.0
            samples.append(type(sample)(name=sample.name, keypoints=points, gloss=sample.gloss, text=sample.text))
            for stream in STREAMS:
                folder = root / "crops" / stream / sample.name
                folder.mkdir(parents=True, exist_ok=True)
                for index in range(points.shape[0]):
                    colour = (frame_colour(index), 128 if stream == "face" else 64, 200)
                    Image.new("RGB", (SIDE, SIDE), colour).save(folder / f"{index:06d}.jpg", quality=95)
        write_split(root, split, samples)
    return root


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("crops-corpus"))


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory) -> Path:
    from mska_core.backbones.vit import build_vit

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("backbone") / "tiny.pt"
    torch.save(build_vit("vit_tiny_test", img_size=SIDE).state_dict(), path)
    return path


CONFIG = """
[run]
name = "crops"
output_dir = "{out}"
seed = 5

[data]
source = "directory"
path = "{data}"
crops = true

[data.crop_options]
{options}

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
{face}

[model.streams.hand_left]
backbone = "file::{backbone}:vit_tiny_test"

[model.heads.fuse]
streams = ["hand_left", "face"]

[losses.ctc]

[optim]
lr = 1e-3

[train]
epochs = 1
batch_size = 4
log_every = 1
test_beam_size = 1
progress = false
"""


def write_config(folder: Path, data: Path, backbone: Path, *, options: str = "", face: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crops.toml"
    path.write_text(CONFIG.format(out=folder / "runs", data=data, backbone=backbone, options=options, face=face))
    return path


def datasets(config_path: Path, *overrides: str, train: bool = True):
    """The training (or dev) dataset and the model of a config, as mska train builds them."""
    from mska_core.backbones.normalization import crop_normalization
    from mska_core.config import load_config
    from mska_core.data.collate import Collator
    from mska_core.data.crop_files import crop_plan, resolve_crop_sizes
    from mska_core.data.datasets import ClipDataset, load_corpus
    from mska_core.data.vocab import Vocabularies
    from mska_core.registry import get_registry
    from mska_core.training.model import build_model

    registry = get_registry()
    config = load_config(config_path, list(overrides))
    corpus = load_corpus(config.data, registry=registry)
    config = resolve_crop_sizes(config, corpus)
    vocabularies = Vocabularies.from_samples(corpus.train)
    model = build_model(config, vocabularies, registry=registry)
    dataset = ClipDataset(corpus.train if train else corpus.dev, vocabularies, config.data.augment, train=train,
                          seed=1, crops=crop_plan(config, corpus, model.encoder, registry),
                          render_crops=corpus.render_crops)
    return dataset, model, Collator(vocabularies, crop_normalization(model.encoder)), config


# -- reading and alignment -------------------------------------------------------------------------


@pytest.mark.parametrize("train", [True, False])
def test_crop_frames_follow_the_keypoint_frames_the_augmentation_picks(corpus_dir, backbone_file, tmp_path, train):
    dataset, *_ = datasets(write_config(tmp_path, corpus_dir, backbone_file), train=train)
    repeated = False
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            frames = torch.round(item.keypoints[:, 0, 0] * 1000).long()  # the frames augmentation picked
            repeated |= bool((frames[1:] == frames[:-1]).any())
            for stream in STREAMS:
                red = item.crops[stream][:, 0].float().mean((1, 2))  # [T]
                assert item.crops[stream].shape[1:] == (3, SIDE, SIDE)
                assert torch.allclose(red, (40 + 2 * frames).float(), atol=2.5), (stream, frames, red)
    if train:
        assert repeated  # a slowed-down clip repeats frames, and its crops repeat with them


def test_crops_are_read_in_getitem_not_kept_in_memory(corpus_dir, backbone_file, tmp_path):
    data = shutil.copytree(corpus_dir, tmp_path / "data")
    dataset, *_ = datasets(write_config(tmp_path, data, backbone_file))
    name = dataset.samples[0].name
    before = dataset[0].crops["face"].clone()
    for path in (data / "crops" / "face" / name).iterdir():  # new pixels on disk show in the next item
        from PIL import Image

        Image.new("RGB", (SIDE, SIDE), (0, 0, 0)).save(path, quality=95)
    after = dataset[0].crops["face"]
    assert before.float().mean() > 30 and after.float().mean() < 5


def test_a_deleted_crop_file_is_one_clear_error_naming_clip_stream_and_path(corpus_dir, backbone_file, tmp_path):
    from mska_core.errors import DataError

    data = shutil.copytree(corpus_dir, tmp_path / "data")
    name = sorted((data / "crops" / "hand_left").iterdir())[0].name
    deleted = data / "crops" / "hand_left" / name / "000003.jpg"
    deleted.unlink()
    with pytest.raises(DataError) as error:
        datasets(write_config(tmp_path, data, backbone_file), train=name in (data / "train.tsv").read_text())
    message = str(error.value)
    assert "\n" not in message
    assert repr(name) in message and "'hand_left'" in message and str(deleted) in message


def test_mask_option_masks_the_stream_for_a_clip_without_crops(corpus_dir, backbone_file, tmp_path):
    data = shutil.copytree(corpus_dir, tmp_path / "data")
    dataset, model, collate, _ = datasets(write_config(tmp_path, data, backbone_file, options='missing = "mask"'))
    name = dataset.samples[1].name
    shutil.rmtree(data / "crops" / "face" / name)
    dataset, model, collate, _ = datasets(write_config(tmp_path, data, backbone_file, options='missing = "mask"'))
    assert dataset.missing == {1: frozenset({"face"})}
    batch = collate([dataset[0], dataset[1]])
    assert batch.clips.crop_present["face"].tolist() == [True, False]
    assert batch.clips.crop_present["hand_left"].tolist() == [True, True]
    model.eval()
    crop = model.encoder.branches["face"].crop
    encoded = crop(batch.clips.crops["face"], batch.clips.lengths, 4, present=batch.clips.crop_present["face"])
    assert torch.isfinite(encoded).all()
    assert encoded[1].abs().sum() == 0 and encoded[0].abs().sum() > 0  # the masked clip has no crop features
    output = model(batch)
    assert all(torch.isfinite(logits).all() for logits in output.logits.values())


# -- size trap, normalisation, spatial augmentation --------------------------------------------------


def test_crop_backbones_are_built_at_the_size_of_the_crops_on_disk(corpus_dir, backbone_file, tmp_path):
    from mska_core.encoder.crop import backbone_image_size

    _, model, _, config = datasets(write_config(tmp_path, corpus_dir, backbone_file))
    assert config.model.streams["face"].img_size == SIDE  # recorded in the run's config
    for stream in STREAMS:
        assert backbone_image_size(model.encoder.branches[stream].crop.backbone) == SIDE


def test_a_backbone_built_for_another_size_gets_resized_crops_and_a_notice(corpus_dir, backbone_file, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        dataset, model, collate, _ = datasets(write_config(tmp_path, corpus_dir, backbone_file, face="img_size = 42"))
    notices = [r.getMessage() for r in caplog.records if "resized" in r.getMessage()]
    assert len(notices) == 1 and "'face'" in notices[0] and "28 px" in notices[0] and "42 px" in notices[0]
    item = dataset[0]
    assert item.crops["face"].shape[-1] == 42 and item.crops["hand_left"].shape[-1] == SIDE
    model(collate([item]))  # the sizes fit the backbones


def test_crops_of_the_wrong_size_are_an_error_not_silently_different_features():
    from mska_core.backbones.vit import build_vit
    from mska_core.encoder.crop import CropBranch
    from mska_core.errors import DataError

    branch = CropBranch(build_vit("vit_tiny_test", img_size=SIDE), 48, 8, 4)
    branch(torch.zeros(1, 4, 3, SIDE, SIDE), torch.tensor([4]), 1)
    with pytest.raises(DataError, match=r"crops are 56x56 px but the crop backbone was built for 28 px"):
        branch(torch.zeros(1, 4, 3, 56, 56), torch.tensor([4]), 1)


def test_crops_are_normalised_with_the_backbones_own_mean_and_std():
    import timm

    from mska_core.backbones.normalization import IMAGENET_MEAN, backbone_normalization
    from mska_core.backbones.vit import build_vit
    from mska_core.data.collate import normalize_crops

    clip = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    assert backbone_normalization(clip).mean == tuple(clip.pretrained_cfg["mean"]) == (0.5, 0.5, 0.5)
    ours = build_vit("vit_tiny_test")
    assert backbone_normalization(ours).mean == IMAGENET_MEAN
    ours.arch_config = {**ours.arch_config, "mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5)}
    exported = backbone_normalization(ours)
    assert exported.mean == (0.1, 0.2, 0.3)
    grey = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(normalize_crops(grey, exported)[0, :, 0, 0], torch.tensor([1.8, 1.6, 1.4]))


def test_spatial_augmentation_changes_training_crops_only(corpus_dir, backbone_file, tmp_path):
    options = "scale = [0.3, 0.6]\ncolor_jitter = 0.4"
    train, *_ = datasets(write_config(tmp_path, corpus_dir, backbone_file, options=options), train=True)
    plain, *_ = datasets(write_config(tmp_path / "plain", corpus_dir, backbone_file), train=True)
    dev, *_ = datasets(write_config(tmp_path, corpus_dir, backbone_file, options=options), train=False)
    dev_plain, *_ = datasets(write_config(tmp_path / "plain", corpus_dir, backbone_file), train=False)
    augmented, reference = train[0], plain[0]
    assert torch.equal(augmented.keypoints, reference.keypoints)  # the keypoints' draws are unchanged
    assert not torch.equal(augmented.crops["face"], reference.crops["face"])
    assert torch.equal(train[0].crops["face"], augmented.crops["face"])  # seeded: the same item twice
    assert torch.equal(dev[0].crops["face"], dev_plain[0].crops["face"])  # off at evaluation


# -- frozen backbones -------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["trainable_blocks = 0", "freeze = true"])
def test_a_frozen_crop_backbone_stays_in_eval_mode_and_out_of_the_optimiser(corpus_dir, backbone_file, tmp_path,
                                                                            option):
    from mska_core.training.loop import make_optimizer

    _, model, _, config = datasets(write_config(tmp_path, corpus_dir, backbone_file, face=option))
    model.train()
    face = model.encoder.branches["face"].crop
    assert not face.backbone.training and face.project.training
    assert not any(p.requires_grad for p in face.backbone.parameters())
    # trainable_blocks fixes the backbone only; freeze fixes the whole stream
    assert face.project.weight.requires_grad == (option != "freeze = true")
    optimised = {id(p) for group in make_optimizer(model, config.optim).param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in face.backbone.parameters()}
    assert optimised >= {id(p) for p in model.encoder.branches["hand_left"].crop.backbone.parameters()}


def test_trainable_blocks_trains_only_the_last_blocks(corpus_dir, backbone_file, tmp_path):
    _, model, collate, config = datasets(write_config(tmp_path, corpus_dir, backbone_file, face="trainable_blocks = 1"))
    backbone = model.encoder.branches["face"].crop.backbone
    model.train()
    assert not backbone.blocks[0].training and backbone.blocks[1].training
    assert not any(p.requires_grad for p in backbone.blocks[0].parameters())
    assert all(p.requires_grad for p in backbone.blocks[1].parameters())
    assert not backbone.patch_embed.proj.weight.requires_grad and not backbone.cls_token.requires_grad
    assert backbone.norm.weight.requires_grad


def test_trainable_blocks_beyond_the_backbone_is_a_config_error(corpus_dir, backbone_file, tmp_path):
    from mska_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainable_blocks = 5, but the crop backbone has 2 blocks"):
        datasets(write_config(tmp_path, corpus_dir, backbone_file, face="trainable_blocks = 5"))


# -- the command line -------------------------------------------------------------------------------


@pytest.mark.slow
def test_mska_train_and_evaluate_read_crops_from_disk(corpus_dir, backbone_file, tmp_path):
    data = shutil.copytree(corpus_dir, tmp_path / "data")
    config = write_config(tmp_path, data, backbone_file)
    trained = run_mska("train", "--config", str(config), "--set", "train.num_workers=2", env=mska_env())
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "runs" / "crops"
    assert (run_dir / "best.pt").is_file()
    evaluated = run_mska("evaluate", "--checkpoint", str(run_dir / "best.pt"), "--json", env=mska_env())
    assert evaluated.returncode == 0, evaluated.stderr
    assert "wer" in json.loads(evaluated.stdout)
    name = (data / "test.tsv").read_text().splitlines()[1].split("\t")[0]
    missing = data / "crops" / "face" / name / "000002.jpg"
    missing.unlink()  # the crops really come from the files
    failed = run_mska("evaluate", "--checkpoint", str(run_dir / "best.pt"), env=mska_env())
    assert failed.returncode == 2
    assert failed.stderr.strip().count("\n") == 0 and str(missing) in failed.stderr and "Traceback" not in failed.stderr
    masked = run_mska("evaluate", "--checkpoint", str(run_dir / "best.pt"), "--json", "--set",
                      'data.crop_options.missing="mask"', env=mska_env())
    assert masked.returncode == 0, masked.stderr
    assert "masked" in masked.stderr


def test_the_crops_of_a_corpus_are_looked_up_once_however_many_times_a_run_asks(corpus_dir, backbone_file, tmp_path,
                                                                                 monkeypatch):
    from mska_core.data.crop_files import CropFolders

    looked: list[tuple[str, str]] = []
    original = CropFolders._look

    def counting(self, stream, clip):
        looked.append((stream, clip))
        return original(self, stream, clip)

    monkeypatch.setattr(CropFolders, "_look", counting)
    dataset, *_ = datasets(write_config(tmp_path, corpus_dir, backbone_file))  # sizes, plan, the train split
    assert looked and len(looked) == len(set(looked))  # once per clip and stream
    assert {clip for _, clip in looked} >= {sample.name for sample in dataset.samples}
    dataset[0]
    assert len(looked) == len(set(looked))


@pytest.fixture(scope="module")
def packed_corpus_dir(corpus_dir, tmp_path_factory) -> Path:
    """``corpus_dir`` with every clip's crop folder replaced by one packed file of the same JPEG bytes."""
    from mska_core.data.crop_pack import pack_bytes

    root = shutil.copytree(corpus_dir, tmp_path_factory.mktemp("packed") / "data")
    for folder in sorted(root.glob("crops/*/*")):
        jpegs = [path.read_bytes() for path in sorted(folder.iterdir())]
        (folder.parent / f"{folder.name}.crops").write_bytes(pack_bytes(jpegs, SIDE))
        shutil.rmtree(folder)
    return root


@pytest.mark.parametrize("train", [True, False])
def test_packed_crops_give_the_augmentations_frames_as_the_folder_layout_does(corpus_dir, packed_corpus_dir,
                                                                              backbone_file, tmp_path, train):
    folders, *_ = datasets(write_config(tmp_path / "folders", corpus_dir, backbone_file), train=train)
    packed, *_ = datasets(write_config(tmp_path / "packed", packed_corpus_dir, backbone_file), train=train)
    assert not list(packed_corpus_dir.glob("crops/*/*/*.jpg"))
    for epoch in range(2):
        folders.set_epoch(epoch)
        packed.set_epoch(epoch)
        for index in range(len(folders)):
            ours, theirs = packed[index], folders[index]
            assert torch.equal(ours.keypoints, theirs.keypoints)
            for stream in STREAMS:
                assert torch.equal(ours.crops[stream], theirs.crops[stream]), (epoch, index, stream)

"""The synthetic source draws crops from the streams' crop regions; the train shorthands follow the
registered streams. No stream name is known to the core: plugin streams get both with no change."""

from __future__ import annotations

import pytest
import torch

from mska_core import CropRegion, StreamSpec, hookimpl
from mska_core.config import AugmentConfig, SyntheticConfig
from mska_core.data.datasets import ClipDataset
from mska_core.data.vocab import Vocabularies
from mska_core.errors import ConfigError
from mska_core.registry import get_registry, make_registry
from mska_core.synthetic.corpus import clip_crops, make_corpus
from mska_core.synthetic.render import render_crop

BROWS = tuple(range(40, 50))  # COCO-WholeBody: the ten brow points of the 68-point face


class BrowStreams:
    """A plugin stream with a crop region that names a sprite, and one whose region names none."""

    @hookimpl
    def mska_streams(self):
        return [
            StreamSpec(name="brow_raise", joints={"coco_wholebody": BROWS}, weight_group="brows",
                       crop_region=CropRegion(joints={"coco_wholebody": BROWS}, render_as="face")),
            StreamSpec(name="chest", joints={"coco_wholebody": (5, 6)},
                       crop_region=CropRegion(joints={"coco_wholebody": (5, 6, 11, 12)})),
        ]


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(SyntheticConfig(num_train=2, num_dev=1, num_test=1, vocab_size=4))


def test_a_plugin_stream_with_a_crop_region_gets_synthetic_crops_with_no_change_to_the_core(corpus):
    registry = make_registry(BrowStreams())
    specs = [registry.streams.get("brow_raise"), registry.streams.get("chest")]
    dataset = ClipDataset(corpus.train, Vocabularies.from_samples(corpus.train), AugmentConfig(enabled=False),
                          train=False, crop_streams=specs, crop_size=24, render_crops=corpus.render_crops)
    item = dataset[0]
    assert set(item.crops) == {"brow_raise"}  # "chest" names no sprite: the synthetic source skips it
    crops = item.crops["brow_raise"]
    assert crops.shape == (item.keypoints.shape[0], 3, 24, 24) and crops.dtype == torch.uint8
    first = corpus.train[0].keypoints[0, list(BROWS)]
    assert torch.equal(crops[0], render_crop(first, 24, "face", y_up=True))  # drawn from the region's joints


def test_the_first_party_streams_get_the_sprite_their_region_names(corpus):
    registry = get_registry()
    specs = [registry.streams.get(name) for name in ("face", "hand_left", "hand_right", "body")]
    clip = corpus.test[0].keypoints
    crops = clip_crops(clip, specs, 20)
    assert set(crops) == {"face", "hand_left", "hand_right"}  # the body declares no crop region
    assert torch.equal(crops["hand_left"][3], render_crop(clip[3, 91:112], 20, "hand", y_up=True))
    assert torch.equal(crops["face"][3], render_crop(clip[3, 23:91], 20, "face", y_up=True))
    holistic = torch.rand(5, 543, 3)  # another layout: the regions' joints in that layout
    assert set(clip_crops(holistic, specs, 20, layout="mediapipe_holistic")) == {"face", "hand_left", "hand_right"}


def _train_config(argv, registry):
    from mska_core.cli import build_parser
    from mska_core.cli.train_cmd import resolve_config

    return resolve_config(build_parser().parse_args(["train", *argv]), registry)[0]


def test_stream_shorthands_exist_for_every_registered_stream_and_weight_group():
    registry = make_registry(BrowStreams())
    config = _train_config(["--brow-raise-backbone", "file::b.pt:vit_tiny_test", "--mska-brows-state=w.pt",
                            "--hand-left-backbone", "timm::x", "--mska-hand-state", "h.pt"], registry)
    assert config.model.streams["brow_raise"].backbone == "file::b.pt:vit_tiny_test"
    assert config.model.streams["hand_left"].backbone == "timm::x"
    assert config.model.init == {"brows": "w.pt", "hand": "h.pt"}
    assert config.data.crops  # a crop backbone reads crops


def test_a_shorthand_for_an_unregistered_stream_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"--brow-raise-backbone: no registered stream.*--face-backbone"):
        _train_config(["--brow-raise-backbone", "file::b.pt"], get_registry())
    with pytest.raises(ConfigError, match=r"--mska-brows-state: .*--mska-hand-state"):
        _train_config(["--mska-brows-state", "w.pt"], get_registry())


def test_a_shorthand_without_its_value_and_an_unknown_option_are_usage_errors(capsys):
    from mska_core.cli import main

    for argv, message in ((["train", "--face-backbone"], "--face-backbone: expected one argument"),
                          (["train", "--face-backbones", "x"], "unrecognized arguments: --face-backbones x")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_pretraining_draws_the_sprite_of_the_stream_or_weight_group():
    from mska_core.synthetic.crops import sprite_for

    registry = make_registry(BrowStreams())
    assert [sprite_for(name, registry) for name in ("face", "hand", "hand_left", "brow_raise", "brows")] == [
        "face", "hand", "hand", "face", "face"]
    assert sprite_for("body", registry) is None and sprite_for("chest", registry) is None


def test_pretraining_a_stream_without_a_sprite_needs_crop_folders_and_writes_nothing(tmp_path, mska):
    out = tmp_path / "dino_body"
    proc = mska("pretrain", "--stream", "body", "--output-dir", str(out), "--epochs", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'body' declares no crop region with a sprite" in proc.stderr and "--train-dir" in proc.stderr
    assert not out.exists()

"""DINO pretraining: losses, head, schedules, the loop, resume, exports and the round trip into the encoder."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mska_core.config import load_config
from mska_core.losses.dino import entropy
from mska_core.registry import get_registry
from mska_core.training.dino import (
    DINOHead,
    Probe,
    Schedules,
    build_dino,
    build_optimizer,
    knn_accuracy,
    load_optimizer_state,
    pretrain,
)

#: Small enough to take a second or two per run on two shared CPU cores.
TINY = {
    "pretrain.img_size": 28, "pretrain.batch_size": 4, "pretrain.synthetic_images": 8,
    "pretrain.local_crops": 1, "pretrain.out_dim": 64, "pretrain.head_hidden_dim": 32,
    "pretrain.head_bottleneck_dim": 16, "pretrain.progress": False, "pretrain.warmup_epochs": 0.5,
    "pretrain.probe_images": 16, "run.device": "cpu",
}


def tiny_config(output_dir: Path, **overrides):
    values = {**TINY, "pretrain.output_dir": str(output_dir), **overrides}
    return load_config(None, [f"{key}={json.dumps(value)}" for key, value in values.items()])


def step_records(metrics: Path) -> list[dict]:
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if not r.get("summary")]


# --- losses, head, schedules -------------------------------------------------------------------


def test_dino_loss_comes_from_the_registry_and_keeps_its_centre_in_a_buffer() -> None:
    loss = get_registry().losses.get("dino").build(out_dim=8, center_momentum=0.5)
    assert "center" in loss.state_dict()
    teacher = torch.randn(4, 8)
    value = loss(torch.randn(6, 8), teacher, epoch=0)
    assert value.ndim == 0 and torch.isfinite(value)
    torch.testing.assert_close(loss.center, 0.5 * teacher.mean(0, keepdim=True))


def test_dino_loss_is_the_cross_entropy_of_every_other_view_to_each_teacher_view() -> None:
    loss = get_registry().losses.get("dino").build(out_dim=5, student_temp=0.5, teacher_temp=0.25)
    student, teacher = torch.randn(3 * 2, 5), torch.randn(2 * 2, 5)
    s = torch.log_softmax(student / 0.5, -1).chunk(3)
    t = torch.softmax(teacher / 0.25, -1).chunk(2)
    pairs = [(i, j) for i in range(2) for j in range(3) if i != j]
    expected = sum(-(t[i] * s[j]).sum(-1).mean() for i, j in pairs) / len(pairs)
    torch.testing.assert_close(loss(student, teacher), expected)


def test_teacher_temperature_warms_up_linearly_then_stays() -> None:
    loss = get_registry().losses.get("dino").build(out_dim=4, warmup_teacher_temp=0.04, teacher_temp=0.07,
                                                  warmup_teacher_temp_epochs=3)
    assert [round(loss.teacher_temperature(e), 4) for e in (0, 1.5, 3, 10)] == [0.04, 0.055, 0.07, 0.07]


def test_sinkhorn_knopp_targets_are_distributions_that_share_the_prototypes_equally() -> None:
    from mska_core.losses.dino import sinkhorn_knopp

    scores = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)) / 0.5
    targets = sinkhorn_knopp(scores, iterations=50)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(16))
    torch.testing.assert_close(targets.sum(dim=0), torch.full((8,), 16 / 8), atol=1e-3, rtol=0)
    # the batch decides: a plain softmax would give every row the same favourite prototype
    biased = scores + torch.tensor([20.0] + [0.0] * 7)
    assert (torch.softmax(biased, -1).argmax(dim=1) == 0).all()
    assert len(set(sinkhorn_knopp(biased, iterations=50).argmax(dim=1).tolist())) > 1


def test_dino_loss_centres_with_sinkhorn_knopp_or_an_ema_as_asked() -> None:
    from mska_core.losses.dino import sinkhorn_knopp

    build = get_registry().losses.get("dino").build
    teacher = torch.randn(8, 6)
    sinkhorn = build(out_dim=6, teacher_temp=0.5, centering="sinkhorn")
    torch.testing.assert_close(sinkhorn.teacher_probabilities(teacher), sinkhorn_knopp(teacher / 0.5))
    sinkhorn(torch.randn(12, 6), teacher)
    assert torch.count_nonzero(sinkhorn.center) == 0  # no EMA centre with Sinkhorn-Knopp
    ema = build(out_dim=6, teacher_temp=0.5, centering="ema")
    torch.testing.assert_close(ema.teacher_probabilities(teacher), torch.softmax(teacher / 0.5, -1))
    with pytest.raises(ValueError, match="centering must be one of ema, sinkhorn"):
        build(out_dim=6, centering="mean")


def test_an_unknown_centering_is_a_config_error_naming_the_key() -> None:
    from mska_core.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrain.centering"):
        load_config(None, ['pretrain.centering="batch"'])


def test_koleo_is_lower_for_spread_features_and_zero_for_one_feature() -> None:
    koleo = get_registry().losses.get("koleo").build()
    spread = torch.eye(4)
    clustered = torch.ones(4, 4) + 0.01 * torch.eye(4)
    assert koleo(spread) < koleo(clustered)
    assert koleo(torch.randn(1, 4)) == 0


def test_dino_head_prototypes_are_weight_normalised_with_a_fixed_gain() -> None:
    head = DINOHead(12, 10, hidden_dim=16, bottleneck_dim=8)
    gain = head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad and torch.all(gain == 1)
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(10))
    assert head(torch.randn(3, 12)).shape == (3, 10)


def test_the_optimiser_is_fused_adamw_and_stays_fused_after_loading_an_older_state() -> None:
    from mska_core.config import PretrainConfig

    model = build_dino(PretrainConfig(), get_registry())
    optimizer = build_optimizer(model, PretrainConfig())
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(group["fused"] for group in optimizer.param_groups)
    # A checkpoint written by the loop before the fused kernel: the same state, no kernel recorded.
    older = torch.optim.AdamW(model.param_groups(), lr=1e-3)
    for param in model.student.parameters():
        param.grad = torch.ones_like(param)
    older.step()
    load_optimizer_state(optimizer, older.state_dict())
    assert all(group["fused"] for group in optimizer.param_groups)
    assert len(optimizer.state) == len(older.state)


def test_schedules_warm_up_then_follow_cosines() -> None:
    from mska_core.config import PretrainConfig

    cfg = PretrainConfig(lr=1.0, min_lr=0.0, warmup_epochs=1, weight_decay=0.1, weight_decay_end=0.5,
                         momentum_teacher=0.9, epochs=5)
    s = Schedules.from_config(cfg, steps_per_epoch=2)
    assert [s.lr(i) for i in (0, 1, 2)] == [0.0, 0.5, 1.0]
    assert s.lr(10) == pytest.approx(0.0) and s.lr(6) == pytest.approx(0.5)
    assert s.weight_decay(0) == pytest.approx(0.1) and s.weight_decay(10) == pytest.approx(0.5)
    assert s.momentum(0) == pytest.approx(0.9) and s.momentum(10) == pytest.approx(1.0)
    step = s.at(6)
    assert (step.lr, step.weight_decay, step.momentum) == (s.lr(6), s.weight_decay(6), s.momentum(6))


def test_one_schedule_object_gives_the_teacher_temperature_and_the_prototype_freeze() -> None:
    from mska_core.config import PretrainConfig

    cfg = PretrainConfig(teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=1.5,
                         freeze_last_layer_epochs=0.5, epochs=5)
    s = Schedules.from_config(cfg, steps_per_epoch=2)  # warm-up over 3 steps, prototypes frozen for 1
    assert [round(s.at(i).teacher_temp, 4) for i in (0, 1, 2, 3, 9)] == [0.04, 0.05, 0.06, 0.07, 0.07]
    assert [s.at(i).freeze_last_layer for i in (0, 1, 2)] == [True, False, False]
    loss = get_registry().losses.get("dino").build(out_dim=4, warmup_teacher_temp=0.04, teacher_temp=0.07,
                                                  warmup_teacher_temp_epochs=1.5)
    for i in range(8):  # the loss's own warm-up by epoch agrees with the step schedule
        assert s.at(i).teacher_temp == pytest.approx(loss.teacher_temperature(i / 2))


def test_teacher_entropy_is_log_k_for_uniform_targets_and_zero_for_one_hot_ones() -> None:
    assert float(entropy(torch.full((3, 8), 1 / 8))) == pytest.approx(math.log(8))
    assert float(entropy(torch.eye(4))) == pytest.approx(0.0, abs=1e-6)
    loss = get_registry().losses.get("dino").build(out_dim=8, teacher_temp=0.5)
    same = torch.randn(1, 8).expand(4, 8)
    loss.center.copy_(same[:1])  # a centre that has caught up with image-independent outputs
    assert float(entropy(loss.teacher_probabilities(same))) == pytest.approx(math.log(8))


def test_knn_accuracy_is_one_for_separated_classes_and_near_chance_for_noise() -> None:
    labels = torch.arange(60) % 3
    separated = torch.nn.functional.one_hot(labels, 3).float() + 0.01 * torch.randn(60, 3)
    assert knn_accuracy(separated, labels, k=5) == 1.0
    noise = torch.randn(60, 16, generator=torch.Generator().manual_seed(0))
    assert knn_accuracy(noise, labels, k=5) < 0.6


def test_probe_crops_are_held_out_labelled_and_normalised() -> None:
    from mska_core.backbones import build_arch
    from mska_core.synthetic.render import synthetic_label

    probe = Probe("hand", 12, 28, seed=4, start=100)
    assert probe.images.shape == (12, 3, 28, 28) and probe.images.dtype == torch.float32
    assert probe.labels.tolist() == [synthetic_label("hand", i, 4) for i in range(100, 112)]
    backbone = build_arch("vit_tiny_test", img_size=28).train()
    assert probe.features(backbone).shape == (12, 48) and backbone.training  # mode restored
    assert 0.0 <= probe(backbone) <= 1.0


# --- the loop ----------------------------------------------------------------------------------


#: A short run at the default recipe (head, temperatures, momentum, layer-scale init), on small crops.
NO_COLLAPSE = {"pretrain.img_size": 56, "pretrain.batch_size": 16, "pretrain.synthetic_images": 48,
               "pretrain.local_crops": 2, "pretrain.epochs": 3, "pretrain.warmup_epochs": 1,
               "pretrain.head_hidden_dim": 512, "pretrain.head_bottleneck_dim": 128, "pretrain.out_dim": 64,
               "pretrain.probe_every": 0}


def test_the_teacher_does_not_collapse_while_pretraining_a_tiny_vit_on_synthetic_crops(tmp_path) -> None:
    result = pretrain(tiny_config(tmp_path, **NO_COLLAPSE))
    steps = step_records(result.metrics)
    assert len(steps) == 9
    late = steps[-3:]
    # a collapsed teacher gives the same (uniform after centring) targets to every image: entropy log(K)
    assert max(r["teacher_entropy"] for r in late) < 0.95 * math.log(64)
    # and a backbone that gives every image the same feature has a per-dimension std near 0
    assert min(r["feature_std"] for r in late) > 0.1


#: A short run at the default recipe whose views keep their colours, so that two views of one image
#: share something a fresh tiny ViT can see (with colour jitter they hardly do; see docs/pretraining.md).
LEARNS = {"pretrain.img_size": 56, "pretrain.batch_size": 16, "pretrain.synthetic_images": 64,
          "pretrain.epochs": 6, "pretrain.warmup_epochs": 1, "pretrain.color_jitter": 0.0,
          "pretrain.grayscale": 0.0, "pretrain.probe_every": 0, "pretrain.local_crops": 2,
          "pretrain.head_hidden_dim": 512, "pretrain.head_bottleneck_dim": 128}


@pytest.mark.slow
@pytest.mark.parametrize("stream, seed", [("face", 0), ("hand", 1)])
def test_the_student_learns_to_predict_the_teachers_targets_image_by_image(tmp_path, stream, seed) -> None:
    """Sinkhorn-Knopp gives every prototype the same share of a batch, so a student that predicts the
    same distribution for every image scores log(K) at best; below it, it has learnt the images."""
    config = tiny_config(tmp_path, **LEARNS, **{"pretrain.stream": stream, "run.seed": seed})
    assert config.pretrain.centering == "sinkhorn"
    steps = step_records(pretrain(config).metrics)
    first, last = ([r["dino"] for r in steps if r["epoch"] == e] for e in (1, 6))
    log_k = math.log(config.pretrain.out_dim)
    assert sum(last) / len(last) < log_k - 0.05 < sum(first) / len(first) - 0.1
    entropies = [r["teacher_entropy"] for r in steps[-4:]]
    assert 0.5 < min(entropies) and max(entropies) < log_k - 0.3  # neither one-hot nor uniform


def test_records_checkpoint_and_min_loss_each_epoch(tmp_path) -> None:
    result = pretrain(tiny_config(tmp_path, **{"pretrain.epochs": 2}))
    records = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    summaries = [r for r in records if r.get("summary")]
    assert [r["epoch"] for r in summaries] == [1, 2]
    assert {"loss", "dino", "koleo", "lr", "weight_decay", "momentum", "teacher_temp", "teacher_entropy",
            "feature_std"} <= set(records[0])
    assert all({"teacher_entropy", "feature_std", "probe"} <= set(r) for r in summaries)
    assert "probe_init" in summaries[0] and "probe_init" not in summaries[1]
    assert result.min_loss == min(r["loss"] for r in summaries)
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["kind"] == "training-state" and state["epoch"] == 2 and state["global_step"] == 4
    assert {"teacher", "optimizer", "loss", "rng"} <= set(state)
    assert (tmp_path / "config.toml").exists()


def test_max_steps_on_an_epochs_last_step_finishes_that_epoch_and_resumes_exactly(tmp_path) -> None:
    """Two steps per epoch: a run stopped at step 2 summarises and checkpoints its first epoch."""
    whole = pretrain(tiny_config(tmp_path / "whole", **{"pretrain.epochs": 2}))
    stopped = pretrain(tiny_config(tmp_path / "parts", **{"pretrain.epochs": 2, "pretrain.max_steps": 2}))
    state = torch.load(stopped.checkpoint, weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 2)
    summaries = [r for r in map(json.loads, stopped.metrics.read_text().splitlines()) if r.get("summary")]
    assert [r["epoch"] for r in summaries] == [1]
    resumed = pretrain(tiny_config(tmp_path / "parts", **{"pretrain.epochs": 2, "pretrain.resume": True}))
    assert step_records(resumed.metrics) == step_records(whole.metrics)
    assert resumed.min_loss == whole.min_loss


def test_stopping_early_and_resuming_gives_the_losses_of_an_uninterrupted_run(tmp_path) -> None:
    whole = pretrain(tiny_config(tmp_path / "whole", **{"pretrain.epochs": 3}))
    pretrain(tiny_config(tmp_path / "parts", **{"pretrain.epochs": 3, "pretrain.max_steps": 3}))
    resumed = pretrain(tiny_config(tmp_path / "parts", **{"pretrain.epochs": 3, "pretrain.resume": True}))
    assert step_records(resumed.metrics) == step_records(whole.metrics)
    assert resumed.min_loss == whole.min_loss
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    for key in ("state_dict", "teacher", "loss"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    # every generator ends where the uninterrupted run's does, so a step that draws from one stays exact
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["rng"]["python"] == b["rng"]["python"]
    assert torch.equal(a["rng"]["numpy"][1], b["rng"]["numpy"][1]) and a["rng"]["numpy"][2:] == b["rng"]["numpy"][2:]


def test_corrupt_crop_files_are_skipped_and_counted(tmp_path) -> None:
    from mska_core.synthetic.render import write_synthetic_crops

    crops = tmp_path / "crops"
    good = write_synthetic_crops(crops / "clip1", "face", 6, 28, seed=0)
    (crops / "clip2").mkdir()
    (crops / "clip2" / "truncated.png").write_bytes(good[0].read_bytes()[:50])
    (crops / "clip2" / "text.jpg").write_text("not an image")
    (crops / "README").write_text("not a crop")
    result = pretrain(tiny_config(tmp_path / "run", **{"pretrain.train_dirs": [str(crops)], "pretrain.epochs": 1}))
    assert sorted(Path(p).name for p in result.skipped) == ["text.jpg", "truncated.png"]
    assert result.ignored == 1
    assert (tmp_path / "run" / "skipped.txt").read_text().count("\n") == 2


def test_an_unknown_stream_is_a_one_line_error_naming_the_valid_ones(mska, tmp_path) -> None:
    done = mska("pretrain", "--stream", "hnad", "--output-dir", str(tmp_path))
    assert done.returncode == 2
    assert "did you mean 'hand'" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_flags_win_over_the_config_file(tmp_path) -> None:
    import argparse

    from mska_core.cli import build_parser
    from mska_core.cli.pretrain_cmd import resolve_config

    config_file = tmp_path / "dino.toml"
    config_file.write_text('[pretrain]\nstream = "hand"\nepochs = 7\nbatch_size = 4\n')
    args = build_parser().parse_args(["pretrain", "--config", str(config_file), "--epochs", "3",
                                      "--set", "pretrain.img_size=56"])
    assert isinstance(args, argparse.Namespace)
    cfg = resolve_config(args).pretrain
    assert (cfg.stream, cfg.epochs, cfg.batch_size, cfg.img_size) == ("hand", 3, 4, 56)


# --- exports and the round trip ---------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A face and a hand encoder pretrained for a few steps, each exported both ways."""
    root = tmp_path_factory.mktemp("exports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MSKA_LOAD_PLUGINS", "")
        from mska_core.registry import make_registry

        registry = make_registry()
        for stream, seed in (("face", 0), ("hand", 1)):
            pretrain(tiny_config(root / stream, **{
                "pretrain.stream": stream, "run.seed": seed, "pretrain.epochs": 1,
                "pretrain.export_checkpoint": True, "pretrain.output_path": str(root / stream / f"encoder_{stream}.pt"),
                "pretrain.export_backbone": str(root / stream / "backbone.pt")}), registry=registry)
    return root


def test_export_checkpoint_passes_the_guides_verification(exports) -> None:
    for stream in ("face", "hand"):
        payload = torch.load(exports / stream / f"encoder_{stream}.pt", map_location="cpu")
        assert payload.get("stream") == stream and len(payload.get("state_dict", {})) > 0
        assert payload["kind"] == "stream-encoder" and payload["format"] == "mska-core"
        assert payload["arch"] == "vit_tiny_test" and payload["arch_config"]["embed_dim"] == 48
        assert payload["min_loss"] is not None and payload["epoch"] == 1 and payload["global_step"] == 2


def test_export_backbone_loads_through_a_file_spec_with_the_teachers_weights(exports) -> None:
    from mska_core.backbones import load_backbone

    export = torch.load(exports / "face" / "encoder_face.pt", weights_only=True)
    backbone = load_backbone(f"file::{exports / 'face' / 'backbone.pt'}:vit_tiny_test", img_size=28)
    assert torch.load(exports / "face" / "backbone.pt", weights_only=True)["kind"] == "backbone"
    state = backbone.state_dict()
    assert state.keys() == export["state_dict"].keys()
    assert all(torch.equal(state[k], export["state_dict"][k]) for k in state)
    teacher = torch.load(exports / "face" / "checkpoint.pt", weights_only=True)["teacher"]
    assert all(torch.equal(teacher[f"backbone.{k}"], v) for k, v in state.items())


def assert_streams_hold_the_exports(encoder, exports, init) -> None:
    """face holds the face export's weights, both hands the hand export's (as independent copies),
    and none of them still holds the random ``init`` backbone they were built from."""
    face = torch.load(exports / "face" / "encoder_face.pt", weights_only=True)["state_dict"]
    hand = torch.load(exports / "hand" / "encoder_hand.pt", weights_only=True)["state_dict"]
    for stream, expected in (("face", face), ("hand_left", hand), ("hand_right", hand)):
        loaded = encoder.branches[stream].crop.backbone.state_dict()
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], expected[k]) for k in loaded), stream
        assert not torch.equal(loaded["cls_token"], init.state_dict()["cls_token"])
    left, right = (encoder.branches[s].crop.backbone.cls_token for s in ("hand_left", "hand_right"))
    assert left.data_ptr() != right.data_ptr()  # independent copies


def test_exports_initialise_the_face_and_both_hand_streams_of_an_encoder(exports, tmp_path) -> None:
    from mska_core.backbones import build_arch
    from mska_core.checkpoints import load_mska_encoder_state, make_payload, save_checkpoint
    from mska_core.config import HeadConfig, ModelConfig, StreamConfig
    from mska_core.encoder import MSKAEncoder

    init = build_arch("vit_tiny_test", img_size=28)
    spec = f"file::{save_checkpoint(make_payload('backbone', init.state_dict(), arch='vit_tiny_test'), tmp_path / 'init.pt')}:vit_tiny_test"
    streams = {name: StreamConfig(keypoints=True, backbone=spec, img_size=28) for name in ("face", "hand_left", "hand_right")}
    model_cfg = ModelConfig(channels=(8, 8), inter_channels=(4, 4), temporal_kernels=(3, 3), strides=(2, 2),
                            num_heads=2, head_hidden=16, head_ff=16, crop_dim=8, streams=streams,
                            heads={"fuse": HeadConfig(("face", "hand_left", "hand_right"))})
    encoder = MSKAEncoder.from_config(model_cfg, vocab_size=5)
    load_mska_encoder_state(encoder, face=exports / "face" / "encoder_face.pt",
                            hand=exports / "hand" / "encoder_hand.pt")
    assert_streams_hold_the_exports(encoder, exports, init)


def test_train_shorthands_initialise_face_and_both_hands_from_the_exports(exports, tmp_path) -> None:
    """The guide's `mska train --use-mska --mska-face-state ... --face-backbone file::...` round trip:
    the real parser and the real preparation of a fine-tuning run, then tensors compared."""
    from mska_core.backbones import build_arch
    from mska_core.checkpoints import make_payload, save_checkpoint
    from mska_core.cli import build_parser
    from mska_core.cli.train_cmd import resolve_config
    from mska_core.registry import get_registry
    from mska_core.training.loop import FineTuning

    face_file = exports / "face" / "encoder_face.pt"
    hand_file = exports / "hand" / "encoder_hand.pt"
    # The backbone specs point at random weights: only the init states can make the streams equal
    # to the exports.
    init = build_arch("vit_tiny_test", img_size=28)
    backbone = save_checkpoint(make_payload("backbone", init.state_dict(), arch="vit_tiny_test",
                                            arch_config=init.arch_config),
                               tmp_path / "random-backbone.pt")
    args = build_parser().parse_args([
        "train", "--use-mska", "--mska-face-state", str(face_file), "--mska-hand-state", str(hand_file),
        "--face-backbone", f"file::{backbone}:vit_tiny_test",
        "--hand-left-backbone", f"file::{backbone}:vit_tiny_test",
        "--hand-right-backbone", f"file::{backbone}:vit_tiny_test",
        "--set", f"run.output_dir={tmp_path}", "--set", "data.synthetic.num_train=4",
        "--set", "data.synthetic.num_dev=2", "--set", "data.synthetic.num_test=2",
        "--set", "model.channels=[8, 8]", "--set", "model.inter_channels=[4, 4]",
        "--set", "model.temporal_kernels=[3, 3]", "--set", "model.strides=[2, 2]",
        "--set", "model.num_heads=2", "--set", "model.head_hidden=16", "--set", "model.head_ff=16",
        "--set", "model.crop_dim=8", "--set", "data.synthetic.crop_size=28",
    ])
    config, _ = resolve_config(args, get_registry())
    assert config.model.init == {"face": str(face_file), "hand": str(hand_file)}
    tuning = FineTuning(config)
    tuning.prepare()
    encoder = tuning.model.encoder
    face = torch.load(face_file, weights_only=True)["state_dict"]
    hand = torch.load(hand_file, weights_only=True)["state_dict"]
    assert not all(torch.equal(face[k], hand[k]) for k in face)  # two different exports
    assert_streams_hold_the_exports(encoder, exports, init)


# --- the command line, end to end ----------------------------------------------------------------


GUIDE_SMALL = ["--set", "pretrain.max_steps=2", "--batch-size", "4", "--img-size", "28",
               "--set", "pretrain.synthetic_images=8", "--set", "pretrain.local_crops=1",
               "--set", "pretrain.out_dim=64", "--set", "pretrain.probe_every=0"]


@pytest.mark.slow
def test_the_guides_two_pretraining_commands_and_its_verification_run(mska, tmp_path) -> None:
    from mska_core.synthetic.render import write_synthetic_crops

    write_synthetic_crops(tmp_path / "data/single_signer/processed/face", "face", 8, 28, seed=0)
    write_synthetic_crops(tmp_path / "data/single_signer/processed/hand_l", "hand", 8, 28, seed=0, mirror=True)
    face = mska("pretrain", "--stream", "face", "--train-dir", "data/single_signer/processed/face",
                "--output-dir", "work_dirs/dino_face", "--epochs", "50", "--export-checkpoint",
                "--output-path", "work_dirs/dino_face/encoder_face.pt", *GUIDE_SMALL, cwd=tmp_path)
    assert face.returncode == 0, face.stderr
    hands = mska("pretrain", "--stream", "hand", "--train-dir", "data/single_signer/processed/hand_l",
                 "--output-dir", "work_dirs/dino_hands", "--epochs", "50", "--export-checkpoint",
                 "--output-path", "work_dirs/dino_hands/encoder_hand.pt", *GUIDE_SMALL, cwd=tmp_path)
    assert hands.returncode == 0, hands.stderr
    verification = (
        "import torch\n"
        "for path in ['work_dirs/dino_face/encoder_face.pt', 'work_dirs/dino_hands/encoder_hand.pt']:\n"
        "    payload = torch.load(path, map_location='cpu')\n"
        "    print(path, payload.get('stream'), len(payload.get('state_dict', {})))\n"
    )
    done = subprocess.run([sys.executable, "-c", verification], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [(path, stream) for path, stream, _ in lines] == [
        ("work_dirs/dino_face/encoder_face.pt", "face"), ("work_dirs/dino_hands/encoder_hand.pt", "hand")]
    assert all(int(count) > 0 for *_, count in lines)


@pytest.mark.slow
def test_a_killed_run_resumes_with_the_losses_of_an_uninterrupted_one(mska, tmp_path) -> None:
    from conftest import mska_env

    args = ["pretrain", "--epochs", "3", "--batch-size", "4", "--img-size", "28",
            "--set", "pretrain.synthetic_images=8", "--set", "pretrain.local_crops=1",
            "--set", "pretrain.out_dim=64", "--set", "pretrain.warmup_epochs=0.5",
            "--set", "pretrain.probe_images=8"]
    whole = mska(*args, "--output-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "mska_core", *args, "--output-dir", str(killed)],
                               env=mska_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (killed / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    epoch = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert epoch < 3
    resumed = mska(*args, "--output-dir", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {epoch}" in resumed.stderr
    assert step_records(killed / "metrics.jsonl") == step_records(tmp_path / "whole" / "metrics.jsonl")


@pytest.mark.parametrize("name, stream", [("dino-face", "face"), ("dino-hand", "hand")])
def test_example_pretraining_configs_are_valid_and_name_their_stream(name: str, stream: str) -> None:
    from conftest import ROOT

    config = load_config(ROOT / "examples" / "configs" / f"{name}.toml")
    assert config.pretrain.stream == stream and config.pretrain.export_checkpoint
    assert config.pretrain.output_path.endswith(f"encoder_{stream}.pt")

"""MSKAEncoder: assembly from the registry, the paper's attention block, masks, heads, presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mska_core import StreamSpec, hookimpl
from mska_core.config import HeadConfig, ModelConfig, StreamConfig, load_config
from mska_core.encoder import ClipBatch, EncoderOutput, KeypointBranch, MSKAEncoder
from mska_core.errors import ConfigError, DataError
from mska_core.registry import make_registry

ROOT = Path(__file__).resolve().parents[1]
PAPER_PRESET = ROOT / "examples" / "configs" / "mska-slr-paper.toml"

#: A tiny model with the paper's structure: two widths, a stride-2 block in each half.
TINY = dict(
    channels=(8, 8, 16, 16), inter_channels=(2, 2, 4, 4), temporal_kernels=(5, 3, 3, 3),
    strides=(2, 1, 2, 1), num_heads=2, head_hidden=16, head_ff=24,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY, **changes})


def clips(batch: int = 2, frames: int = 20, joints: int = 133, lengths=None, seed: int = 0) -> ClipBatch:
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(batch, frames, joints, 3, generator=generator) * 2 - 1
    points[..., 2] = torch.rand(batch, frames, joints, generator=generator) * 0.9 + 0.1
    lengths = torch.tensor(lengths if lengths is not None else [frames] * batch)
    return ClipBatch(points, lengths)


def assert_finite(tensor: torch.Tensor, what: str) -> None:
    assert torch.isfinite(tensor).all(), f"{what} has NaN or inf"


# -- assembly ------------------------------------------------------------------------------------


def test_paper_preset_has_the_reference_parameter_counts():
    config = load_config(PAPER_PRESET)
    assert config.model.vocab_size == 1094
    encoder = MSKAEncoder.from_config(config.model)
    table = encoder.parameter_table()
    assert table["encoder_total"] == 15_544_336
    assert table["total"] == 44_159_272 == sum(p.numel() for p in encoder.parameters())
    assert encoder.stream_names == ["hand_left", "face", "hand_right", "body"]
    assert encoder.head_streams == {
        "fuse": ("hand_left", "face", "hand_right", "body"),
        "left": ("hand_left", "face"),
        "right": ("hand_right", "face"),
        "body": ("body",),
    }


def test_default_streams_and_heads_follow_the_paper_for_the_four_paper_streams():
    encoder = MSKAEncoder.from_config(tiny(), vocab_size=7)
    assert sorted(encoder.stream_names) == ["body", "face", "hand_left", "hand_right"]
    assert encoder.head_streams["fuse"] == ("hand_left", "face", "hand_right", "body")
    assert set(encoder.head_streams) == {"fuse", "left", "right", "body"}
    assert [len(encoder.specs[s].joints_for("coco_wholebody")) for s in ("face", "hand_left", "body")] == [26, 27, 79]


def test_other_stream_sets_get_a_fuse_head_and_one_head_per_stream():
    config = tiny(streams={"face": StreamConfig(), "hand_right": StreamConfig()})
    encoder = MSKAEncoder.from_config(config, vocab_size=7)
    assert encoder.head_streams == {"fuse": ("face", "hand_right"), "face": ("face",), "hand_right": ("hand_right",)}


def test_unselected_streams_cost_nothing():
    encoder = MSKAEncoder.from_config(tiny(streams={"face": StreamConfig()}), vocab_size=7)
    assert list(encoder.branches) == ["face"]
    assert list(encoder.heads) == ["fuse"]
    face_only = sum(p.numel() for p in encoder.parameters())
    branch = sum(p.numel() for p in encoder.branches["face"].parameters())
    head = sum(p.numel() for p in encoder.heads["fuse"].parameters())
    assert face_only == branch + head


def test_a_stream_plugin_registered_in_a_test_becomes_a_branch():
    class ChinPlugin:
        @hookimpl
        def mska_streams(self):
            return [StreamSpec(name="chin", description="jaw line", joints={"coco_wholebody": range(23, 40)})]

    registry = make_registry(ChinPlugin())
    config = tiny(streams={"chin": StreamConfig(), "face": StreamConfig()})
    encoder = MSKAEncoder.from_config(config, vocab_size=7, registry=registry)
    assert isinstance(encoder.branches["chin"].keypoint, KeypointBranch)
    assert encoder.branches["chin"].keypoint.num_joints == 17
    out = encoder(clips())
    assert out.stream_features["chin"].shape == (2, 5, 16)
    assert out.head_inputs["fuse"].shape == (2, 5, 32)


def test_a_plugin_encoder_factory_replaces_the_core_keypoint_branch():
    class MeanEncoder(torch.nn.Module):
        out_channels = 5

        def __init__(self, factor: int) -> None:
            super().__init__()
            self.factor = factor
            self.project = torch.nn.Linear(3, 5)

        def forward(self, points):  # [B, T, V, C] -> [B, T', 5]
            pooled = F.avg_pool1d(points.mean(2).transpose(1, 2), self.factor, ceil_mode=True)
            return self.project(pooled.transpose(1, 2))

    class LipsPlugin:
        @hookimpl
        def mska_streams(self):
            build = lambda spec, model_cfg, stream_cfg, layout: MeanEncoder(math.prod(model_cfg.strides))
            return [StreamSpec(name="lips", joints={"coco_wholebody": range(71, 91)}, build_encoder=build)]

    encoder = MSKAEncoder.from_config(
        tiny(streams={"lips": StreamConfig(), "face": StreamConfig()}), vocab_size=7, registry=make_registry(LipsPlugin())
    )
    assert isinstance(encoder.branches["lips"].keypoint, MeanEncoder)
    out = encoder(clips())
    assert out.stream_features["lips"].shape == (2, 5, 5)
    assert out.head_inputs["fuse"].shape == (2, 5, 21)


def test_heads_naming_an_unselected_stream_are_a_config_error():
    config = tiny(streams={"face": StreamConfig()}, heads={"x": HeadConfig(streams=("face", "body"))})
    with pytest.raises(ConfigError, match="'body' is not a selected stream"):
        MSKAEncoder.from_config(config, vocab_size=7)


def test_a_vocabulary_size_is_required():
    with pytest.raises(ConfigError, match="vocab_size"):
        MSKAEncoder.from_config(tiny())


# -- forward -------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["paper", "softmax"])
@pytest.mark.parametrize(
    ("layout", "streams", "joints"),
    [
        ("coco_wholebody", None, 133),
        ("coco_wholebody", ("hand_left", "hand_right"), 133),
        ("mediapipe_holistic", ("face", "body"), 543),
    ],
)
def test_output_shapes(attention, layout, streams, joints):
    stream_cfg = {name: StreamConfig() for name in streams} if streams else {}
    encoder = MSKAEncoder.from_config(tiny(attention=attention, layout=layout, streams=stream_cfg), vocab_size=11)
    out = encoder(clips(frames=21, joints=joints, lengths=[21, 9]))
    assert isinstance(out, EncoderOutput)
    assert list(out.stream_features) == encoder.stream_names
    for name, feature in out.stream_features.items():
        assert feature.shape == (2, 6, 16), name
    for head, streams_of_head in encoder.head_streams.items():
        assert out.head_inputs[head].shape == (2, 6, 16 * len(streams_of_head))
        assert out.logits[head].shape == (2, 6, 11)
        assert out.gloss_features[head].shape == (2, 6, 16)
    assert out.lengths.tolist() == [6, 3]
    assert out.mask.tolist()[1] == [True] * 3 + [False] * 3


def test_output_lengths_follow_the_fourfold_downsampling_of_the_paper():
    encoder = MSKAEncoder.from_config(ModelConfig(streams={"face": StreamConfig()}, head_hidden=8, head_ff=8), vocab_size=5)
    out = encoder(clips(batch=4, frames=37, lengths=[37, 36, 5, 1]))
    assert out.logits["fuse"].shape[1] == 10
    assert out.lengths.tolist() == [10, 9, 2, 1]  # ceil(ceil(L / 2) / 2), as the reference computes


def test_distillation_targets_are_the_detached_mean_of_the_heads_probabilities():
    encoder = MSKAEncoder.from_config(tiny(), vocab_size=9)
    out = encoder(clips())
    targets = out.distillation_targets()
    expected = torch.stack([logits.softmax(-1) for logits in out.logits.values()]).mean(0)
    assert not targets.requires_grad
    torch.testing.assert_close(targets, expected.detach())
    torch.testing.assert_close(targets.sum(-1), torch.ones(2, 5))


@pytest.mark.parametrize("attention", ["paper", "softmax"])
def test_gradients_reach_every_parameter(attention):
    encoder = MSKAEncoder.from_config(tiny(attention=attention), vocab_size=7)
    out = encoder(clips(lengths=[20, 13]))
    loss = sum(F.log_softmax(logits, -1)[..., 1:].mean() for logits in out.logits.values())
    loss.backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("attention", ["paper", "softmax"])
@pytest.mark.parametrize("case", ["padded frames", "zero-confidence joints", "missing stream", "NaN detections"])
def test_masking_cases_never_produce_nan(attention, case):
    encoder = MSKAEncoder.from_config(tiny(attention=attention), vocab_size=7)
    batch = clips(batch=3, frames=24, lengths=[24, 7, 1])
    points = batch.keypoints.clone()
    if case == "zero-confidence joints":
        points[0, :, 91:100, 2] = 0
        points[1, ::2, :, 2] = 0
    elif case == "missing stream":  # the whole right hand undetected in clip 1: zeros everywhere
        points[1, :, 112:133] = 0
        points[2, :, 23:91] = 0
    elif case == "NaN detections":
        points[0, 3:6, 91:112] = float("nan")
    batch = ClipBatch(points, batch.lengths)
    for mode in ("train", "eval"):
        encoder.train(mode == "train")
        encoder.zero_grad()
        out = encoder(batch)
        for head, logits in out.logits.items():
            assert_finite(logits, f"{mode} logits of {head}")
        if mode == "train":
            sum(logits.log_softmax(-1).mean() for logits in out.logits.values()).backward()
            for name, p in encoder.named_parameters():
                assert_finite(p.grad, f"gradient of {name}")


def test_state_dict_keys_do_not_change_after_a_forward():
    encoder = MSKAEncoder.from_config(tiny(attention="softmax"), vocab_size=7)
    before = list(encoder.state_dict())
    encoder(clips())
    encoder.eval()
    encoder(clips())
    assert list(encoder.state_dict()) == before


def test_keypoints_of_the_wrong_layout_are_a_data_error():
    encoder = MSKAEncoder.from_config(tiny(), vocab_size=7)
    with pytest.raises(DataError, match="133 joints"):
        encoder(clips(joints=543))


def test_paper_attention_block_matches_the_formula():
    """The fused eval path against a literal transcription of the block (channels-first, einsum)."""
    torch.manual_seed(0)
    config = tiny(streams={"hand_left": StreamConfig()})
    encoder = MSKAEncoder.from_config(config, vocab_size=5)
    branch = encoder.branches["hand_left"].keypoint
    with torch.no_grad():  # statistics and scales away from the identity, so that folding matters
        for module in branch.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
        for block in branch.blocks:
            block.alpha.normal_(1, 0.3)
            block.global_attention.normal_(0, 0.1)
    branch.eval()
    points = clips(batch=2, frames=17).keypoints[:, :, list(range(27))]
    with torch.no_grad():
        ours = branch(points, torch.tensor([17, 17]))
        expected = literal_branch(branch, points)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_inference_follows_in_place_parameter_changes_and_load_state_dict():
    """Nothing is kept between calls: an in-place change (as an optimiser or EMA makes, or a write
    through ``.data``) and ``load_state_dict`` show in the next eval output."""
    torch.manual_seed(0)
    encoder = MSKAEncoder.from_config(tiny(streams={"hand_left": StreamConfig()}), vocab_size=5).eval()
    batch = clips(batch=2, frames=12)
    original = {k: v.clone() for k, v in encoder.state_dict().items()}
    with torch.no_grad():
        first = encoder(batch).logits["fuse"]
        for block in encoder.branches["hand_left"].keypoint.blocks:
            block.attend.norm.running_var.mul_(2.0)
            block.temporal.conv.weight.data += 0.05  # bypasses the version counter
        changed = encoder(batch).logits["fuse"]
        plain = encoder.set_fused_kernels(False)(batch).logits["fuse"]
        encoder.set_fused_kernels(True)
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(changed, plain, rtol=1e-4, atol=1e-5)
    encoder.load_state_dict(original)
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch).logits["fuse"], first)


@pytest.mark.parametrize("attention", ["paper", "softmax"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fast_path_matches_the_plain_path(attention, mode):
    """The fused kernels against the plain block (the formula, channels-first): outputs, gradients
    and the batch norms' running statistics, with padding and unseen joints in the batch."""
    import copy

    torch.manual_seed(0)
    config = tiny(attention=attention, attention_dropout=0.0, dropout=0.0, head_dropout=0.0)
    fused = MSKAEncoder.from_config(config, vocab_size=7).set_fused_kernels(True)
    plain = copy.deepcopy(fused).set_fused_kernels(False)
    batch = clips(frames=21, lengths=[21, 13])
    batch.keypoints[1, :, 91:100, 2] = 0
    outputs = []
    for encoder in (fused, plain):
        encoder.train(mode == "train")
        out = encoder(batch)
        if mode == "train":
            sum(F.log_softmax(logits, -1)[..., 1:].mean() for logits in out.logits.values()).backward()
        outputs.append(out)
    for head in outputs[1].logits:
        torch.testing.assert_close(outputs[0].logits[head], outputs[1].logits[head], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.state_dict(), plain.state_dict(), rtol=1e-4, atol=1e-5)
    if mode == "train":
        for (name, p_fused), (_, p_plain) in zip(fused.named_parameters(), plain.named_parameters()):
            if name.endswith("conv.bias"):  # followed by a training-mode batch norm: zero up to rounding
                continue
            scale = float(p_plain.grad.abs().max()) + 1e-12
            assert float((p_fused.grad - p_plain.grad).abs().max()) / scale < 1e-3, name


@pytest.mark.parametrize("masked", [False, True])
def test_the_joint_scores_have_exact_gradients(masked):
    """The fast path's scores (queries and keys of every head, their products over channels and
    frames) against the formula and finite differences in float64, with and without frame weights."""
    from mska_core.encoder.layers import joint_scores

    generator = torch.Generator().manual_seed(3)
    N, T, V, C, S, I = 2, 4, 5, 3, 2, 3
    x = torch.randn(N, T, V, C, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(2 * S * I, C, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(2 * S * I, V, dtype=torch.float64, generator=generator, requires_grad=True)
    valid = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float64) if masked else None
    assert torch.autograd.gradcheck(lambda *a: joint_scores(*a, S, valid), (x, weight, bias))
    q, k = (torch.einsum("ntvc,jc->njtv", x, weight) + bias.view(1, -1, 1, V)).view(N, 2, S, I, T, V).unbind(1)
    frames = torch.ones(N, T, dtype=torch.float64) if valid is None else valid
    expected = torch.einsum("nsitu,nsitv,nt->nsuv", q, k, frames)
    torch.testing.assert_close(joint_scores(x, weight, bias, S, valid), expected)


@pytest.mark.parametrize("clips", [1, 3])
def test_the_joint_mixing_kernel_has_exact_gradients(clips):
    """The fast path's mixing of every frame's joints by its clip's maps, against the formula and
    finite differences in float64."""
    from mska_core.encoder.layers import joint_mixing

    generator = torch.Generator().manual_seed(clips)
    maps = torch.randn(clips, 6, 5, dtype=torch.float64, generator=generator, requires_grad=True)  # [N, R, U]
    x = torch.randn(clips, 4, 5, 3, dtype=torch.float64, generator=generator, requires_grad=True)  # [N, T, U, C]
    assert torch.autograd.gradcheck(joint_mixing, (maps, x))
    torch.testing.assert_close(joint_mixing(maps, x), torch.einsum("nru,ntuc->ntrc", maps, x))


def literal_branch(branch: KeypointBranch, points: torch.Tensor) -> torch.Tensor:
    def conv_norm(unit, x, stride=1):
        pad = unit.conv.kernel_size[0] // 2
        y = F.conv2d(x, unit.conv.weight, unit.conv.bias, stride=(stride, 1), padding=(pad, 0))
        return F.batch_norm(y, unit.norm.running_mean, unit.norm.running_var, unit.norm.weight, unit.norm.bias,
                            False, 0.0, unit.norm.eps)

    x = F.leaky_relu(conv_norm(branch.input_map, points.permute(0, 3, 1, 2)), 0.1)  # [N, C, T, V]
    for block in branch.blocks:
        N, C, T, V = x.shape
        S, I = block.num_heads, block.inter_channels
        y = x + block.joint_encoding.unsqueeze(1)  # + pe[c, v]
        q, k = F.conv2d(y, block.qk.weight, block.qk.bias).view(N, 2, S, I, T, V).unbind(1)
        scores = torch.einsum("nsctu,nsctv->nsuv", q, k) / (I * T)
        attention = torch.tanh(scores) * block.alpha.view(1, S, 1, 1) + block.global_attention
        mixed = torch.einsum("nctu,nsuv->nsctv", x, attention).reshape(N, S * C, T, V)
        skip = (lambda unit: conv_norm(unit, x)) if block.skip_attend is not None else (lambda unit: x)
        z = F.leaky_relu(skip(block.skip_attend) + conv_norm(block.attend, mixed), 0.1)
        z = F.leaky_relu(skip(block.skip_mix) + conv_norm(block.mix, z), 0.1)
        temporal_skip = conv_norm(block.skip_temporal, z, block.stride) if block.skip_temporal is not None else z
        x = F.leaky_relu(temporal_skip + conv_norm(block.temporal, z, block.stride), 0.1)
    return x.mean(3).transpose(1, 2)


# -- crop branch ---------------------------------------------------------------------------------


class TinyBackbone(torch.nn.Module):
    """A real small image encoder: [N, 3, H, W] -> [N, 6]; counts the frames it saw."""

    feature_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)
        self.seen = 0

    def forward(self, images):
        self.seen += images.shape[0]
        return self.conv(images).mean((2, 3))


def test_crop_branch_encodes_valid_frames_and_merges_with_the_keypoints():
    backbone = TinyBackbone()
    config = tiny(streams={"face": StreamConfig(), "hand_left": StreamConfig()}, crop_dim=10)
    encoder = MSKAEncoder.from_config(config, vocab_size=7, backbones={"face": backbone})
    assert encoder.branches["face"].crop.backbone is backbone
    batch = clips(frames=20, lengths=[20, 6])
    crops = torch.rand(2, 20, 3, 16, 16)
    crops[1, 6:] = float("nan")  # padding is never looked at
    out = encoder(ClipBatch(batch.keypoints, batch.lengths, {"face": crops}))
    assert backbone.seen == 26
    assert out.stream_features["face"].shape == (2, 5, 16 + 10)
    assert out.head_inputs["fuse"].shape == (2, 5, 16 + 10 + 16)
    assert_finite(out.logits["fuse"], "logits")
    out.logits["fuse"].log_softmax(-1).mean().backward()
    assert encoder.branches["face"].crop.backbone.conv.weight.grad is not None


def test_a_crop_only_stream_is_pooled_to_the_keypoint_rate():
    config = tiny(streams={"face": StreamConfig(keypoints=False), "hand_left": StreamConfig()}, crop_dim=4)
    encoder = MSKAEncoder.from_config(config, vocab_size=7, backbones={"face": TinyBackbone()})
    assert encoder.branches["face"].keypoint is None
    batch = clips(frames=18, lengths=[18, 3])
    out = encoder(ClipBatch(batch.keypoints, batch.lengths, {"face": torch.rand(2, 18, 3, 12, 12)}))
    assert out.stream_features["face"].shape == (2, 5, 4)
    assert out.lengths.tolist() == [5, 1]


def test_missing_crops_for_a_crop_stream_are_a_data_error():
    config = tiny(streams={"face": StreamConfig()})
    encoder = MSKAEncoder.from_config(config, vocab_size=7, backbones={"face": TinyBackbone()})
    with pytest.raises(DataError, match="no crops"):
        encoder(clips())


def test_crop_backbone_from_a_spec_is_loaded_through_the_backbone_registry(tmp_path):
    from mska_core.backbones import build_arch
    from mska_core.checkpoints import make_payload, save_checkpoint

    vit = build_arch("vit_tiny_test", img_size=28)
    path = save_checkpoint(
        make_payload("backbone", vit.state_dict(), stream="face", arch=vit.arch, arch_config=vit.arch_config),
        tmp_path / "face.pt",
    )
    config = tiny(streams={"face": StreamConfig(backbone=f"file::{path}", img_size=28)}, crop_dim=4)
    encoder = MSKAEncoder.from_config(config, vocab_size=7)
    backbone = encoder.branches["face"].crop.backbone
    torch.testing.assert_close(backbone.state_dict(), vit.state_dict())
    batch = clips(frames=8)
    out = encoder(ClipBatch(batch.keypoints, batch.lengths, {"face": torch.rand(2, 8, 3, 28, 28)}))
    assert out.stream_features["face"].shape == (2, 2, 16 + 4)


# -- command line --------------------------------------------------------------------------------


def test_summary_prints_the_paper_preset_counts(mska):
    import json

    result = mska("summary", str(PAPER_PRESET), "--json")
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    assert table["encoder_total"] == 15_544_336
    assert table["total"] == 44_159_272
    assert table["streams"]["body"]["keypoint"] == 4_085_152
    assert table["heads"]["fuse"]["input_dim"] == 1024


def test_summary_prints_a_table_and_needs_a_vocabulary_size(mska):
    result = mska("summary", "--set", "model.channels=[8, 8]", "--set", "model.inter_channels=[2, 2]",
                  "--set", "model.temporal_kernels=[3, 3]", "--set", "model.strides=[2, 2]", "--vocab-size", "9")
    assert result.returncode == 0, result.stderr
    assert "hand_left" in result.stdout and "total" in result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 80
    missing = mska("summary")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "--vocab-size" in missing.stderr


def test_config_show_reads_the_paper_preset(mska):
    result = mska("config", "show", str(PAPER_PRESET), "--json")
    assert result.returncode == 0, result.stderr
    assert '"vocab_size": 1094' in result.stdout


def test_softmax_attention_weights_are_distributions_that_skip_unseen_joints():
    encoder = MSKAEncoder.from_config(tiny(attention="softmax", streams={"hand_left": StreamConfig()}), vocab_size=5)
    block = encoder.branches["hand_left"].keypoint.blocks[0].eval()
    N, V, T = 2, 27, 6
    q = torch.randn(N, block.num_heads, block.inter_channels * T, V)
    k = torch.randn(N, block.num_heads, block.inter_channels * T, V)
    hidden = torch.zeros(N, V, dtype=torch.bool)
    hidden[0, 3] = True
    valid = (torch.arange(T) < torch.tensor([[6], [4]])).float()
    scores = torch.einsum("nsctu,nsctv,nt->nsuv", q.view(N, block.num_heads, -1, T, V),
                          k.view(N, block.num_heads, -1, T, V), valid)
    weights = block.softmax_from_scores(scores, torch.tensor([6, 4]), hidden)  # [N, S, U, V]
    torch.testing.assert_close(weights.sum(2), torch.ones(N, block.num_heads, V))
    assert weights[0, :, 3, :].max() < 1e-6
    assert weights[1, :, 3, :].min() > 0
    plain = block.softmax_weights_plain(q.view(N, block.num_heads, -1, T, V), k.view(N, block.num_heads, -1, T, V),
                                        torch.tensor([6, 4]), hidden)  # [N, S, U, V]
    torch.testing.assert_close(weights, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ["paper", "softmax"])
def test_the_encoder_trains_and_evaluates_under_bf16_autocast(attention):
    """``[train] amp = "bf16"``: the fast path's kernels and the heads' masked norm under autocast
    (products in bfloat16, parameters, gradients and running statistics in float32)."""
    torch.manual_seed(0)
    encoder = MSKAEncoder.from_config(tiny(attention=attention), vocab_size=7)
    batch = clips(frames=21, lengths=[21, 13])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(batch)
        loss = sum(F.log_softmax(logits.float(), -1)[..., 1:].mean() for logits in out.logits.values())
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is None or parameter.grad.dtype == torch.float32, name
    assert all(buffer.dtype != torch.bfloat16 for buffer in encoder.buffers())
    encoder.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = encoder(batch).logits["fuse"]
    assert torch.isfinite(logits.float()).all()

"""Each custom autograd kernel of the attention block's fast path can be switched off on its own;
the fast path then computes that step with autograd's own operations, and the outputs, gradients
and running statistics stay those of the kernel."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mska_core.config import ModelConfig
from mska_core.encoder import KERNELS, AttentionBlock, ClipBatch, MSKAEncoder
from mska_core.encoder.layers import disabled_kernels, joint_mixing, set_disabled_kernels
from mska_core.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

#: A tiny model with the paper's structure: two widths, a stride-2 block in each half.
TINY = dict(
    channels=(8, 8, 16, 16), inter_channels=(2, 2, 4, 4), temporal_kernels=(5, 3, 3, 3),
    strides=(2, 1, 2, 1), num_heads=2, head_hidden=16, head_ff=24,
    attention_dropout=0.0, dropout=0.0, head_dropout=0.0,
)


def clips() -> ClipBatch:
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(2, 21, 133, 3, generator=generator) * 2 - 1
    points[..., 2] = torch.rand(2, 21, 133, generator=generator) * 0.9 + 0.1
    points[1, :, 91:100, 2] = 0  # joints never seen in one clip (softmax mode hides them)
    return ClipBatch(points, torch.tensor([21, 13]))


def float64(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("attention", ["paper", "softmax"])
def test_an_encoder_without_one_kernel_gives_the_kernels_outputs_and_gradients(kernel, attention):
    torch.manual_seed(0)
    with_all = MSKAEncoder.from_config(ModelConfig(**TINY, attention=attention), vocab_size=7).train()
    without = copy.deepcopy(with_all).set_disabled_kernels({kernel})
    assert all(block.disabled_kernels == {kernel} for block in without.modules() if isinstance(block, AttentionBlock))
    batch = clips()
    outputs = []
    for encoder in (with_all, without):
        out = encoder(batch)
        sum(F.log_softmax(logits, -1)[..., 1:].mean() for logits in out.logits.values()).backward()
        outputs.append(out)
    for head in outputs[0].logits:
        torch.testing.assert_close(outputs[1].logits[head], outputs[0].logits[head], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(without.state_dict(), with_all.state_dict(), rtol=1e-4, atol=1e-5)
    for (name, p_with), (_, p_without) in zip(with_all.named_parameters(), without.named_parameters()):
        if name.endswith("conv.bias"):  # followed by a training-mode batch norm: zero up to rounding
            continue
        scale = float(p_with.grad.abs().max()) + 1e-12
        assert float((p_without.grad - p_with.grad).abs().max()) / scale < 1e-3, name


@pytest.mark.parametrize("kernel", KERNELS)
def test_an_encoder_without_one_kernel_gives_the_kernels_eval_outputs(kernel):
    torch.manual_seed(0)
    with_all = MSKAEncoder.from_config(ModelConfig(**TINY), vocab_size=7).eval()
    without = copy.deepcopy(with_all).set_disabled_kernels({kernel})
    with torch.no_grad():
        expected, got = with_all(clips()).logits, without(clips()).logits
    for head in expected:
        torch.testing.assert_close(got[head], expected[head], rtol=1e-4, atol=1e-5)


def test_the_mixing_without_its_kernel_has_the_kernels_values_and_gradients():
    maps, x = float64(3, 6, 5, seed=1), float64(3, 4, 5, 3, seed=2)  # [N, R, U], [N, T, U, C]
    assert torch.autograd.gradcheck(lambda *a: joint_mixing(*a, kernel=False), (maps, x))
    torch.testing.assert_close(joint_mixing(maps, x, kernel=False), joint_mixing(maps, x))


def test_blocks_built_after_set_disabled_kernels_leave_those_kernels_off():
    try:
        set_disabled_kernels({"joint_mixing"})
        encoder = MSKAEncoder.from_config(ModelConfig(**TINY), vocab_size=7)
    finally:
        set_disabled_kernels(())
    blocks = [m for m in encoder.modules() if isinstance(m, AttentionBlock)]
    assert blocks and all(not b.uses("joint_mixing") for b in blocks)
    assert disabled_kernels() == frozenset()


def test_an_unknown_kernel_name_is_a_config_error_listing_the_kernels():
    encoder = MSKAEncoder.from_config(ModelConfig(**TINY), vocab_size=7)
    with pytest.raises(ConfigError, match="unknown encoder kernel.*'joint_scores'.*joint_mixing"):
        encoder.set_disabled_kernels({"joint_scores"})


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_disabled_kernel_is_not_called(kernel, monkeypatch):
    from mska_core.encoder import layers

    function = {"joint_mixing": layers.JointMixing}[kernel]
    calls = []
    original = function.apply
    monkeypatch.setattr(function, "apply", lambda *a: calls.append(1) or original(*a))
    encoder = MSKAEncoder.from_config(ModelConfig(**TINY), vocab_size=7).train()
    encoder(clips())
    assert calls
    calls.clear()
    encoder.set_disabled_kernels({kernel})(clips())
    assert not calls

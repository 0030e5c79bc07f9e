"""torch.compile of the encoder (inductor on the CPU) trains and evaluates like the eager encoder, and
``train.compile = true`` compiles the fine-tuning encoder in place."""

from __future__ import annotations

import copy

import pytest
import torch

from mska_core.config import ModelConfig, StreamConfig
from mska_core.encoder import ClipBatch, MSKAEncoder

#: The smallest encoder with every part of a block: one stream, one block that widens and strides.
SMALLEST = dict(
    channels=(8,), inter_channels=(2,), temporal_kernels=(3,), strides=(2,), num_heads=2,
    head_hidden=8, head_ff=8, streams={"hand_left": StreamConfig()},
    dropout=0.0, attention_dropout=0.0, head_dropout=0.0,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def batch() -> ClipBatch:
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(2, 12, 133, 3, generator=generator)
    return ClipBatch(points, torch.tensor([12, 9]))


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["paper", "softmax"])
def test_compiled_encoder_trains_and_evaluates_like_the_eager_one(attention):
    torch.manual_seed(0)
    eager = MSKAEncoder.from_config(ModelConfig(**SMALLEST, attention=attention), vocab_size=5)
    model = copy.deepcopy(eager)
    compiled = torch.compile(model)
    clips = batch()
    outputs = []
    for encoder in (eager, compiled):  # one training step each: the running statistics stay equal
        out = encoder(clips)
        sum(logits.log_softmax(-1).mean() for logits in out.logits.values()).backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[1].logits["fuse"], outputs[0].logits["fuse"], rtol=1e-4, atol=1e-5)
    for (name, p_eager), (_, p_compiled) in zip(eager.named_parameters(), model.named_parameters()):
        if name.endswith("conv.bias"):  # before a training-mode batch norm: zero up to rounding
            continue
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, rtol=1e-3, atol=1e-5, msg=name)
    eager.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(clips).logits["fuse"], eager(clips).logits["fuse"], rtol=1e-4, atol=1e-5)
    assert list(model.state_dict()) == list(eager.state_dict())


def test_train_compile_compiles_the_encoder_in_place(tmp_path):
    from mska_core.config import load_config
    from mska_core.training.loop import FineTuning

    path = tmp_path / "compile.toml"
    path.write_text(f"""
[run]
output_dir = "{tmp_path / 'runs'}"
[data]
source = "synthetic"
[model]
channels = [8]
inter_channels = [2]
temporal_kernels = [3]
strides = [2]
num_heads = 2
head_hidden = 8
head_ff = 8
[model.streams.hand_left]
[losses.ctc]
[train]
epochs = 1
compile = true
progress = false
""")
    plain = FineTuning(load_config(path, ["train.compile=false", f'run.output_dir="{tmp_path / "eager"}"']))
    plain.prepare()
    tuning = FineTuning(load_config(path))
    tuning.prepare()
    encoder = tuning.model.encoder
    assert isinstance(encoder, MSKAEncoder)
    assert encoder._compiled_call_impl is not None and plain.model.encoder._compiled_call_impl is None
    assert list(tuning.model.state_dict()) == list(plain.model.state_dict())

"""Padding a clip in a batch leaves the outputs on its real frames as they are alone.

Softmax attention guarantees it (padded frames are out of the scores and read as zeros by every
convolution over time), on the plain path and on the fast one. Paper attention reproduces the
reference, which lets padded frames in; it is not held to this.
"""

from __future__ import annotations

import pytest
import torch

from mska_core.config import ModelConfig
from mska_core.encoder import ClipBatch, MSKAEncoder

TINY = dict(
    channels=(8, 8, 16, 16), inter_channels=(2, 2, 4, 4), temporal_kernels=(5, 3, 3, 3),
    strides=(2, 1, 2, 1), num_heads=2, head_hidden=16, head_ff=24,
)


def clip(frames: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(frames, 133, 3, generator=generator) * 2 - 1
    points[..., 2] = torch.rand(frames, 133, generator=generator) * 0.9 + 0.1
    return points


@pytest.mark.parametrize("fused", [True, False], ids=["fast path", "plain path"])
@pytest.mark.parametrize("padding", ["zeros", "noise"])
def test_padded_frames_leave_the_real_frames_outputs_unchanged(padding: str, fused: bool):
    torch.manual_seed(0)
    encoder = MSKAEncoder.from_config(ModelConfig(**TINY, attention="softmax"), vocab_size=11).eval()
    encoder.set_fused_kernels(fused)
    short, long = clip(12, seed=1), clip(24, seed=2)
    alone = encoder(ClipBatch(short[None], torch.tensor([12])))
    padded = torch.zeros(2, 24, 133, 3) if padding == "zeros" else torch.randn(2, 24, 133, 3) * 5
    padded[0, :12] = short
    padded[1] = long
    batched = encoder(ClipBatch(padded, torch.tensor([12, 24])))
    valid = int(alone.lengths[0])
    assert int(batched.lengths[0]) == valid
    for head, logits in alone.logits.items():
        torch.testing.assert_close(batched.logits[head][0, :valid], logits[0, :valid], rtol=1e-4, atol=1e-5)
    for stream, features in alone.stream_features.items():
        torch.testing.assert_close(batched.stream_features[stream][0, :valid], features[0, :valid],
                                   rtol=1e-4, atol=1e-5)

"""The keypoint branch of one stream: a 1×1 input map, then the attention blocks, averaged over the
joints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.encoder.attention import AttentionBlock
from mska_core.encoder.layers import LEAKY_SLOPE, ConvNorm, frame_mask


class KeypointBranch(nn.Module):
    """The keypoint encoder of one stream: a 1×1 input map with batch norm and LeakyReLU, then the
    attention blocks; features are averaged over the joints.

    ``joints`` are the stream's indices in the batch's layout (a non-persistent buffer).
    """

    def __init__(self, joints: Sequence[int], model_cfg: Any) -> None:
        super().__init__()
        self.num_joints = len(joints)
        self.in_channels = model_cfg.in_channels
        self.out_channels = model_cfg.channels[-1]
        self.register_buffer("joints", torch.tensor(list(joints), dtype=torch.long), persistent=False)
        self.input_map = ConvNorm(model_cfg.in_channels, model_cfg.channels[0])
        blocks = []
        in_channels = model_cfg.channels[0]
        for out_channels, inter, kernel, stride in zip(
            model_cfg.channels, model_cfg.inter_channels, model_cfg.temporal_kernels, model_cfg.strides
        ):
            blocks.append(
                AttentionBlock(
                    in_channels, out_channels, inter, self.num_joints,
                    num_heads=model_cfg.num_heads, temporal_kernel=kernel, stride=stride,
                    attention=model_cfg.attention, attention_dropout=model_cfg.attention_dropout,
                )
            )
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, points: Tensor, lengths: Tensor) -> Tensor:
        """``points`` ``[N, T, V, C]`` (this stream's joints) and ``lengths`` ``[N]`` to ``[N, T', C_out]``."""
        x = points.contiguous()  # [N, T, V, C]: time-major, channels-last
        N, T, V, C = x.shape
        hidden = hidden_joints(x, lengths) if self.blocks[0].attention == "softmax" else None
        x = F.leaky_relu(self.input_map.rows(x.reshape(N * T * V, C)), LEAKY_SLOPE).reshape(N, T, V, -1)
        for block in self.blocks:
            x = block(x, lengths, hidden)
            lengths = block.output_length(lengths)
        return x.mean(dim=2)


def hidden_joints(points: Tensor, lengths: Tensor) -> Tensor:
    """``[N, V]`` bool from ``points`` ``[N, T, V, C]``: joints whose confidence (channel 2) is zero
    on every valid frame.

    A clip whose joints are all hidden (the stream is missing) hides none, so that attention stays
    defined; its features then come from the zero-confidence input like any other.
    """
    N, T, V, C = points.shape
    if C < 3:
        return torch.zeros(N, V, dtype=torch.bool, device=points.device)
    valid = frame_mask(lengths, T).view(N, T, 1)
    seen = ((points[..., 2] > 0) & valid).any(dim=1)  # [N, V]
    return ~seen & seen.any(dim=-1, keepdim=True)

"""The crop branch of a stream: per-frame image crops through a backbone, projected and pooled in
time to the keypoint branch's rate."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.encoder.layers import frame_mask


class CropBranch(nn.Module):
    """Per-frame image crops through a backbone, projected and pooled in time to the keypoint rate.

    ``backbone`` is any module mapping ``[N, 3, H, W]`` to ``[N, feature_dim]``; only the valid
    frames of each clip go through it. Output frame ``t'`` averages the valid frames
    ``[t'·factor, (t'+1)·factor)``.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim, self.out_dim, self.factor = feature_dim, out_dim, factor
        self.project = nn.Linear(feature_dim, out_dim)

    def forward(self, crops: Tensor, lengths: Tensor, frames_out: int) -> Tensor:
        """``crops`` ``[N, T, 3, H, W]`` to ``[N, frames_out, out_dim]``."""
        N, T = crops.shape[:2]
        valid = frame_mask(lengths, T)
        features = self.project(self.backbone(crops[valid]))  # [n_valid, D]
        per_frame = features.new_zeros(N, T, self.out_dim).masked_scatter(valid.unsqueeze(-1), features)
        span = frames_out * self.factor
        weights = valid.to(per_frame.dtype)
        if span > T:
            per_frame = F.pad(per_frame, (0, 0, 0, span - T))
            weights = F.pad(weights, (0, span - T))
        sums = per_frame[:, :span].reshape(N, frames_out, self.factor, self.out_dim).sum(2)
        counts = weights[:, :span].reshape(N, frames_out, self.factor).sum(2, keepdim=True)
        return sums / counts.clamp(min=1.0)

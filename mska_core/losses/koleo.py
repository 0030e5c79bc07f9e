"""The KoLeo regulariser (Kozachenko-Leonenko differential entropy estimator), as used by DINOv2.

It spreads features over the unit sphere: for L2-normalised features, the loss is the mean of
``-log(d_i + eps)`` where ``d_i`` is the distance from feature ``i`` to its nearest neighbour in the
batch. Its weight comes from ``[losses.koleo] weight`` (or ``[pretrain] koleo_weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """``forward(features [N, D]) -> scalar``; zero when the batch has fewer than two features."""

    def __init__(self, *, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2:
            raise ValueError(f"KoLeoLoss: expected features [N, D], got {tuple(features.shape)}")
        if features.shape[0] < 2:
            return features.new_zeros(())
        x = F.normalize(features.float(), dim=-1, eps=self.eps)
        with torch.no_grad():
            similarity = x @ x.T
            similarity.fill_diagonal_(-2.0)  # never one's own neighbour
            nearest = similarity.argmax(dim=1)
        distances = F.pairwise_distance(x, x[nearest], p=2, eps=self.eps)
        return -torch.log(distances + self.eps).mean()

"""Self-distillation between recognition heads (the ``distillation`` loss), as in the MSKA paper."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def frame_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``[B, steps]`` true on each clip's valid frames."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class SelfDistillationLoss(nn.Module):
    """KL divergence of each head's gloss distribution to the detached mean of all heads'.

    For each head ``h`` and valid frame: ``KL(q || p_h) = sum_v q_v (log q_v - log p_h,v)``, where
    ``q = output.distillation_targets()`` (the detached mean of the heads' softmax probabilities).
    Averaged over each clip's valid frames, then over the clips; summed over heads. The teacher is
    detached, so gradients only pull each head towards the ensemble.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, output: Any, batch: Any) -> torch.Tensor:
        target = output.distillation_targets().float().detach()  # [B, T', V]
        log_target = target.clamp_min(self.eps).log()
        mask = frame_mask(output.lengths, target.shape[1]).float()  # [B, T']
        frames = mask.sum(1).clamp_min(1.0)
        total = target.new_zeros(())
        for logits in output.logits.values():
            log_probs = F.log_softmax(logits.float(), dim=-1)
            kl = (target * (log_target - log_probs)).sum(-1)  # [B, T']
            total = total + ((kl * mask).sum(1) / frames).mean()
        return total

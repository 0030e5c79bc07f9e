"""Self-distillation between recognition heads (the ``distillation`` loss), as in the MSKA paper.

Two reductions, chosen with ``[losses.distillation] reduction``:

- ``"batchmean"`` (the default, and the MSKA reference's): the KL of every valid frame is summed over
  the frames of each clip and divided by the number of clips: ``torch.nn.KLDivLoss(reduction=
  "batchmean")`` on ``[B, T', V]`` log-probabilities, as the reference computes it. The loss grows
  with the clips' length, like the CTC loss (a sum over a clip's frames), so that weight 1 keeps the
  paper's balance between the two. The reference also counts the padded frames of shorter clips (it
  runs its network over copies of their last frame); here padded frames count for nothing, so a batch
  of equal lengths gives the reference's number exactly.
- ``"frame-mean"``: the KL averaged over each clip's valid frames, then over the clips: a loss whose
  size does not depend on the clips' length (weight 1 is then about 1/T' of the paper's strength).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("batchmean", "frame-mean")


def frame_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``[B, steps]`` true on each clip's valid frames."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class SelfDistillationLoss(nn.Module):
    """KL divergence of each head's gloss distribution to the detached mean of all heads'.

    For each head ``h`` and valid frame: ``KL(q || p_h) = sum_v q_v (log q_v - log p_h,v)``, where
    ``q = output.distillation_targets()`` (the detached mean of the heads' softmax probabilities).
    ``reduction`` (``"batchmean"`` or ``"frame-mean"``, see the module's docstring) turns the frames'
    KL into one number per head; the heads' numbers are summed. The teacher is detached, so gradients
    only pull each head towards the ensemble.
    """

    def __init__(self, reduction: str = "batchmean", eps: float = 1e-8) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
        self.reduction = reduction
        self.eps = eps

    def forward(self, output: Any, batch: Any) -> torch.Tensor:
        target = output.distillation_targets().float().detach()  # [B, T', V]
        log_target = target.clamp_min(self.eps).log()
        mask = frame_mask(output.lengths, target.shape[1]).float()  # [B, T']
        if self.reduction == "batchmean":
            per_clip_scale = mask.new_ones(mask.shape[0])
        else:
            per_clip_scale = 1.0 / mask.sum(1).clamp_min(1.0)
        total = target.new_zeros(())
        for logits in output.logits.values():
            log_probs = F.log_softmax(logits.float(), dim=-1)
            kl = (target * (log_target - log_probs)).sum(-1)  # [B, T']
            total = total + ((kl * mask).sum(1) * per_clip_scale).mean()
        return total

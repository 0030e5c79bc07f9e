"""The DINO loss: cross-entropy between the student's views and the centred, sharpened teacher.

For every pair of a teacher view (the global crops) and a different student view (global and local
crops), the loss is ``-sum(p_teacher * log p_student)`` with

- ``p_student = softmax(student / student_temp)``;
- ``p_teacher = softmax((teacher - centre) / teacher_temp(epoch))``, with the teacher temperature
  rising linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over ``warmup_teacher_temp_epochs``
  (a fractional epoch is allowed) and constant after;
- the centre an exponential moving average (``center_momentum``) of the teacher's batch mean, updated
  after each loss evaluation (averaged across processes when torch.distributed is initialised).

The centre is a buffer, so it is in ``state_dict()`` and a resumed run continues with it.

:func:`entropy` of the teacher's targets tells a learning run from a collapsed one: it sits at
``log(out_dim)`` when the teacher's output is uniform after centring, and near 0 when one prototype
takes every image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    """DINO self-distillation loss over multi-crop outputs of a DINO head.

    ``forward(student_output, teacher_output, epoch)`` takes the student's outputs for every view
    stacked view by view (``[n_views * B, out_dim]``), the teacher's for the global views
    (``[n_global * B, out_dim]``) and the (fractional) epoch, and returns a scalar.
    """

    def __init__(self, out_dim: int, *, n_global: int = 2, student_temp: float = 0.1,
                 teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: float = 0.0, center_momentum: float = 0.9) -> None:
        super().__init__()
        if out_dim <= 0 or n_global <= 0:
            raise ValueError(f"DINOLoss: out_dim and n_global must be positive, got {out_dim}, {n_global}")
        self.out_dim = out_dim
        self.n_global = n_global
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_temperature(self, epoch: float) -> float:
        """The teacher temperature at ``epoch``: linear warm-up, then constant."""
        if self.warmup_teacher_temp_epochs > 0 and epoch < self.warmup_teacher_temp_epochs:
            progress = max(0.0, epoch) / self.warmup_teacher_temp_epochs
            return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * progress
        return self.teacher_temp

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor,
                epoch: float = 0.0) -> torch.Tensor:
        batch = teacher_output.shape[0] // self.n_global
        if batch == 0 or teacher_output.shape[0] % self.n_global or student_output.shape[0] % batch:
            raise ValueError(
                f"DINOLoss: expected teacher [n_global * B, D] with n_global={self.n_global} and student "
                f"[n_views * B, D]; got {tuple(teacher_output.shape)} and {tuple(student_output.shape)}"
            )
        student_logp = F.log_softmax(student_output.float() / self.student_temp, dim=-1).chunk(
            student_output.shape[0] // batch)
        teacher = teacher_output.detach().float()
        teacher_p = self.teacher_probabilities(teacher, epoch).chunk(self.n_global)
        total = student_output.new_zeros((), dtype=torch.float32)
        pairs = 0
        for t, p in enumerate(teacher_p):
            for s, logp in enumerate(student_logp):
                if s == t:  # a view is never its own target
                    continue
                total = total + torch.sum(-p * logp, dim=-1).mean()
                pairs += 1
        self.update_center(teacher)
        return total / max(pairs, 1)

    @torch.no_grad()
    def teacher_probabilities(self, teacher_output: torch.Tensor, epoch: float = 0.0) -> torch.Tensor:
        """The teacher's targets ``softmax((teacher - centre) / teacher_temp(epoch))``, ``[N, out_dim]``,
        with the current centre (``forward`` updates the centre after using them)."""
        centred = teacher_output.detach().float() - self.center
        return F.softmax(centred / self.teacher_temperature(epoch), dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """Move the centre towards the mean teacher output of this batch (all processes together)."""
        batch_center = teacher_output.sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_output.shape[0]), device=teacher_output.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_center)
            torch.distributed.all_reduce(count)
        batch_center = batch_center / count
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """The mean Shannon entropy (nats) of the rows of ``probabilities`` ``[N, K]``; at most ``log(K)``."""
    p = probabilities.float()
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1).mean()

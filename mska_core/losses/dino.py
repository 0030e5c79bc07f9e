"""The DINO loss: cross-entropy between the student's views and the centred, sharpened teacher.

For every pair of a teacher view (the global crops) and a different student view (global and local
crops), the loss is ``-sum(p_teacher * log p_student)`` with

- ``p_student = softmax(student / student_temp)``;
- the teacher's targets centred one of two ways (``centering``), both sharpened by a teacher
  temperature that rises linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over
  ``warmup_teacher_temp_epochs`` (a fractional epoch is allowed) and stays constant after:

  - ``"ema"`` (DINO): ``p_teacher = softmax((teacher - centre) / teacher_temp(epoch))``, the centre an
    exponential moving average (``center_momentum``) of the teacher's batch mean, updated after each
    loss evaluation;
  - ``"sinkhorn"`` (DINOv2): ``p_teacher`` is ``exp(teacher / teacher_temp(epoch))`` made doubly
    stochastic over the batch by ``sinkhorn_iterations`` Sinkhorn-Knopp normalisations, so that every
    prototype receives the same share of the batch's mass and every image a target of its own. The
    batch is every teacher view of every process.

  Sums over the batch are taken across processes when torch.distributed is initialised.

The centre is a buffer (kept, unused, under ``"sinkhorn"``), so it is in ``state_dict()`` and a resumed
run continues with it.

:func:`entropy` of the teacher's targets tells a learning run from a collapsed one: it sits at
``log(out_dim)`` when the teacher's output is uniform after centring, and near 0 when one prototype
takes every image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The ways :class:`DINOLoss` centres the teacher's outputs.
CENTERINGS = ("ema", "sinkhorn")


class DINOLoss(nn.Module):
    """DINO self-distillation loss over multi-crop outputs of a DINO head.

    ``forward(student_output, teacher_output, epoch)`` takes the student's outputs for every view
    stacked view by view (``[n_views * B, out_dim]``), the teacher's for the global views
    (``[n_global * B, out_dim]``) and the (fractional) epoch, and returns a scalar. A loop that
    schedules the teacher temperature itself (``mska pretrain``'s ``Schedules``) passes
    ``temperature=`` instead of the epoch.
    """

    def __init__(self, out_dim: int, *, n_global: int = 2, student_temp: float = 0.1,
                 teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: float = 0.0, center_momentum: float = 0.9,
                 centering: str = "ema", sinkhorn_iterations: int = 3) -> None:
        super().__init__()
        if out_dim <= 0 or n_global <= 0:
            raise ValueError(f"DINOLoss: out_dim and n_global must be positive, got {out_dim}, {n_global}")
        if centering not in CENTERINGS:
            raise ValueError(f"DINOLoss: centering must be one of {', '.join(CENTERINGS)}, got {centering!r}")
        if sinkhorn_iterations <= 0:
            raise ValueError(f"DINOLoss: sinkhorn_iterations must be positive, got {sinkhorn_iterations}")
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
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
                epoch: float = 0.0, *, temperature: float | None = None) -> torch.Tensor:
        batch = teacher_output.shape[0] // self.n_global
        if batch == 0 or teacher_output.shape[0] % self.n_global or student_output.shape[0] % batch:
            raise ValueError(
                f"DINOLoss: expected teacher [n_global * B, D] with n_global={self.n_global} and student "
                f"[n_views * B, D]; got {tuple(teacher_output.shape)} and {tuple(student_output.shape)}"
            )
        student_logp = F.log_softmax(student_output.float() / self.student_temp, dim=-1).chunk(
            student_output.shape[0] // batch)
        teacher = teacher_output.detach().float()
        teacher_p = self.teacher_probabilities(teacher, epoch, temperature=temperature).chunk(self.n_global)
        total = student_output.new_zeros((), dtype=torch.float32)
        pairs = 0
        for t, p in enumerate(teacher_p):
            for s, logp in enumerate(student_logp):
                if s == t:  # a view is never its own target
                    continue
                total = total + torch.sum(-p * logp, dim=-1).mean()
                pairs += 1
        if self.centering == "ema":
            self.update_center(teacher)
        return total / max(pairs, 1)

    @torch.no_grad()
    def teacher_probabilities(self, teacher_output: torch.Tensor, epoch: float = 0.0, *,
                              temperature: float | None = None) -> torch.Tensor:
        """The teacher's targets ``[N, out_dim]`` for its outputs ``[N, out_dim]``: with ``"ema"``
        centring ``softmax((teacher - centre) / teacher_temp(epoch))`` with the current centre
        (``forward`` updates the centre after using them), with ``"sinkhorn"`` the Sinkhorn-Knopp
        assignment of the batch. ``temperature``, when given, replaces ``teacher_temp(epoch)``."""
        logits = teacher_output.detach().float()
        if temperature is None:
            temperature = self.teacher_temperature(epoch)
        if self.centering == "sinkhorn":
            return sinkhorn_knopp(logits / temperature, self.sinkhorn_iterations)
        return F.softmax((logits - self.center) / temperature, dim=-1)

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


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Rows of ``exp(scores)`` ``[N, K]`` balanced over the batch by Sinkhorn-Knopp (as in SwAV and
    DINOv2): alternately every prototype (column) is given mass ``1 / K`` and every sample (row) mass
    ``1 / N``, ``iterations`` times, ending on the rows; each row is returned as a distribution.

    The batch is all processes' rows when torch.distributed is initialised.
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    # float64: at a teacher temperature of 0.02 the scores of one batch span 100 nats
    dtype = torch.float32 if scores.device.type == "mps" else torch.float64
    scores = scores.to(dtype)
    peak = scores.max().clone()
    if distributed:  # one shift for every process keeps the columns comparable
        torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
    q = torch.exp(scores - peak)  # [N, K]
    rows = torch.tensor(float(q.shape[0]), device=q.device)
    total = q.sum()
    if distributed:
        torch.distributed.all_reduce(rows)
        torch.distributed.all_reduce(total)
    q = q / total
    prototypes = q.shape[1]
    for _ in range(iterations):
        columns = q.sum(dim=0, keepdim=True)
        if distributed:
            torch.distributed.all_reduce(columns)
        q = q / columns.clamp_min(1e-30) / prototypes
        q = q / q.sum(dim=1, keepdim=True).clamp_min(1e-30) / rows
    return (q * rows).float()


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """The mean Shannon entropy (nats) of the rows of ``probabilities`` ``[N, K]``; at most ``log(K)``."""
    p = probabilities.float()
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1).mean()

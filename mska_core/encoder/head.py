"""The VisualHead of the reference: the recognition head each fused stream set gets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.encoder.layers import conv_over_time, dense, sinusoid


class VisualHead(nn.Module):
    """The reference's recognition head: linear map, masked batch norm, ReLU, sinusoidal positions,
    a convolutional feed-forward block with a residual, layer norm, and a linear gloss classifier.

    With ``mask_padding`` (softmax attention) padded frames are zeroed before the convolutions over
    time, so a clip's logits do not depend on what it is batched with; the reference (paper
    attention) lets them in.
    """

    def __init__(self, in_dim: int, vocab_size: int, *, hidden: int, ff: int, kernel: int, dropout: float,
                 mask_padding: bool = False) -> None:
        super().__init__()
        self.in_dim, self.hidden = in_dim, hidden
        self.mask_padding = mask_padding
        self.project = nn.Linear(in_dim, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.dropout = nn.Dropout(dropout)
        self.ff_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ff_expand = nn.Conv1d(hidden, ff, kernel, padding="same")
        self.ff_contract = nn.Conv1d(ff, hidden, kernel, padding="same")
        self.out_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.classifier = nn.Linear(hidden, vocab_size)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, T, D]`` and ``mask`` ``[B, T]`` to ``(features [B, T, H], logits [B, T, V])``."""
        h = self.masked_norm(dense(x, self.project.weight, self.project.bias), mask)
        h = F.relu(h) + sinusoid(h.shape[1], self.hidden).to(device=h.device, dtype=h.dtype)
        h = self.dropout(h)
        keep = mask.unsqueeze(-1).to(h.dtype) if self.mask_padding else None  # [B, T, 1]
        f = self.ff_norm(h) if keep is None else self.ff_norm(h) * keep
        f = self.dropout(F.relu(conv_over_time(f, self.ff_expand)))
        f = self.dropout(conv_over_time(f if keep is None else f * keep, self.ff_contract))
        h = self.out_norm(h + f)
        return h, dense(h, self.classifier.weight, self.classifier.bias)

    def masked_norm(self, h: Tensor, mask: Tensor) -> Tensor:
        """Batch norm whose training statistics come from the valid frames only (padding left as is).

        With fewer than two valid frames in the batch the running statistics normalise and are
        left unchanged. Written without data-dependent branches, so that it compiles as one graph.
        """
        norm = self.norm
        if not self.training:
            return self.eval_norm(h)
        # Copies of the statistics: they are updated in place below.
        running = F.batch_norm(h.reshape(-1, self.hidden), norm.running_mean.clone(), norm.running_var.clone(),
                               norm.weight, norm.bias, False, 0.0, norm.eps).view_as(h)
        weights = mask.to(h.dtype).unsqueeze(-1)  # [B, T, 1]
        count = weights.sum()
        enough = count >= 2
        mean = (h * weights).sum((0, 1)) / count.clamp(min=1)
        var = ((h - mean).square() * weights).sum((0, 1)) / count.clamp(min=1)
        normed = (h - mean) * torch.rsqrt(var + norm.eps) * norm.weight + norm.bias
        with torch.no_grad():  # the statistics keep their own dtype (float32 under bf16 autocast)
            stats = norm.running_mean.dtype
            factor = norm.momentum * enough.to(stats)
            norm.running_mean.lerp_(mean.detach().to(stats), factor)
            norm.running_var.lerp_((var.detach() * count / (count - 1).clamp(min=1)).to(stats), factor)
            norm.num_batches_tracked.add_(enough.long())
        return torch.where(mask.unsqueeze(-1) & enough, normed, torch.where(enough, h, running))

    def eval_norm(self, h: Tensor) -> Tensor:
        """The batch norm with its running statistics, on every frame."""
        norm = self.norm
        return F.batch_norm(h.reshape(-1, self.hidden), norm.running_mean, norm.running_var,
                            norm.weight, norm.bias, False, 0.0, norm.eps).view_as(h)

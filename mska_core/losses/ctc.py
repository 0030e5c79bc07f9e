"""CTC over the gloss logits of every recognition head (the ``ctc`` loss)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class CTCLoss(nn.Module):
    """The sum over heads of each head's CTC loss, averaged over the clips of the batch.

    ``forward(output, batch)`` reads ``output.logits`` (``{head: [B, T', V]}``) and
    ``output.lengths`` (``[B]``, after the encoder's downsampling) and the batch's ``gloss_targets`` /
    ``gloss_lengths``. ``blank`` is the index of the CTC blank (0 in mska-core vocabularies).
    ``zero_infinity`` zeroes the loss of a clip too short for its glosses instead of returning inf.
    ``heads`` restricts the loss to some heads (default: all).
    """

    def __init__(self, blank: int = 0, zero_infinity: bool = True, heads: list[str] | None = None) -> None:
        super().__init__()
        self.blank = blank
        self.zero_infinity = zero_infinity
        self.heads = tuple(heads) if heads else None

    def forward(self, output: Any, batch: Any) -> torch.Tensor:
        total = None
        for head, logits in output.logits.items():
            if self.heads is not None and head not in self.heads:
                continue
            log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # [T', B, V]
            per_clip = F.ctc_loss(
                log_probs, batch.gloss_targets, output.lengths, batch.gloss_lengths,
                blank=self.blank, reduction="none", zero_infinity=self.zero_infinity,
            )
            loss = per_clip.mean()
            total = loss if total is None else total + loss
        if total is None:
            raise ValueError("CTCLoss: the model output has none of the heads this loss is configured for")
        return total

"""Translation into text (the ``translation`` loss): label-smoothed cross-entropy of the text decoder.

The decoder itself (:class:`mska_core.text.builtin.TranslationDecoder`) is part of the model; its
size is set in this loss's table, so that one ``[losses.translation]`` table says everything about
translation::

    [losses.translation]
    weight = 1.0
    label_smoothing = 0.1
    layers = 2          # decoder layers
    heads = 4           # attention heads
    ff = 512            # feed-forward width
    dropout = 0.1
    context = 3         # width of the convolution that gives each memory entry its neighbours (1: none)
    head = "fuse"       # the recognition head whose gloss features the decoder reads
    memory = "glosses"  # one vector per gloss the head recognises (CTC compression), or "frames"
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

#: What the text decoder reads of its recognition head (see :mod:`mska_core.text.builtin`).
MEMORIES = ("glosses", "frames")


@attrs.frozen
class DecoderConfig:
    """The text decoder's size, the recognition head it reads (``None``: ``fuse`` or the first),
    what it reads of it (``memory``: ``"glosses"`` or ``"frames"``) and the width of the convolution
    that gives each memory entry its neighbours (``context``; 1: none), see
    :mod:`mska_core.text.builtin`."""

    layers: int = 2
    heads: int = 4
    ff: int = 512
    dropout: float = 0.1
    context: int = 3
    head: str | None = None
    memory: str = "glosses"


class TranslationLoss(nn.Module):
    """Label-smoothed cross-entropy of ``output.translation_logits`` ``[B, L, V_text]`` against the
    batch's ``text_target`` (``<pad>`` ignored); averaged over each clip's tokens, then over clips."""

    def __init__(self, label_smoothing: float = 0.1, pad: int = 0, layers: int = 2, heads: int = 4,
                 ff: int = 512, dropout: float = 0.1, context: int = 3, head: str | None = None,
                 memory: str = "glosses") -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if memory not in MEMORIES:
            raise ValueError(f"memory must be one of {', '.join(map(repr, MEMORIES))}, got {memory!r}")
        if not isinstance(context, int) or context < 1 or context % 2 == 0:
            raise ValueError(f"context must be an odd kernel width, 1 or more (1: no context), got {context!r}")
        self.label_smoothing = label_smoothing
        self.pad = pad
        self.decoder_config = DecoderConfig(layers=layers, heads=heads, ff=ff, dropout=dropout, context=context,
                                            head=head, memory=memory)

    def forward(self, output: Any, batch: Any) -> torch.Tensor:
        logits = output.translation_logits
        if logits is None:
            raise ValueError("TranslationLoss: the model has no text decoder (is [losses.translation] set?)")
        target = batch.text_target
        per_token = F.cross_entropy(
            logits.float().flatten(0, 1), target.flatten(), ignore_index=self.pad,
            label_smoothing=self.label_smoothing, reduction="none",
        ).view_as(target)
        tokens = (target != self.pad).float()
        return ((per_token * tokens).sum(1) / tokens.sum(1).clamp_min(1.0)).mean()

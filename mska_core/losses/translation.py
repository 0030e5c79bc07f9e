"""Translation into text (the ``translation`` loss): label-smoothed cross-entropy of the text decoder.

The decoder itself is part of the model, built through the ``mska_text_decoders`` hook
(:mod:`mska_core.text`); it is named and sized in this loss's table, so that one
``[losses.translation]`` table says everything about translation::

    [losses.translation]
    weight = 1.0
    label_smoothing = 0.1
    decoder = "mska"    # the built-in decoder, or "hf::PATH" (a local HuggingFace seq2seq folder)
    head = "fuse"       # the recognition head whose gloss features the decoder reads
    memory = "glosses"  # one vector per gloss the head recognises (CTC compression), or "frames";
                        # default: "glosses" when a CTC loss trains, else "frames"
    freeze = []         # parts of the decoder to keep fixed (names from its parameter_groups())
    # every other key is the decoder's own, e.g. the built-in decoder's size:
    layers = 2
    heads = 4
    ff = 512
    dropout = 0.1
    context = 3         # width of the convolution that gives each memory entry its neighbours (1: none)
    vocab_size = 1000   # subword vocabulary fitted on the training split (at most)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mska_core.text import IGNORE_INDEX

#: What the text decoder reads of its recognition head (see :mod:`mska_core.text.builtin`).
MEMORIES = ("glosses", "frames")


class TranslationLoss(nn.Module):
    """Label-smoothed cross-entropy of ``output.translation_logits`` ``[B, L, V_text]`` against the
    batch's ``text_target`` (positions at ``IGNORE_INDEX`` ignored); averaged over each clip's
    tokens, then over clips.

    It also carries what the model needs to build the decoder: ``decoder`` (its name), ``head``,
    ``memory`` (``None``: automatic), ``freeze`` and ``decoder_options`` (every other key of the table).
    """

    def __init__(self, label_smoothing: float = 0.1, decoder: str = "mska", head: str | None = None,
                 memory: str | None = None, freeze: Sequence[str] = (), **decoder_options: Any) -> None:
        super().__init__()
        if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if memory is not None and memory not in MEMORIES:
            raise ValueError(f"memory must be one of {', '.join(map(repr, MEMORIES))}, got {memory!r}")
        if not isinstance(decoder, str) or not decoder:
            raise ValueError(f"decoder must be a name such as \"mska\" or \"hf::PATH\", got {decoder!r}")
        if isinstance(freeze, str) or not all(isinstance(part, str) for part in freeze):
            raise ValueError(f"freeze must be a list of decoder parts, e.g. [\"lm\"], got {freeze!r}")
        self.label_smoothing = float(label_smoothing)
        self.decoder_name = decoder
        self.head = head
        self.memory = memory
        self.freeze = tuple(freeze)
        self.decoder_options = dict(decoder_options)

    def forward(self, output: Any, batch: Any) -> torch.Tensor:
        logits = output.translation_logits
        if logits is None:
            raise ValueError("TranslationLoss: the model has no text decoder (is [losses.translation] set?)")
        target = batch.text_target
        per_token = F.cross_entropy(
            logits.float().flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX,
            label_smoothing=self.label_smoothing, reduction="none",
        ).view_as(target)
        tokens = (target != IGNORE_INDEX).float()
        return ((per_token * tokens).sum(1) / tokens.sum(1).clamp_min(1.0)).mean()

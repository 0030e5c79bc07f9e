"""The text decoder: a transformer decoder over the gloss features of one recognition head.

It reads the VisualHead features (``EncoderOutput.gloss_features[head]``, ``[B, T', H]``) as memory
and predicts the translation word by word. Training uses teacher forcing (:meth:`forward`);
evaluation and ``mska predict`` use :meth:`MskaDecoder.generate` (beam search, greedy at
``beam_size = 1``, then detokenised).

:class:`TranslationDecoder` is the network over token ids; :class:`MskaDecoder` adds its tokenizer
(:mod:`mska_core.text.tokenizers`: byte-level BPE fitted on the training split, or the word
vocabulary of older checkpoints) and follows the :class:`mska_core.text.TextDecoder` contract, so
that the core trains, decodes, stores and rebuilds it as it does any decoder of the
``mska_text_decoders`` hook. :func:`build` is the ``mska`` record's factory; its options are
:class:`BuiltinOptions`.

The memory is either every frame (``memory = "frames"``) or, by default, the frames compressed by
the head's own CTC decision (``memory = "glosses"``, :func:`ctc_compress`): the features of each run
of frames the head labels with one gloss are averaged, blanks dropped, so that the decoder reads one
vector per recognised gloss, in order (CTC compression, as in speech translation). Memory positions
are sinusoidal over the memory's index; target positions are learned, started from the same
sinusoids, and token embeddings are scaled so that both are of unit size.

Before the decoder reads it, each memory vector gets its neighbours' features through a residual
convolution over the memory (``context``, the kernel width; 1 turns it off): the decoder can then
find the next gloss as "the entry that follows the one I have just translated" in one look-up,
instead of counting its way along the memory. Without it the decoder learns the training
sentences but skips, repeats and reorders glosses in new combinations of them (docs/training.md,
"Translation on the synthetic corpus").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import nn

from mska_core.errors import ConfigError


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """``[length, dim]`` sine/cosine positions (Vaswani et al.), sine on even and cosine on odd channels."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def ctc_compress(features: torch.Tensor, logits: torch.Tensor, lengths: torch.Tensor,
                 blank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Average ``features`` ``[B, T, H]`` over each run of frames whose most likely class (``logits``
    ``[B, T, V]``) is one gloss, and drop blank frames: ``(memory [B, K, H], lengths [B])`` with one
    entry per recognised gloss, in order. A clip with no recognised gloss keeps the mean of all its
    frames as its only entry. Differentiable in ``features``; the segmentation itself is not.
    """
    steps = features.shape[1]
    valid = torch.arange(steps, device=features.device)[None, :] < lengths[:, None]  # [B, T]
    path = logits.detach().argmax(-1)  # [B, T]
    labelled = valid & (path != blank)
    previous = torch.nn.functional.pad(path, (1, 0), value=-1)[:, :-1]
    previous_labelled = torch.nn.functional.pad(labelled, (1, 0), value=False)[:, :-1]
    starts = labelled & ~(previous_labelled & (previous == path))
    segment = starts.long().cumsum(1) - 1  # [B, T]: the run each labelled frame belongs to
    counts = starts.sum(1)  # [B]
    empty = counts == 0
    segment = torch.where(empty[:, None], torch.zeros_like(segment), segment)
    member = torch.where(empty[:, None], valid, labelled)  # [B, T]
    counts = torch.where(empty, torch.ones_like(counts), counts)
    slots = int(counts.max()) if counts.numel() else 1
    assign = (segment[:, None, :] == torch.arange(slots, device=features.device)[None, :, None]) & member[:, None, :]
    weights = assign.to(features.dtype)  # [B, K, T]
    memory = weights @ features / weights.sum(-1, keepdim=True).clamp_min(1.0)
    return memory, counts


class TranslationDecoder(nn.Module):
    """Token embedding + learned positions, ``layers`` pre-norm transformer decoder layers over the
    memory (given its neighbours by a residual convolution of width ``context``, then sinusoidal
    positions), and a projection to the text vocabulary."""

    def __init__(self, vocab_size: int, dim: int, *, layers: int = 2, heads: int = 4, ff: int = 512,
                 dropout: float = 0.1, context: int = 3, max_length: int = 256, pad: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"the decoder width {dim} is not a multiple of its {heads} heads")
        if context < 1 or context % 2 == 0:
            raise ValueError(f"the memory context must be an odd kernel width (1 turns it off), got {context}")
        self.dim = dim
        self.pad = pad
        self.max_length = max_length
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad)
        nn.init.normal_(self.embed.weight, std=dim**-0.5)  # times sqrt(dim) in forward: unit size
        with torch.no_grad():
            self.embed.weight[pad].zero_()
        self.positions = nn.Parameter(sinusoid_table(max_length, dim))
        # [B, H, K] -> [B, H, K]: each memory vector plus what its neighbours hold
        self.context = nn.Conv1d(dim, dim, context, padding=context // 2) if context > 1 else None
        layer = nn.TransformerDecoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim))
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L, V]`` of the next token after each of ``tokens`` ``[B, L]``, reading
        ``memory`` ``[B, K, H]`` of ``memory_lengths`` ``[B]`` entries."""
        return self.decode(self.read(memory, memory_lengths), memory_lengths, tokens)

    def read(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> torch.Tensor:
        """The memory as the layers attend to it: neighbours mixed in (padding kept out), positions added."""
        if self.context is not None:
            valid = (torch.arange(memory.shape[1], device=memory.device)[None, :] < memory_lengths[:, None])
            valid = valid.unsqueeze(-1).to(memory.dtype)  # [B, K, 1]
            memory = memory + self.context((memory * valid).transpose(1, 2)).transpose(1, 2) * valid
        return memory + sinusoid_table(memory.shape[1], self.dim).to(memory.device, memory.dtype)

    def decode(self, memory: torch.Tensor, memory_lengths: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L, V]`` after each of ``tokens`` over an already :meth:`read` memory."""
        steps = tokens.shape[1]
        if steps > self.max_length:
            raise ValueError(f"a translation of {steps} tokens is longer than the decoder's {self.max_length}")
        x = self.embed(tokens) * math.sqrt(self.dim) + self.positions[:steps]
        causal = torch.triu(torch.ones(steps, steps, dtype=torch.bool, device=tokens.device), diagonal=1)
        memory_pad = torch.arange(memory.shape[1], device=memory.device)[None, :] >= memory_lengths[:, None]
        x = self.layers(x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == self.pad,
                        memory_key_padding_mask=memory_pad)
        return self.out(x)

    @torch.no_grad()
    def beam_search(self, memory: torch.Tensor, memory_lengths: torch.Tensor, *, bos: int, eos: int,
                    max_length: int = 40, beam_size: int = 1, length_penalty: float = 1.0) -> list[list[int]]:
        """Token ids (without ``<bos>``/``<eos>``) of each clip's translation.

        Beam search over the whole batch at once (greedy at ``beam_size = 1``): each clip keeps its
        ``beam_size`` best open or finished hypotheses; a finished one only extends with ``<pad>`` at
        no cost. The winner maximises the log probability divided by ``length ** length_penalty``.
        """
        batch, k = memory.shape[0], beam_size
        max_length = min(max_length, self.max_length - 1)
        memory = self.read(memory, memory_lengths).repeat_interleave(k, 0)
        lengths = memory_lengths.repeat_interleave(k, 0)
        tokens = torch.full((batch * k, 1), bos, dtype=torch.long, device=memory.device)
        scores = torch.zeros(batch, k, device=memory.device)
        scores[:, 1:] = float("-inf")  # every beam starts as the same <bos>: keep one
        finished = torch.zeros(batch * k, dtype=torch.bool, device=memory.device)
        produced = torch.zeros(batch * k, device=memory.device)
        rows = torch.arange(batch, device=memory.device)[:, None] * k
        for _ in range(max_length):
            log_probs = torch.log_softmax(self.decode(memory, lengths, tokens)[:, -1].float(), dim=-1)
            log_probs[:, [self.pad, bos]] = float("-inf")
            log_probs[finished] = float("-inf")
            log_probs[finished, self.pad] = 0.0
            vocab = log_probs.shape[1]
            candidates = (scores.reshape(-1, 1) + log_probs).view(batch, k * vocab)
            scores, index = candidates.topk(k, dim=1)
            source = (rows + torch.div(index, vocab, rounding_mode="floor")).flatten()
            token = (index % vocab).flatten()
            tokens = torch.cat([tokens[source], token[:, None]], dim=1)
            was_finished = finished[source]
            produced = produced[source] + (~was_finished).float()
            finished = was_finished | (token == eos)
            if bool(finished.all()):
                break
        normalised = scores / produced.view(batch, k).clamp_min(1.0) ** length_penalty
        best = tokens.view(batch, k, -1)[torch.arange(batch), normalised.argmax(1), 1:]
        out = []
        for row in best.tolist():
            ids = []
            for token in row:
                if token in (eos, self.pad):
                    break
                ids.append(token)
            out.append(ids)
        return out


def _odd_width(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ConfigError(f"losses.translation.{attribute.name}: must be an odd kernel width, 1 or more "
                          f"(1: no context), got {value!r}")


def _at_least_one(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"losses.translation.{attribute.name}: must be a positive integer, got {value!r}")


@attrs.frozen
class BuiltinOptions:
    """The built-in decoder's keys of ``[losses.translation]``: its size, and the size of the subword
    vocabulary fitted on the training split (``vocab_size``, at most; a small corpus may give fewer)."""

    layers: int = attrs.field(default=2, validator=_at_least_one)
    heads: int = attrs.field(default=4, validator=_at_least_one)
    ff: int = attrs.field(default=512, validator=_at_least_one)
    dropout: float = 0.1
    context: int = attrs.field(default=3, validator=_odd_width)
    vocab_size: int = attrs.field(default=1000, validator=_at_least_one)
    max_length: int = attrs.field(default=256, validator=_at_least_one)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BuiltinOptions:
        known = [field.name for field in attrs.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"losses.translation: {', '.join(unknown)} is not an option of the built-in decoder "
                              f"'mska'; its options: {', '.join(known)} (besides the loss's own)")
        if not 0.0 <= float(options.get("dropout", 0.0)) < 1.0:
            raise ConfigError(f"losses.translation.dropout: must be in [0, 1), got {options['dropout']!r}")
        return cls(**options)


class MskaDecoder(TranslationDecoder):
    """The built-in decoder with its tokenizer, following :class:`mska_core.text.TextDecoder`.

    Its weights keep :class:`TranslationDecoder`'s names (``decoder.embed.weight`` ...), so the models
    of earlier versions load into it unchanged. ``parameter_groups()`` is one part, ``"decoder"``.
    """

    def __init__(self, tokenizer: Any, dim: int, options: BuiltinOptions) -> None:
        super().__init__(len(tokenizer), dim, layers=options.layers, heads=options.heads, ff=options.ff,
                         dropout=options.dropout, context=options.context, max_length=options.max_length,
                         pad=tokenizer.pad_id)
        self.tokenizer = tokenizer
        self.options = options

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, memory_lengths: torch.Tensor, *, max_length: int, beam_size: int = 1,
                 length_penalty: float = 1.0) -> list[str]:
        """Detokenised translations of every clip (:meth:`TranslationDecoder.beam_search`)."""
        ids = self.beam_search(memory, memory_lengths, bos=self.tokenizer.bos_id, eos=self.tokenizer.eos_id,
                               max_length=max_length, beam_size=beam_size, length_penalty=length_penalty)
        return [self.tokenizer.decode(row) for row in ids]

    def artifacts(self) -> dict[str, Any]:
        """``{"tokenizer": ..., "options": ...}``: the tokenizer as plain data and the decoder's size."""
        return {"tokenizer": self.tokenizer.to_dict(), "options": attrs.asdict(self.options)}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"decoder": list(self.parameters())}


def build(request: Any) -> MskaDecoder:
    """The ``mska`` record's factory: a decoder over ``request.memory_dim`` features with a subword
    tokenizer fitted on ``request.texts``, or rebuilt from ``request.stored`` (its tokenizer and size)."""
    from mska_core.text.tokenizers import SubwordTokenizer, tokenizer_from_dict

    if request.payload:
        raise ConfigError(f"losses.translation.decoder: the built-in decoder takes no '::' part, got "
                          f"'mska::{request.payload}'; write decoder = \"mska\"")
    stored = request.stored
    options = BuiltinOptions.from_options(
        stored["options"] if stored is not None and isinstance(stored.get("options"), Mapping) else request.options
    )
    if stored is not None:
        tokenizer = tokenizer_from_dict(stored.get("tokenizer"), max_tokens=options.max_length)
    else:
        if not request.texts:
            raise ConfigError("losses.translation: the training split has no translations to fit the built-in "
                              "decoder's tokenizer on")
        tokenizer = SubwordTokenizer.train(request.texts, options.vocab_size, max_tokens=options.max_length)
    if request.memory_dim % options.heads:
        raise ConfigError(f"losses.translation.heads: the decoder's width {request.memory_dim} (model.head_hidden) "
                          f"is not a multiple of its {options.heads} heads")
    return MskaDecoder(tokenizer, request.memory_dim, options)

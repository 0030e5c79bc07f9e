"""The text decoder: a transformer decoder over the gloss features of one recognition head.

It reads the VisualHead features (``EncoderOutput.gloss_features[head]``, ``[B, T', H]``) as memory
and predicts the translation word by word. Training uses teacher forcing (:meth:`forward`);
evaluation and ``mska predict`` use :meth:`generate` (beam search, greedy at ``beam_size = 1``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TranslationDecoder(nn.Module):
    """Token embedding + learned positions, ``layers`` pre-norm transformer decoder layers, and a
    projection to the text vocabulary."""

    def __init__(self, vocab_size: int, dim: int, *, layers: int = 2, heads: int = 4, ff: int = 512,
                 dropout: float = 0.1, max_length: int = 256, pad: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"the decoder width {dim} is not a multiple of its {heads} heads")
        self.dim = dim
        self.pad = pad
        self.max_length = max_length
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad)
        self.positions = nn.Parameter(torch.zeros(max_length, dim))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim))
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L, V]`` of the next token after each of ``tokens`` ``[B, L]``."""
        steps = tokens.shape[1]
        if steps > self.max_length:
            raise ValueError(f"a translation of {steps} tokens is longer than the decoder's {self.max_length}")
        x = self.embed(tokens) * math.sqrt(self.dim) + self.positions[:steps]
        causal = torch.triu(torch.full((steps, steps), float("-inf"), device=tokens.device), diagonal=1)
        memory_pad = torch.arange(memory.shape[1], device=memory.device)[None, :] >= memory_lengths[:, None]
        x = self.layers(x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == self.pad,
                        memory_key_padding_mask=memory_pad)
        return self.out(x)

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, memory_lengths: torch.Tensor, *, bos: int, eos: int,
                 max_length: int = 40, beam_size: int = 1, length_penalty: float = 1.0) -> list[list[int]]:
        """Token ids (without ``<bos>``/``<eos>``) of each clip's translation, by beam search."""
        max_length = min(max_length, self.max_length - 1)
        return [
            self._beam(memory[i : i + 1], memory_lengths[i : i + 1], bos, eos, max_length, beam_size,
                       length_penalty)
            for i in range(memory.shape[0])
        ]

    def _beam(self, memory: torch.Tensor, lengths: torch.Tensor, bos: int, eos: int, max_length: int,
              beam_size: int, length_penalty: float) -> list[int]:
        beams = torch.full((1, 1), bos, dtype=torch.long, device=memory.device)
        scores = torch.zeros(1, device=memory.device)
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_length):
            count = beams.shape[0]
            logits = self(memory.expand(count, -1, -1), lengths.expand(count), beams)[:, -1]
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            log_probs[:, self.pad] = float("-inf")
            log_probs[:, bos] = float("-inf")
            total = (scores[:, None] + log_probs).flatten()
            top = total.topk(min(beam_size * 2, total.numel()))
            vocab = log_probs.shape[1]
            next_beams, next_scores = [], []
            for score, flat in zip(top.values.tolist(), top.indices.tolist()):
                beam, token = divmod(flat, vocab)
                if token == eos:
                    words = beams[beam, 1:].tolist()
                    finished.append((score / max(1, len(words) + 1) ** length_penalty, words))
                else:
                    next_beams.append(torch.cat([beams[beam], beams.new_tensor([token])]))
                    next_scores.append(score)
                if len(next_beams) == beam_size:
                    break
            if len(finished) >= beam_size or not next_beams:
                break
            beams = torch.stack(next_beams)
            scores = torch.tensor(next_scores, device=memory.device)
        if not finished:
            finished = [(float(s) / max(1, beams.shape[1]) ** length_penalty, b[1:].tolist())
                        for s, b in zip(scores, beams)]
        return max(finished, key=lambda f: f[0])[1]

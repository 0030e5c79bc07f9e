"""CTC decoding in torch: greedy and prefix beam search, per head and for the ensemble of heads."""

from __future__ import annotations

import math
from collections import defaultdict

import torch


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path: the most likely class per frame, repeats merged, blanks removed.

    ``log_probs`` ``[B, T, V]`` (any monotone scores work), ``lengths`` ``[B]``.
    """
    best = log_probs.argmax(-1).cpu()
    out = []
    for row, length in zip(best, lengths.tolist()):
        path = row[:length].tolist()
        tokens, previous = [], None
        for token in path:
            if token != previous and token != blank:
                tokens.append(token)
            previous = token
        out.append(tokens)
    return out


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def beam_decode(log_probs: torch.Tensor, lengths: torch.Tensor, beam_size: int = 5, blank: int = 0,
                prune: int | None = None) -> list[list[int]]:
    """CTC prefix beam search over ``log_probs`` ``[B, T, V]`` (log-softmax outputs).

    Each prefix keeps the log probability of ending in a blank and in its last token; the
    ``beam_size`` most likely prefixes survive each frame. Only the ``prune`` (default
    ``beam_size``) most likely classes of a frame, plus the blank, are extended.
    """
    if beam_size <= 1:
        return greedy_decode(log_probs, lengths, blank)
    prune = prune or beam_size
    data = log_probs.detach().float().cpu()
    out = []
    for row, length in zip(data, lengths.tolist()):
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # (blank, non-blank)
        for frame in row[:length]:
            candidates = set(frame.topk(min(prune, frame.numel())).indices.tolist())
            candidates.discard(blank)
            frame_list = frame.tolist()
            nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
            for prefix, (p_b, p_nb) in beams.items():
                total = _logaddexp(p_b, p_nb)
                entry = nxt[prefix]
                entry[0] = _logaddexp(entry[0], total + frame_list[blank])  # stay, via blank
                if prefix:  # repeat the last token without a blank: same prefix
                    entry[1] = _logaddexp(entry[1], p_nb + frame_list[prefix[-1]])
                for token in candidates:
                    extended = nxt[prefix + (token,)]
                    p = frame_list[token]
                    if prefix and token == prefix[-1]:  # a repeat needs a blank in between
                        extended[1] = _logaddexp(extended[1], p_b + p)
                    else:
                        extended[1] = _logaddexp(extended[1], total + p)
            ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:beam_size]
            beams = {prefix: (v[0], v[1]) for prefix, v in ranked}
        best = max(beams.items(), key=lambda kv: _logaddexp(*kv[1]))[0]
        out.append(list(best))
    return out


def ensemble_log_probs(logits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log of the mean of the heads' softmax probabilities ``[B, T, V]``."""
    probs = torch.stack([torch.softmax(l.float(), dim=-1) for l in logits.values()]).mean(0)
    return probs.clamp_min(1e-12).log()


def decode_heads(logits: dict[str, torch.Tensor], lengths: torch.Tensor, *, beam_size: int = 1,
                 blank: int = 0) -> dict[str, list[list[int]]]:
    """Gloss ids per clip for every head and for ``"ensemble"`` (mean of the heads' probabilities)."""
    out = {}
    for head, head_logits in logits.items():
        out[head] = beam_decode(torch.log_softmax(head_logits.float(), -1), lengths, beam_size, blank)
    if len(logits) > 1:
        out["ensemble"] = beam_decode(ensemble_log_probs(logits), lengths, beam_size, blank)
    return out

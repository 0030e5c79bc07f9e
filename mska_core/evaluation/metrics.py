"""Recognition and translation metrics.

- WER: word error rate over a corpus, ``(substitutions + deletions + insertions) / reference words``,
  as a percentage, from a Levenshtein alignment.
- BLEU-1..4: corpus BLEU from sacrebleu with the maximum n-gram order set to n (cumulative, uniform
  weights, brevity penalty), tokeniser ``13a``; the sacrebleu signature is recorded with the scores.
- ROUGE-L: sacrebleu has none, so it is computed here as in the SLT literature: the sentence-level
  F-measure of the longest common subsequence with beta = 1.2, averaged over sentences, as a
  percentage, over the same ``13a`` tokens BLEU counts (punctuation split off, case kept).

Both score detokenised text against the raw reference translations, as written in the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs


@attrs.frozen
class ErrorCounts:
    """Edit operations between hypotheses and references."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0

    @property
    def wer(self) -> float:
        errors = self.substitutions + self.deletions + self.insertions
        return 100.0 * errors / self.reference_words if self.reference_words else 0.0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(*(a + b for a, b in zip(attrs.astuple(self), attrs.astuple(other))))

    def as_dict(self) -> dict[str, Any]:
        return {"wer": self.wer, "sub": self.substitutions, "del": self.deletions, "ins": self.insertions,
                "ref_words": self.reference_words}


def align(reference: Sequence[Any], hypothesis: Sequence[Any]) -> ErrorCounts:
    """The fewest edits turning ``reference`` into ``hypothesis``, split by kind."""
    n, m = len(reference), len(hypothesis)
    # cost[i][j] = (edits, substitutions, deletions, insertions) for reference[:i] vs hypothesis[:j]
    cost = [[(j, 0, 0, j) for j in range(m + 1)]]
    for i in range(1, n + 1):
        row = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            same = reference[i - 1] == hypothesis[j - 1]
            diag = cost[i - 1][j - 1]
            options = [
                (diag[0] + (not same), diag[1] + (not same), diag[2], diag[3]),
                (cost[i - 1][j][0] + 1, cost[i - 1][j][1], cost[i - 1][j][2] + 1, cost[i - 1][j][3]),
                (row[j - 1][0] + 1, row[j - 1][1], row[j - 1][2], row[j - 1][3] + 1),
            ]
            row.append(min(options))
        cost.append(row)
    _, sub, dele, ins = cost[n][m]
    return ErrorCounts(sub, dele, ins, n)


def word_error_rate(references: Sequence[Sequence[Any]], hypotheses: Sequence[Sequence[Any]]) -> ErrorCounts:
    """Corpus error counts of token sequences (``.wer`` is the percentage)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts()
    for ref, hyp in zip(references, hypotheses):
        total = total + align(list(ref), list(hyp))
    return total


def bleu_scores(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, Any]:
    """``{"bleu1".."bleu4": float, "bleu_signature": str}`` through sacrebleu."""
    from sacrebleu.metrics import BLEU

    out: dict[str, Any] = {}
    signature = ""
    for n in range(1, 5):
        metric = BLEU(max_ngram_order=n)
        out[f"bleu{n}"] = float(metric.corpus_score(list(hypotheses), [list(references)]).score)
        signature = str(metric.get_signature())
    out["bleu_signature"] = signature
    return out


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(references: Sequence[str], hypotheses: Sequence[str], beta: float = 1.2) -> float:
    """Mean sentence-level ROUGE-L F-measure (percentage) over sacrebleu's ``13a`` tokens."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    if not references:
        return 0.0
    tokenize = Tokenizer13a()
    total = 0.0
    for ref, hyp in zip(references, hypotheses):
        r, h = tokenize(ref).split(), tokenize(hyp).split()
        lcs = _lcs(r, h)
        if lcs == 0:
            continue
        precision, recall = lcs / len(h), lcs / len(r)
        total += (1 + beta**2) * precision * recall / (recall + beta**2 * precision)
    return 100.0 * total / len(references)


def translation_scores(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, Any]:
    """BLEU-1..4 (with the sacrebleu signature) and ROUGE-L."""
    return {**bleu_scores(references, hypotheses), "rouge_l": rouge_l(references, hypotheses)}


def most_frequent_baseline(train_texts: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """The scores of answering every clip with the training split's most frequent translation."""
    from collections import Counter

    sentence = Counter(train_texts).most_common(1)[0][0]
    return translation_scores(references, [sentence] * len(references))

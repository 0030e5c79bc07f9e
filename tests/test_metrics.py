"""WER, BLEU, ROUGE-L and CTC decoding against hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from mska_core.evaluation.ctc import beam_decode, decode_heads, ensemble_log_probs, greedy_decode
from mska_core.evaluation.metrics import (
    align,
    bleu_scores,
    most_frequent_baseline,
    rouge_l,
    translation_scores,
    word_error_rate,
)


def test_wer_counts_each_kind_of_error():
    # reference: A B C D; hypothesis: A X C -> B substituted by X, D deleted: 2 errors / 4 words.
    counts = word_error_rate([["A", "B", "C", "D"]], [["A", "X", "C"]])
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 1, 0)
    assert counts.wer == 50.0


def test_wer_sums_errors_over_the_corpus_before_dividing():
    # 1 insertion over 2 words, 0 errors over 3 words: 1 / 5 = 20 %, not the mean of 50 % and 0 %.
    counts = word_error_rate([["A", "B"], ["C", "D", "E"]], [["A", "Z", "B"], ["C", "D", "E"]])
    assert counts.insertions == 1 and counts.wer == 20.0


def test_wer_of_an_empty_hypothesis_is_all_deletions():
    assert align(["A", "B", "C"], []).deletions == 3
    assert word_error_rate([["A", "B", "C"]], [[]]).wer == 100.0


def test_bleu_hand_computed():
    # hypothesis (7 words): the cat the cat on the mat; reference: the cat is on the mat
    # unigrams: the 2 (of 3, clipped to 2) + cat 1 + on 1 + mat 1 = 5/7
    # bigrams: "the cat" 1 (clipped) + "on the" + "the mat" = 3/6; hypothesis longer: no brevity penalty
    scores = bleu_scores(["the cat is on the mat"], ["the cat the cat on the mat"])
    assert scores["bleu1"] == pytest.approx(100 * 5 / 7)
    assert scores["bleu2"] == pytest.approx(100 * math.sqrt(5 / 7 * 3 / 6))
    assert "version:" in scores["bleu_signature"] and "tok:13a" in scores["bleu_signature"]


def test_bleu_brevity_penalty():
    # hypothesis "the cat" (2 words) against a 4-word reference: precisions 1, penalty exp(1 - 4/2)
    scores = bleu_scores(["the cat sat down"], ["the cat"])
    assert scores["bleu1"] == pytest.approx(100 * math.exp(1 - 4 / 2))


def test_rouge_l_hand_computed():
    # LCS of "a b c d" and "a c d e" is "a c d": P = R = 3/4, so F = 3/4 whatever beta
    assert rouge_l(["a b c d"], ["a c d e"]) == pytest.approx(75.0)
    # LCS 2, P = 2/2, R = 2/4, beta 1.2: F = (1 + 1.44) * 1 * 0.5 / (0.5 + 1.44 * 1)
    assert rouge_l(["a b c d"], ["a b"]) == pytest.approx(100 * 2.44 * 0.5 / 1.94)
    assert rouge_l(["a b"], ["c d"]) == 0.0


def test_most_frequent_sentence_baseline():
    scores = most_frequent_baseline(["x y", "a b c", "a b c"], ["a b c", "q r s"])
    assert scores["bleu1"] == pytest.approx(50.0)
    assert set(translation_scores(["a"], ["a"])) >= {"bleu1", "bleu4", "rouge_l", "bleu_signature"}


def _one_hot_log_probs(path: list[int], vocab: int = 5) -> torch.Tensor:
    probs = torch.full((len(path), vocab), 0.01)
    probs[torch.arange(len(path)), torch.tensor(path)] = 1.0
    return (probs / probs.sum(-1, keepdim=True)).log()[None]


def test_greedy_merges_repeats_and_drops_blanks():
    log_probs = _one_hot_log_probs([1, 1, 0, 1, 2, 2, 0, 0, 3])
    assert greedy_decode(log_probs, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert greedy_decode(log_probs, torch.tensor([4])) == [[1, 1]]  # only the valid frames count


def test_beam_search_finds_the_most_likely_labelling_not_the_best_path():
    # Two frames over {blank, A}: p(blank) = 0.6 per frame, p(A) = 0.4.
    # Best path: blank blank (0.36) -> "". Labelling "A": A-A, A-blank, blank-A = 0.16 + 0.24 + 0.24 = 0.64.
    log_probs = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]]).log()
    assert greedy_decode(log_probs, torch.tensor([2])) == [[]]
    assert beam_decode(log_probs, torch.tensor([2]), beam_size=3) == [[1]]


def test_beam_search_agrees_with_greedy_on_confident_frames():
    log_probs = _one_hot_log_probs([0, 2, 2, 0, 2, 4, 0, 1])
    assert beam_decode(log_probs, torch.tensor([8]), beam_size=4) == greedy_decode(log_probs, torch.tensor([8]))


def test_heads_and_their_ensemble_are_decoded():
    a = _one_hot_log_probs([1, 0, 2])
    b = _one_hot_log_probs([1, 0, 3])
    decoded = decode_heads({"left": a, "right": b}, torch.tensor([3]))
    assert decoded["left"] == [[1, 2]] and decoded["right"] == [[1, 3]]
    assert torch.allclose(ensemble_log_probs({"x": a}).exp(), a.exp(), atol=1e-6)


def test_the_ensemble_decodes_the_mean_of_the_heads_probabilities():
    # Per frame, head "sure" puts 0.9 on one gloss and head "unsure" 0.4 on another: the mean of the
    # probabilities follows "sure" on frame 0 and "unsure" on frame 2 where it is the surer one. A mean
    # of log-probabilities, a single head or a product would decode something else.
    sure = torch.tensor([[[0.05, 0.90, 0.03, 0.02], [0.90, 0.05, 0.03, 0.02], [0.30, 0.05, 0.35, 0.30]]])
    unsure = torch.tensor([[[0.20, 0.38, 0.02, 0.40], [0.90, 0.04, 0.03, 0.03], [0.01, 0.01, 0.03, 0.95]]])
    logits = {"sure": sure.log(), "unsure": unsure.log()}
    expected = ((sure + unsure) / 2).log()
    assert torch.allclose(ensemble_log_probs(logits), expected, atol=1e-6)
    decoded = decode_heads(logits, torch.tensor([3]))
    assert decoded["sure"] == [[1, 2]] and decoded["unsure"] == [[3, 3]]
    assert decoded["ensemble"] == [[1, 3]]


def test_translations_are_scored_against_the_raw_references_with_13a_tokens():
    from mska_core.evaluation.evaluate import Prediction, score

    def scored(hypothesis: str) -> dict:
        return score([Prediction("a", {}, hypothesis, reference_gloss="", reference_text="El sordo llegó tarde.")])

    exact = scored("El sordo llegó tarde.")
    assert exact["bleu4"] == pytest.approx(100.0) and exact["rouge_l"] == pytest.approx(100.0)
    assert not [key for key in exact if key.startswith("wer")]  # no reference glosses: WER does not apply
    lowered = scored("el sordo llegó tarde")  # what a decoder that lower-cases and drops punctuation writes
    assert lowered["bleu4"] < 60 and lowered["rouge_l"] < 80
    assert scored("El sordo llegó tarde .")["rouge_l"] == pytest.approx(100.0)  # 13a splits the period off

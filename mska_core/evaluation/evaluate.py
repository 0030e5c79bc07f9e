"""Decoding a split and scoring it: WER per head, for the ensemble and the best of them, BLEU-1..4
and ROUGE-L.

WER is not applicable, and left out of the metrics (no ``wer`` keys at all, never 0), when the model
was trained without glosses (its gloss vocabulary is the specials alone: no CTC decoding is done) or
when the split has no reference glosses. Translations are the text decoder's detokenised output,
scored against the raw reference translations (:mod:`mska_core.evaluation.metrics`).

Used by the training loop on the dev split, by ``mska evaluate`` and by ``mska predict``. Under
``torchrun`` each rank decodes its own shard and the predictions are gathered, so every clip counts
exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from mska_core.data.vocab import gloss_tokens


@attrs.frozen
class Prediction:
    """The decoded output of one clip."""

    name: str
    glosses: dict[str, str]  # head (and "ensemble") -> gloss sequence; empty for a gloss-free model
    translation: str | None
    reference_gloss: str = ""
    reference_text: str = ""

    @property
    def gloss(self) -> str:
        """The gloss sequence of the ensemble, or of the only head."""
        return self.glosses.get("ensemble", next(iter(self.glosses.values()), ""))

    def as_dict(self) -> dict[str, Any]:
        """Plain data; ``gloss`` and ``glosses`` are ``None`` for a model trained without glosses."""
        return {"name": self.name, "gloss": self.gloss if self.glosses else None,
                "glosses": dict(self.glosses) if self.glosses else None,
                "translation": self.translation, "reference_gloss": self.reference_gloss,
                "reference_text": self.reference_text}


@torch.no_grad()
def predict_batch(model: Any, batch: Any, vocabularies: Any, *, beam_size: int = 1, translation_beam_size: int = 1,
                  max_text_length: int = 40, length_penalty: float = 1.0, amp: str = "none") -> list[Prediction]:
    """Glosses per head and ensemble, and the translation, of every clip of ``batch``."""
    model.eval()
    device = batch.clips.keypoints.device
    with torch.autocast(device.type, dtype=torch.float16 if amp == "fp16" else torch.bfloat16,
                        enabled=amp in ("bf16", "fp16")):
        encoded = model.encoder(batch.clips)
    return decode_output(model, encoded, batch, vocabularies, beam_size=beam_size,
                         translation_beam_size=translation_beam_size, max_text_length=max_text_length,
                         length_penalty=length_penalty)


@torch.no_grad()
def decode_output(model: Any, encoded: Any, batch: Any, vocabularies: Any, *, beam_size: int = 1,
                  translation_beam_size: int = 1, max_text_length: int = 40,
                  length_penalty: float = 1.0) -> list[Prediction]:
    """The :class:`Prediction` of every clip of ``batch`` from its encoder output ``encoded`` (an
    :class:`~mska_core.encoder.EncoderOutput`, e.g. stitched from windows by
    :mod:`mska_core.evaluation.windows`): CTC per head and ensemble (none for a model trained without
    glosses), then the translation through the text decoder's ``generate``."""
    from mska_core.evaluation.ctc import decode_heads

    decoded: dict[str, Any] = {}
    if vocabularies.has_glosses:
        decoded = decode_heads(encoded.logits, encoded.lengths, beam_size=beam_size, blank=vocabularies.blank)
    translations: list[str | None] = [None] * batch.size
    if model.decoder is not None:
        memory, lengths = model.decoder_memory(encoded)
        with torch.autocast(encoded.lengths.device.type, enabled=False):
            translations = list(model.decoder.generate(
                memory.float(), lengths, max_length=max_text_length, beam_size=translation_beam_size,
                length_penalty=length_penalty,
            ))
    out = []
    for i in range(batch.size):
        glosses = {head: " ".join(vocabularies.gloss.decode(rows[i])) for head, rows in decoded.items()}
        out.append(Prediction(name=batch.names[i], glosses=glosses, translation=translations[i],
                              reference_gloss=batch.glosses[i], reference_text=batch.texts[i]))
    return out


def score(predictions: Sequence[Prediction], *, gloss_cleanup: str = "none") -> dict[str, Any]:
    """Metrics of predictions against their references.

    Keys: ``wer/<head>`` for every head, ``wer/ensemble`` (with more than one head), ``wer/best`` (the
    lowest of those, as the MSKA reference reports it) and ``wer_best`` (which one it is); ``wer`` is
    the ensemble's (or the only head's), the figure that chooses the best checkpoint; and
    ``gloss_cleanup``, the clean-up applied to hypotheses and references before WER
    (:mod:`mska_core.evaluation.gloss_cleanup`). None of these when WER does not apply (no decoded
    glosses, or no reference glosses in the split). With translations ``bleu1``..``bleu4``,
    ``rouge_l`` and ``bleu_signature``, against the raw reference translations; ``clips``.
    """
    from mska_core.evaluation.gloss_cleanup import clean_all
    from mska_core.evaluation.metrics import translation_scores, word_error_rate

    metrics: dict[str, Any] = {"clips": len(predictions)}
    if not predictions:
        return metrics
    heads = list(predictions[0].glosses)
    if heads and wer_applies(predictions):
        references = [gloss_tokens(g) for g in clean_all([p.reference_gloss for p in predictions], gloss_cleanup)]
        for head in heads:
            hypotheses = clean_all([p.glosses[head] for p in predictions], gloss_cleanup)
            metrics[f"wer/{head}"] = word_error_rate(references, [h.split() for h in hypotheses]).wer
        best = min(heads, key=lambda head: metrics[f"wer/{head}"])
        metrics["wer/best"] = metrics[f"wer/{best}"]
        metrics["wer_best"] = best
        metrics["wer"] = metrics.get("wer/ensemble", metrics[f"wer/{heads[0]}"])
        metrics["gloss_cleanup"] = gloss_cleanup
    if predictions[0].translation is not None:
        refs = [p.reference_text for p in predictions]
        metrics.update(translation_scores(refs, [p.translation or "" for p in predictions]))
    return metrics


def wer_applies(predictions: Sequence[Prediction]) -> bool:
    """Whether WER means anything for ``predictions``: some clip has a reference gloss."""
    return any(p.reference_gloss.strip() for p in predictions)


def evaluate(model: Any, dataset: Any, vocabularies: Any, *, device: Any, batch_size: int,
             beam_size: int, translation_beam_size: int, max_text_length: int, length_penalty: float = 1.0,
             amp: str = "none",
             collate_fn: Any = None, gloss_cleanup: str = "none", indices: Sequence[int] | None = None,
             gather: Callable[[list[Prediction]], list[Prediction]] | None = None,
             ) -> tuple[dict[str, Any], list[Prediction]]:
    """Metrics (:func:`score`) and predictions of ``dataset``. Predictions keep the glosses as decoded;
    ``gloss_cleanup`` applies to the scores.

    Under ``torchrun`` each rank decodes ``indices`` (its shard; default every clip) and ``gather``
    joins every rank's predictions in rank order (the training loop passes
    :func:`~mska_core.training.distributed.shard` and ``gather``), so every clip counts once.
    """
    from mska_core.data.collate import Collator

    collate_fn = collate_fn or Collator.for_model(model, vocabularies)
    indices = list(range(len(dataset)) if indices is None else indices)
    predictions: list[Prediction] = []
    for start in range(0, len(indices), batch_size):
        batch = collate_fn([dataset[i] for i in indices[start : start + batch_size]]).to(device)
        predictions += predict_batch(model, batch, vocabularies, beam_size=beam_size,
                                     translation_beam_size=translation_beam_size,
                                     max_text_length=max_text_length, length_penalty=length_penalty, amp=amp)
    if gather is not None:
        predictions = gather(predictions)
    return score(predictions, gloss_cleanup=gloss_cleanup), predictions

"""The trained model: the multi-stream encoder plus, when translation is trained, the text decoder.

``SignModel.forward(batch)`` returns a :class:`StepOutput`, the ``output`` every fine-tuning loss
receives as ``loss(output, batch)``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn


@attrs.frozen
class StepOutput:
    """What a training step produced: the encoder's output and the decoder's logits.

    - ``encoder``: the :class:`~mska_core.encoder.EncoderOutput` (``logits`` and ``gloss_features``
      per head, ``lengths`` after downsampling, ``stream_features``, ``head_inputs``).
    - ``translation_logits``: ``[B, L, V_text]`` under teacher forcing, or ``None`` without a decoder.

    ``logits``, ``lengths``, ``gloss_features`` and ``distillation_targets()`` are forwarded from the
    encoder output for convenience.
    """

    encoder: Any
    translation_logits: torch.Tensor | None = None

    @property
    def logits(self) -> dict[str, torch.Tensor]:
        return self.encoder.logits

    @property
    def lengths(self) -> torch.Tensor:
        return self.encoder.lengths

    @property
    def gloss_features(self) -> dict[str, torch.Tensor]:
        return self.encoder.gloss_features

    def distillation_targets(self) -> torch.Tensor:
        return self.encoder.distillation_targets()


def decoder_head(head_names: list[str], wanted: str | None) -> str:
    """The head whose gloss features feed the decoder: ``wanted``, else ``fuse``, else the first."""
    from mska_core.errors import ConfigError

    if wanted is not None:
        if wanted not in head_names:
            raise ConfigError(f"losses.translation.head: {wanted!r} is not a head; heads: {', '.join(head_names)}")
        return wanted
    return "fuse" if "fuse" in head_names else head_names[0]


def decoder_memory_kind(config: Any, translation: Any, stored: Any = None) -> str:
    """What the decoder reads (``"glosses"`` or ``"frames"``): ``[losses.translation] memory`` when
    set, else what a checkpoint recorded, else ``"glosses"`` when a CTC loss trains (its decision
    segments the frames) and ``"frames"`` when none does (gloss-free corpora)."""
    if translation.memory is not None:
        return translation.memory
    if isinstance(stored, dict) and stored.get("memory") in ("glosses", "frames"):
        return stored["memory"]
    ctc = config.losses.get("ctc")
    return "glosses" if ctc is not None and ctc.weight > 0 else "frames"


class SignModel(nn.Module):
    """``encoder`` (an :class:`~mska_core.encoder.MSKAEncoder`) and an optional ``decoder`` (a module
    following :class:`mska_core.text.TextDecoder`, named ``decoder_name``) reading head
    ``decoder_head``.

    ``memory`` says what the decoder reads of that head: ``"glosses"``, its features averaged over
    each gloss its CTC decision recognises (:func:`~mska_core.text.builtin.ctc_compress`, with
    the CTC blank ``blank``), or ``"frames"``, every frame's features.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module | None = None, decoder_head: str | None = None,
                 *, memory: str = "glosses", blank: int = 0, decoder_name: str | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.decoder_head = decoder_head
        self.decoder_name = decoder_name
        self.memory = memory
        self.blank = blank

    def decoder_memory(self, encoded: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """What the decoder reads of ``encoded``: ``(memory [B, K, H], lengths [B])``."""
        from mska_core.text.builtin import ctc_compress

        features = encoded.gloss_features[self.decoder_head]
        if self.memory == "frames":
            return features, encoded.lengths
        return ctc_compress(features, encoded.logits[self.decoder_head], encoded.lengths, self.blank)

    def forward(self, batch: Any) -> StepOutput:
        encoded = self.encoder(batch.clips)
        logits = None
        if self.decoder is not None:
            memory, lengths = self.decoder_memory(encoded)
            logits = self.decoder(memory, lengths, batch.text_input)
        return StepOutput(encoder=encoded, translation_logits=logits)

    def text_decoder_state(self) -> dict[str, Any] | None:
        """What checkpoints store to rebuild the decoder: its name, head, memory and ``artifacts()``."""
        if self.decoder is None:
            return None
        return {"name": self.decoder_name, "head": self.decoder_head, "memory": self.memory,
                "artifacts": self.decoder.artifacts()}


def build_model(config: Any, vocabularies: Any, *, registry: Any, losses: dict[str, Any] | None = None,
                texts: Any = None, stored: dict[str, Any] | None = None) -> SignModel:
    """The encoder of ``config.model`` sized for the gloss vocabulary, and the text decoder when the
    ``translation`` loss is configured: the ``[losses.translation] decoder`` of ``registry``'s text
    decoders, reading ``model.head_hidden`` features, fitted on ``texts`` (the training split's
    translations) or rebuilt from ``stored`` (a checkpoint's ``text_decoder`` entry)."""
    from mska_core.encoder import MSKAEncoder
    from mska_core.text import build_decoder

    encoder = MSKAEncoder.from_config(config.model, vocab_size=len(vocabularies.gloss), registry=registry)
    translation = (losses or {}).get("translation")
    if translation is None:
        return SignModel(encoder)
    head = decoder_head(list(encoder.heads), translation.head)
    decoder = build_decoder(
        translation.decoder_name, registry=registry, memory_dim=config.model.head_hidden,
        options=translation.decoder_options, texts=None if stored is not None else texts,
        stored=stored.get("artifacts") if stored is not None else None,
    )
    return SignModel(encoder, decoder, head, memory=decoder_memory_kind(config, translation, stored),
                     blank=vocabularies.blank, decoder_name=translation.decoder_name)

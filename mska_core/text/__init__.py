"""The spoken-language side: text decoders, tokenizers and text decoding.

A text decoder translates the features of one recognition head into text. Decoders are supplied by
the ``mska_text_decoders`` hook (:class:`~mska_core.records.TextDecoderSpec`) and named in
``[losses.translation] decoder``: ``"mska"`` (the built-in decoder) or ``"hf::PATH"`` (a pretrained
seq2seq model from a local folder). This module holds the contract between the core and a decoder;
it imports nothing heavy. Nothing in this package knows about training loops.

How the core uses a decoder (the same for every record of the hook):

- building: :func:`build_decoder` looks the scheme up in the registry and calls its ``build`` with
  ``memory_dim = [model] head_hidden``, the options, and either the training split's translations
  (a new model) or what ``artifacts()`` returned (a model read back from a checkpoint: ``best.pt``
  and ``last.pt`` store ``text_decoder = {"name", "head", "memory", "artifacts"}``);
- batching: the collator calls ``tokenizer.teacher_forcing(text)`` for every clip and pads
  ``text_input`` with ``tokenizer.pad_id`` and ``text_target`` with :data:`IGNORE_INDEX`;
- training: ``forward`` gives logits for the translation loss (label-smoothed cross-entropy, targets
  at :data:`IGNORE_INDEX` ignored); ``[optim] part_lr`` and ``[losses.translation] freeze`` name the
  parts of ``parameter_groups()``;
- decoding: ``generate`` returns detokenised text, scored with BLEU (sacrebleu, ``13a``) and ROUGE-L
  against the raw reference translations.

A pretrained seq2seq model reads the memory as ``inputs_embeds`` with an attention mask built from
``memory_lengths``; its tokenizer's ``teacher_forcing`` gives the labels and, as decoder inputs,
the labels shifted right behind the model's ``decoder_start_token_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

#: Target ids at padded positions: ignored by the translation loss.
IGNORE_INDEX = -100


@attrs.frozen
class DecoderRequest:
    """What :attr:`TextDecoderSpec.build <mska_core.records.TextDecoderSpec.build>` receives.

    - ``payload``: the text after ``::`` in the decoder's name (``hf::PATH`` gives ``PATH``), or ``None``;
    - ``memory_dim``: the width of the features the decoder reads (``[B, K, memory_dim]``);
    - ``options``: the decoder's own keys of ``[losses.translation]`` (the decoder refuses keys it
      does not know with a :class:`~mska_core.errors.ConfigError` naming them);
    - ``texts``: the training split's translations, to fit a tokenizer on (``None`` when rebuilding);
    - ``stored``: what :meth:`TextDecoder.artifacts` returned when the checkpoint was written
      (``None`` for a new model); a decoder rebuilt from it needs none of its original files.
    """

    payload: str | None
    memory_dim: int
    options: Mapping[str, Any] = attrs.field(factory=dict)
    texts: Sequence[str] | None = None
    stored: Mapping[str, Any] | None = None


@runtime_checkable
class TextTokenizer(Protocol):
    """Text to token ids and back; picklable (the collator runs in DataLoader workers)."""

    pad_id: int

    def __len__(self) -> int: ...

    def teacher_forcing(self, text: str) -> tuple[list[int], list[int]]:
        """``(decoder input ids, target ids)`` of one translation, of equal length: the targets end
        with the end-of-sentence token, the inputs are the targets shifted right behind the decoder's
        start token."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenised text of ``ids`` (special tokens dropped)."""
        ...


@runtime_checkable
class TextDecoder(Protocol):
    """What a text decoder module (an ``nn.Module``) offers the core.

    - ``tokenizer``: its :class:`TextTokenizer`;
    - ``forward(memory [B, K, H], memory_lengths [B], text_input [B, L]) -> logits [B, L, V]`` under
      teacher forcing;
    - ``generate(memory, memory_lengths, *, max_length, beam_size, length_penalty) -> list[str]``:
      detokenised translations, one per clip;
    - ``artifacts() -> dict``: plain data (``torch.load(weights_only=True)`` reads it) from which the
      decoder is rebuilt with its weights from the model's state dict;
    - ``parameter_groups() -> dict[str, list[nn.Parameter]]``: named parts (``"mapper"``, ``"lm"``) that
      ``[optim] part_lr`` can give their own learning rate and ``[losses.translation] freeze`` can freeze.
    """

    tokenizer: Any

    def generate(self, memory: Any, memory_lengths: Any, *, max_length: int, beam_size: int,
                 length_penalty: float) -> list[str]: ...

    def artifacts(self) -> dict[str, Any]: ...

    def parameter_groups(self) -> dict[str, list[Any]]: ...


def split_decoder_name(name: str) -> tuple[str, str | None]:
    """``"hf::models/mbart"`` -> ``("hf", "models/mbart")``; ``"mska"`` -> ``("mska", None)``."""
    scheme, sep, payload = name.partition("::")
    return scheme, (payload if sep else None)


def build_decoder(name: str, *, registry: Any, memory_dim: int, options: Mapping[str, Any] | None = None,
                  texts: Sequence[str] | None = None, stored: Mapping[str, Any] | None = None) -> Any:
    """The decoder ``name`` (``[losses.translation] decoder``) of ``registry``'s ``mska_text_decoders``
    records, built for features of width ``memory_dim``: fitted on ``texts`` for a new model, or
    rebuilt from ``stored`` (what its ``artifacts()`` returned)."""
    from mska_core.errors import ConfigError, RegistryError

    scheme, payload = split_decoder_name(name)
    try:
        spec = registry.text_decoders.get(scheme)
    except RegistryError as exc:
        raise ConfigError(f"losses.translation.decoder: {exc}") from None
    request = DecoderRequest(payload=payload, memory_dim=memory_dim, options=dict(options or {}),
                             texts=list(texts) if texts is not None else None, stored=stored)
    decoder = spec.build(request)
    missing = [attr for attr in ("tokenizer", "generate", "artifacts", "parameter_groups")
               if not hasattr(decoder, attr)]
    if missing:
        raise ConfigError(f"losses.translation.decoder: {name!r} ({spec.provider}) built a "
                          f"{type(decoder).__name__} without {', '.join(missing)}, which the text decoder "
                          "contract (mska_core.text.TextDecoder) requires")
    return decoder

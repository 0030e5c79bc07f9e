"""The spoken-language side: text decoders, tokenizers and text decoding.

A text decoder translates the features of one recognition head into text. Decoders are supplied by
the ``mska_text_decoders`` hook (:class:`~mska_core.records.TextDecoderSpec`) and named in
``[losses.translation] decoder``: ``"mska"`` (the built-in decoder) or ``"hf::PATH"`` (a pretrained
seq2seq model from a local folder). This module holds the contract between the core and a decoder;
it imports nothing heavy. Nothing in this package knows about training loops.
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

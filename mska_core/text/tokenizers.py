"""Tokenizers of the built-in text decoder: subword units learned from the training split, and the
word vocabulary of checkpoints written before them.

:class:`SubwordTokenizer` is a byte-level BPE (HuggingFace ``tokenizers``, as GPT-2 and RoBERTa
use): text is NFC-normalised and its runs of white space become one space; it is cut into words,
numbers and punctuation runs (``"sordo."`` -> ``"sordo"`` + ``"."``; a word keeps the space before
it), each cut into UTF-8 bytes, and the most frequent byte pairs of the training split's
translations are merged until the vocabulary has ``vocab_size`` entries (or nothing is left to
merge). Every byte is in the vocabulary, so any text — a word never seen in training, another
script, an emoji — is encoded without ``<unk>`` and decoded back exactly (up to white space). Case is kept, and scores are computed on the detokenised text against the raw references.
Training is deterministic (merges are ranked by count, ties by the pair itself), so the same data
gives the same tokenizer; it is stored in checkpoints as its JSON string.

:class:`WordTokenizer` is the vocabulary of earlier checkpoints (``vocabularies.text``): lower-cased
words split on white space, ``<unk>`` for any other word. It is kept so that those checkpoints still
load, evaluate and predict; new runs never make one.

Both follow :class:`mska_core.text.TextTokenizer` and are picklable (DataLoader workers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mska_core.errors import CheckpointError, ConfigError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: The subword tokenizer's special tokens, at ids 0, 1, 2.
SPECIALS = (PAD, BOS, EOS)
#: Entries of a byte-level vocabulary before any merge: the specials and the 256 bytes.
MIN_VOCAB_SIZE = len(SPECIALS) + 256


class SubwordTokenizer:
    """A byte-level BPE tokenizer (see the module); ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2.

    ``max_tokens`` caps the ids of one translation under teacher forcing (the decoder's positions);
    a longer translation is cut, its ``<eos>`` kept.
    """

    kind = "bpe"

    def __init__(self, tokenizer: Any, *, max_tokens: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        ids = [tokenizer.token_to_id(token) for token in SPECIALS]
        if ids != [0, 1, 2]:
            raise CheckpointError(f"subword tokenizer: the special tokens {', '.join(SPECIALS)} must have ids 0, 1, "
                                  f"2, found {ids}; the stored tokenizer is damaged")
        self.pad_id, self.bos_id, self.eos_id = ids

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int, *, max_tokens: int | None = None) -> SubwordTokenizer:
        """A tokenizer of at most ``vocab_size`` entries fitted on ``texts`` (deterministic)."""
        from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if vocab_size < MIN_VOCAB_SIZE:
            raise ConfigError(f"losses.translation.vocab_size: a byte-level vocabulary needs at least "
                              f"{MIN_VOCAB_SIZE} entries (3 specials and 256 bytes), got {vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
        )
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
        return cls(tokenizer, max_tokens=max_tokens)

    @classmethod
    def from_json(cls, text: str, *, max_tokens: int | None = None) -> SubwordTokenizer:
        """The tokenizer stored by :meth:`to_json`."""
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions on bad JSON
            raise CheckpointError(f"subword tokenizer: the stored tokenizer cannot be read ({exc})") from None
        return cls(tokenizer, max_tokens=max_tokens)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """The subword ids of ``text`` (no special tokens)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def tokens(self, text: str) -> list[str]:
        """The subword units of ``text``, as the vocabulary spells them (a leading ``Ġ`` is a space)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).tokens)

    def teacher_forcing(self, text: str) -> tuple[list[int], list[int]]:
        ids = self.encode(text)
        if self.max_tokens is not None:
            ids = ids[: self.max_tokens - 1]
        return [self.bos_id, *ids], [*ids, self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    def __getstate__(self) -> dict[str, Any]:
        return {"json": self.to_json(), "max_tokens": self.max_tokens}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__init__(SubwordTokenizer.from_json(state["json"]).tokenizer, max_tokens=state["max_tokens"])

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {"kind": self.kind, "json": self.to_json()}


class WordTokenizer:
    """The word vocabulary of checkpoints written before subword text: ``<pad>`` (0), ``<bos>``,
    ``<eos>``, ``<unk>``, then lower-cased words. Decoding joins words with single spaces."""

    kind = "words"

    def __init__(self, tokens: Sequence[str], *, max_tokens: int | None = None) -> None:
        self.tokens = list(tokens)
        if self.tokens[:4] != [PAD, BOS, EOS, UNK]:
            raise CheckpointError(f"word vocabulary: expected it to start with {PAD}, {BOS}, {EOS}, {UNK}, found "
                                  f"{self.tokens[:4]}; the stored vocabulary is damaged")
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3
        self.max_tokens = max_tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(word, self.unk_id) for word in text.lower().split()]

    def teacher_forcing(self, text: str) -> tuple[list[int], list[int]]:
        ids = self.encode(text)
        if self.max_tokens is not None:
            ids = ids[: self.max_tokens - 1]
        return [self.bos_id, *ids], [*ids, self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.tokens[int(i)] for i in ids if int(i) > self.eos_id)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self.tokens)}


def tokenizer_from_dict(data: Any, *, max_tokens: int | None = None) -> SubwordTokenizer | WordTokenizer:
    """The tokenizer a checkpoint stores (``to_dict()`` of either kind)."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind == SubwordTokenizer.kind and isinstance(data.get("json"), str):
        return SubwordTokenizer.from_json(data["json"], max_tokens=max_tokens)
    if kind == WordTokenizer.kind and isinstance(data.get("tokens"), (list, tuple)):
        return WordTokenizer(data["tokens"], max_tokens=max_tokens)
    raise CheckpointError("the stored text tokenizer is not one the built-in decoder knows (expected kind 'bpe' "
                          "with its JSON, or 'words' with its tokens); the checkpoint is damaged")

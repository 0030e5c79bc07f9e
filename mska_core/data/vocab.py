"""The gloss vocabulary, built from the training split and stored as plain data in checkpoints.

- The gloss vocabulary starts with the CTC blank (index 0) and ``<unk>``; glosses follow in order of
  first appearance in the training split. The encoder's heads predict over all of it. A gloss-free
  corpus (every gloss empty) gives a vocabulary of the two specials alone.
- Text is the text decoder's business (its tokenizer, :mod:`mska_core.text`). Checkpoints written
  before that carry a word vocabulary as ``vocabularies.text`` (``<pad>`` (0), ``<bos>``, ``<eos>``,
  ``<unk>``, then lower-cased words); it is read back as :attr:`Vocabularies.text` so that they
  still load (:class:`mska_core.text.tokenizers.WordTokenizer`). New runs store none.

``Vocabulary.to_dict()`` is a plain dict (``{"tokens": [...], "specials": [...]}``) that
``torch.load(..., weights_only=True)`` reads back; ``Vocabulary.from_dict`` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from mska_core.errors import DataError

BLANK, PAD, BOS, EOS, UNK = "<blank>", "<pad>", "<bos>", "<eos>", "<unk>"
GLOSS_SPECIALS = (BLANK, UNK)
TEXT_SPECIALS = (PAD, BOS, EOS, UNK)


def gloss_tokens(gloss: str) -> list[str]:
    """The glosses of an annotation line (white-space separated, case kept)."""
    return gloss.split()


def text_tokens(text: str) -> list[str]:
    """The words of a translation as earlier versions split it (lower-cased, white-space separated)."""
    return text.lower().split()


@attrs.frozen
class Vocabulary:
    """Tokens by index; the first ``len(specials)`` entries are the special tokens."""

    tokens: tuple[str, ...] = attrs.field(converter=tuple)
    specials: tuple[str, ...] = attrs.field(converter=tuple)
    _index: dict[str, int] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if tuple(self.tokens[: len(self.specials)]) != tuple(self.specials):
            raise DataError(f"vocabulary: the first tokens must be the specials {self.specials}")
        if len(set(self.tokens)) != len(self.tokens):
            raise DataError("vocabulary: a token appears twice")
        object.__setattr__(self, "_index", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], specials: Sequence[str]) -> Vocabulary:
        """A vocabulary of every token in ``sentences`` (already tokenised), after ``specials``."""
        tokens = list(specials)
        seen = set(tokens)
        for sentence in sentences:
            for token in sentence:
                if token not in seen:
                    seen.add(token)
                    tokens.append(token)
        return cls(tokens, specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def index(self, token: str) -> int:
        """The index of ``token``, or of ``<unk>`` when it is unknown."""
        return self._index.get(token, self._index[UNK])

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index(token) for token in tokens]

    def decode(self, ids: Iterable[int], *, skip_specials: bool = True) -> list[str]:
        """Tokens of ``ids``; special tokens are dropped unless ``skip_specials`` is false."""
        out = []
        for i in ids:
            token = self.tokens[int(i)]
            if skip_specials and token in self.specials and token != UNK:
                continue
            out.append(token)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {"tokens": list(self.tokens), "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        try:
            return cls(data["tokens"], data["specials"])
        except (KeyError, TypeError) as exc:
            raise DataError(f"vocabulary: expected {{'tokens': [...], 'specials': [...]}}, got {exc}") from None


@attrs.frozen
class Vocabularies:
    """The gloss vocabulary (CTC targets, blank at 0) and, in checkpoints of earlier versions only,
    their word vocabulary of translations (``text``; ``None`` otherwise)."""

    gloss: Vocabulary
    text: Vocabulary | None = None

    @property
    def blank(self) -> int:
        return self.gloss.index(BLANK)

    @property
    def has_glosses(self) -> bool:
        """Whether the training split had any gloss (false for a gloss-free corpus)."""
        return len(self.gloss) > len(self.gloss.specials)

    @classmethod
    def from_samples(cls, samples: Iterable[Any]) -> Vocabularies:
        """The gloss vocabulary from the ``gloss`` of training samples."""
        samples = list(samples)
        if not samples:
            raise DataError("the training split is empty: no vocabulary can be built from it")
        return cls(gloss=Vocabulary.build((gloss_tokens(s.gloss) for s in samples), GLOSS_SPECIALS))

    def to_dict(self) -> dict[str, Any]:
        out = {"gloss": self.gloss.to_dict()}
        if self.text is not None:
            out["text"] = self.text.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabularies:
        text = data.get("text")
        return cls(gloss=Vocabulary.from_dict(data["gloss"]),
                   text=Vocabulary.from_dict(text) if text is not None else None)

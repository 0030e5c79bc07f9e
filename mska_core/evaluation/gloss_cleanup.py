"""Gloss clean-up before scoring: the PHOENIX-2014T evaluation's rules (``[eval] gloss_cleanup``).

PHOENIX-2014T's published evaluation normalises both the decoded glosses and the references before
the word error rate is computed, so that annotation conventions that a recogniser cannot (or need
not) reproduce do not count as errors. mska-core applies these rules, token by token, when
``[eval] gloss_cleanup = "phoenix-2014t"``:

1. annotation markers — tokens written ``__NAME__`` (``__ON__``, ``__OFF__``, ``__EMOTION__``,
   ``__PU__``, ``__LEFTHAND__``, ``__EPENTHESIS__``, ...) — are dropped;
2. the prefixes ``loc-`` (locative) and ``cl-`` (classifier) and the suffix ``-PLUSPLUS``
   (repetition) are removed from a gloss;
3. a gloss of capital letters ending in ``RAUM`` (region) loses that ending (``NORDRAUM`` ->
   ``NORD``); ``RAUM`` on its own stays;
4. ``WIE AUSSEHEN`` becomes the single gloss ``WIE-AUSSEHEN``;
5. fingerspelling is joined with ``+``: single capital letters that follow each other become one
   gloss (``A B C`` -> ``A+B+C``), as do ``SCH`` followed by a letter and ``NN`` next to a letter,
   and a letter next to an already joined gloss (``A+B C`` -> ``A+B+C``);
6. a gloss repeated immediately is kept once (``REGEN REGEN`` -> ``REGEN``).

The rules are case-sensitive, as the corpus writes them (glosses in capitals, ``loc-``/``cl-`` in
lower case). The MSKA paper's code applies the same rules with regular expressions, some of which
need a space after the second letter; so there a line that is only two letters (``A B``) or starts
with ``SCH A`` keeps them apart. Here the position in the line does not matter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

CLEANUPS = ("none", "phoenix-2014t")

_PREFIXES = ("loc-", "cl-")
_SUFFIX = "-PLUSPLUS"
_REGION = "RAUM"
_COMPOUNDS = {("WIE", "AUSSEHEN"): "WIE-AUSSEHEN"}


def _is_marker(token: str) -> bool:
    return len(token) > 4 and token.startswith("__") and token.endswith("__")


def _is_letter(part: str) -> bool:
    return len(part) == 1 and "A" <= part <= "Z"


def _strip(token: str) -> str:
    for prefix in _PREFIXES:
        token = token.removeprefix(prefix)
    token = token.removesuffix(_SUFFIX)
    stem = token[: -len(_REGION)]
    if token.endswith(_REGION) and stem.isascii() and stem.isalpha() and stem.isupper():
        token = stem
    return token


def _spelled_together(left: str, right: str) -> bool:
    """Whether two neighbouring glosses are parts of one fingerspelled word."""
    last, first = left.split("+")[-1], right.split("+")[0]
    if _is_letter(last):
        return _is_letter(first) or first == "NN"
    return last in ("SCH", "NN") and _is_letter(first)


def clean_phoenix_2014t(glosses: str) -> str:
    """``glosses`` (white-space separated) after the PHOENIX-2014T clean-up rules (module docstring)."""
    tokens = [_strip(t) for t in glosses.split() if not _is_marker(t)]
    tokens = [t for t in tokens if t]
    merged: list[str] = []
    for token in tokens:
        if merged and (merged[-1], token) in _COMPOUNDS:
            merged[-1] = _COMPOUNDS[(merged[-1], token)]
        elif merged and _spelled_together(merged[-1], token):
            merged[-1] = f"{merged[-1]}+{token}"
        else:
            merged.append(token)
    kept = [t for i, t in enumerate(merged) if i == 0 or t != merged[i - 1]]
    return " ".join(kept)


def gloss_cleaner(name: str) -> Callable[[str], str]:
    """The clean-up called ``name`` (one of :data:`CLEANUPS`) as a function of a gloss line."""
    if name == "none":
        return lambda glosses: " ".join(glosses.split())
    if name == "phoenix-2014t":
        return clean_phoenix_2014t
    raise ValueError(f"unknown gloss clean-up {name!r}; choose one of {', '.join(CLEANUPS)}")


def clean_all(lines: Sequence[str], name: str) -> list[str]:
    """Every line of ``lines`` after the clean-up ``name``."""
    clean = gloss_cleaner(name)
    return [clean(line) for line in lines]

"""Gloss clean-up before scoring (``[eval] gloss_cleanup``): PHOENIX-2014T's published rules, exactly,
and a variant with their slips fixed.

PHOENIX-2014T's evaluation normalises both the decoded glosses and the references before the word
error rate is computed, so that annotation conventions a recogniser cannot (or need not) reproduce do
not count as errors. Published WERs on PHOENIX-2014T are computed after the clean-up script that the
MSKA paper's code ships (``phoenix_cleanup.py``, ``clean_phoenix_2014_trans``), so
``"phoenix-2014t"`` reproduces that script line for line, slips included, and its WERs compare with
published tables. In order, on the whole line:

1. annotation markers are dropped: ``__LEFTHAND__``, ``__EPENTHESIS__`` and ``__EMOTION__`` wherever they
   stand, then every other ``__NAME__`` between word boundaries;
2. the prefixes ``loc-`` and ``cl-`` and the suffix ``-PLUSPLUS`` are removed (each only where a word
   boundary follows, so a lone ``loc-`` at the end stays);
3. a gloss of capitals ending in ``RAUM`` loses that ending (``NORDRAUM`` -> ``NORD``; ``RAUM`` stays);
4. ``WIE AUSSEHEN`` becomes ``WIE-AUSSEHEN``;
5. fingerspelled letters are joined with ``+`` by nine regular-expression passes, each of which
   consumes the space after the second letter it joins. The passes therefore miss letters: a line of
   just two letters keeps them apart (``A B``), ``A B C D`` becomes ``A B+C+D``, ``K S S GEMISCHT``
   becomes ``K S+S GEMISCHT``, and ``SCH`` or ``NN`` at the start of a line is never joined;
6. a run of one capitalised gloss repeated is kept once (four passes), spaces are collapsed, and
   remaining immediate repetitions of a token are dropped.

``"phoenix-2014t-fixed"`` applies the same rules token by token, so that the position in the line does
not matter: every run of single letters is joined (``A B`` -> ``A+B``, ``K S S`` -> ``K+S+S``), as are
``SCH`` before a letter and ``NN`` next to one, and every ``__NAME__`` marker and lone prefix goes. Its
WERs are not comparable with published tables.

The rules are case-sensitive, as the corpus writes them (glosses in capitals, ``loc-``/``cl-`` in
lower case).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence

CLEANUPS = ("none", "phoenix-2014t", "phoenix-2014t-fixed")

# --- "phoenix-2014t": the published script's passes, in its order ---------------------------------

_LETTER_JOINS = (
    (r"^([A-Z]) ([A-Z][+ ])", r"\1+\2"),  # two letters at the start of the line
    (r"[ +]([A-Z]) ([A-Z]) ", r" \1+\2 "),  # two letters between spaces
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),  # a letter after a letter (three passes)
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    (r"([ +]SCH) ([A-Z][ +])", r"\1+\2"),  # SCH, then a letter
    (r"([ +]NN) ([A-Z][ +])", r"\1+\2"),  # NN, then a letter
    (r"([ +][A-Z]) (NN[ +])", r"\1+\2"),  # a letter, then NN
    (r"([ +][A-Z]) ([A-Z])$", r"\1+\2"),  # two letters at the end of the line
)
_REPEATED = r"(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])"

#: Every substitution of the published script, in its order: (pattern, replacement).
PUBLISHED_PASSES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"__LEFTHAND__", ""), (r"__EPENTHESIS__", ""), (r"__EMOTION__", ""),
        (r"\b__[^_ ]*__\b", ""),  # the other markers
        (r"\bloc-([^ ]*)\b", r"\1"), (r"\bcl-([^ ]*)\b", r"\1"), (r"\b([^ ]*)-PLUSPLUS\b", r"\1"),
        (r"\b([A-Z][A-Z]*)RAUM\b", r"\1"),
        (r"WIE AUSSEHEN", "WIE-AUSSEHEN"),
        *_LETTER_JOINS,
        (r" +", " "),
        (_REPEATED, r"\1"), (_REPEATED, r"\1"), (_REPEATED, r"\1"), (_REPEATED, r"\1"),
        (r" +", " "),
    )
)


def clean_phoenix_2014t(glosses: str) -> str:
    """``glosses`` after PHOENIX-2014T's published clean-up, exactly (module docstring)."""
    line = glosses.strip()
    for pattern, replacement in PUBLISHED_PASSES:
        line = pattern.sub(replacement, line)
    # drop immediate repetitions of a token (split on single spaces, as the script does), then spaces
    line = " ".join(token for token, _ in itertools.groupby(line.split(" ")))
    return " ".join(line.split())


# --- "phoenix-2014t-fixed": the same rules, token by token --------------------------------------------

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


def clean_phoenix_2014t_fixed(glosses: str) -> str:
    """``glosses`` (white-space separated) after the PHOENIX-2014T rules applied token by token, so that
    the position of letters in the line does not matter (module docstring)."""
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
    if name == "phoenix-2014t-fixed":
        return clean_phoenix_2014t_fixed
    raise ValueError(f"unknown gloss clean-up {name!r}; choose one of {', '.join(CLEANUPS)}")


def clean_all(lines: Sequence[str], name: str) -> list[str]:
    """Every line of ``lines`` after the clean-up ``name``."""
    clean = gloss_cleaner(name)
    return [clean(line) for line in lines]

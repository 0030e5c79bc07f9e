"""Validation of clips on the way in: every source's clips, and the clips of ``mska predict``.

Checked per clip, and reported with the clip's id and the file it came from:

- the joint count differs from the layout's, or the points are not ``[T, J, 3]`` (never repairable);
- the clip has no frame, or (after repair) no point with confidence above 0;
- a coordinate or confidence is NaN or infinite;
- a confidence lies outside [0, 1];
- the gloss or the text is not valid UTF-8 (sources decode text with ``surrogateescape``, so a bad
  byte survives reading and is caught here, in one place).

``[data] invalid`` says what happens to a clip with a problem:

- ``"refuse"`` (the default): nothing is loaded; a :class:`~mska_core.errors.DataError` lists the
  clips and their problems and says how to repair them.
- ``"repair"``: a point with a non-finite coordinate or confidence gets coordinates 0 and confidence
  0 (a missing joint, as the encoder masks it); confidences are clipped to [0, 1]; undecodable bytes
  in text become U+FFFD; a clip with no frame or no usable point is dropped, and so is a clip with
  the wrong joint count (or points that are not ``[T, J, 3]``), so that one such clip does not block
  the corpus. Every repair and drop is reported, one line per clip, as a warning on stderr. When
  *every* clip of a split has the wrong joint count, the data is in another layout: that is refused
  whatever the policy, with the hint to set ``model.layout``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs

from mska_core.data.samples import SPLITS, Corpus, Sample
from mska_core.errors import DataError

POLICIES = ("refuse", "repair")

#: At most this many clips are named in one message; the rest are counted.
SHOWN = 10

log = logging.getLogger(__name__)


@attrs.frozen
class ClipCheck:
    """What :func:`check_clip` found in one clip: ``problems`` (repairable), ``fatal`` (not), and the
    repaired points (``None`` when the clip cannot be used: no frame, no usable point, or fatal)."""

    problems: tuple[str, ...]
    fatal: tuple[str, ...]
    keypoints: Any  # torch.Tensor [T, J, 3] or None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.fatal


def check_clip(keypoints: Any, num_joints: int | None) -> ClipCheck:
    """Check one clip's points ``[T, J, C]`` (x, y, confidence) against a layout of ``num_joints``."""
    import torch

    points = torch.as_tensor(keypoints)
    if points.ndim != 3 or points.shape[-1] < 3:
        return ClipCheck((), (f"keypoints have shape {tuple(points.shape)}, expected [T, J, 3]",), None)
    if num_joints is not None and points.shape[1] != num_joints:
        return ClipCheck((), (f"{points.shape[1]} joints per frame, the layout has {num_joints}; set "
                              "model.layout to the layout of the data",), None)
    if points.shape[0] == 0:
        return ClipCheck(("no frames",), (), None)
    points = points[..., :3].float()
    problems = []
    finite = torch.isfinite(points).all(dim=-1)  # [T, J]
    if not bool(finite.all()):
        bad = int((~finite).sum())
        problems.append(f"{bad} points with NaN or infinite values")
    conf = points[..., 2]
    outside = finite & ((conf < 0) | (conf > 1))
    if bool(outside.any()):
        values = conf[outside]
        problems.append(f"{int(outside.sum())} confidences outside [0, 1] "
                        f"(from {float(values.min()):g} to {float(values.max()):g})")
    repaired = points
    if problems:
        repaired = torch.where(finite[..., None], points, torch.zeros((), dtype=points.dtype))
        repaired[..., 2] = repaired[..., 2].clamp(0.0, 1.0)
    if not bool((repaired[..., 2] > 0).any()):
        problems.append("no point with a confidence above 0")
        return ClipCheck(tuple(problems), (), None)
    return ClipCheck(tuple(problems), (), repaired)


def text_problem(value: str) -> str | None:
    """Why ``value`` is not valid UTF-8 text, or ``None``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"bytes that are not UTF-8 at character {exc.start}"
    return None


def repair_text(value: str) -> str:
    """``value`` with undecodable bytes (``surrogateescape``) replaced by U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_text(raw: bytes) -> str:
    """Text read from a file: UTF-8, with bytes that are not kept as surrogates for validation."""
    return raw.decode("utf-8", "surrogateescape")


def validate_samples(samples: Sequence[Sample], *, num_joints: int | None, policy: str,
                     where: str) -> list[Sample]:
    """The usable samples of ``samples`` under ``policy`` (see the module docs); ``where`` names the
    source and split in messages."""
    if policy not in POLICIES:
        raise DataError(f"data.invalid: {policy!r} is not a policy; choose one of {', '.join(POLICIES)}")
    kept: list[Sample] = []
    refused: list[str] = []
    repaired: list[str] = []
    unusable: list[str] = []  # wrong joint count or shape, dropped under "repair"
    for sample in samples:
        check = check_clip(sample.keypoints, num_joints)
        problems = list(check.problems)
        fields = {}
        for field in ("gloss", "text"):
            problem = text_problem(getattr(sample, field))
            if problem:
                problems.append(f"{field} has {problem}")
                fields[field] = repair_text(getattr(sample, field))
        label = f"{where}: clip {sample.name!r}" + (f" ({sample.path})" if sample.path else "")
        if check.fatal:
            if policy == "refuse":
                refused.append(f"{label}: {'; '.join(check.fatal)}")
            else:
                unusable.append(f"{label}: {'; '.join(check.fatal)}; dropped")
            continue
        if not problems:
            kept.append(sample)
            continue
        if policy == "refuse":
            refused.append(f"{label}: {'; '.join(problems)}")
            continue
        if check.keypoints is None:
            repaired.append(f"{label}: {'; '.join(problems)}; dropped")
            continue
        repaired.append(f"{label}: {'; '.join(problems)}; repaired")
        kept.append(attrs.evolve(sample, keypoints=check.keypoints, **fields))
    if unusable and len(unusable) == len(samples):  # no clip fits: the data is in another layout
        refused = [line.removesuffix("; dropped") for line in unusable]
    else:
        repaired += unusable
    if refused:
        _report(refused, "invalid clip", where)
        hint = ("no clip has the layout's joint count, so the data is in another layout" if policy == "repair"
                else "set [data] invalid = \"repair\" to zero non-finite points, clip confidences, replace bad "
                "bytes and drop empty clips and clips with the wrong joint count (docs/data.md)")
        first = refused[0] if len(refused) == 1 else f"first: {refused[0]}"
        raise DataError(f"{len(refused)} invalid clip{'s' if len(refused) > 1 else ''} ({first}); {hint}")
    _report(repaired, "warning", where)
    return kept


def _report(lines: list[str], prefix: str, where: str) -> None:
    """One line per clip on the ``mska_core.data.validate`` logger (stderr), at most :data:`SHOWN`."""
    for line in lines[:SHOWN]:
        log.warning("%s: %s", prefix, line)
    if len(lines) > SHOWN:
        log.warning("%s: %s: %d more clips", prefix, where, len(lines) - SHOWN)


def validate_clip(keypoints: Any, *, num_joints: int | None, policy: str, label: str) -> Any:
    """One clip's points under ``policy`` (``mska predict``'s input): the points, repaired where
    ``policy`` is ``"repair"``, or ``None`` for a clip that cannot be used under ``"repair"`` (no frame,
    no usable point), reported on stderr. Under ``"refuse"``, or for a wrong joint count, a clip with a
    problem is a :class:`~mska_core.errors.DataError` naming ``label``."""
    if policy not in POLICIES:
        raise DataError(f"data.invalid: {policy!r} is not a policy; choose one of {', '.join(POLICIES)}")
    check = check_clip(keypoints, num_joints)
    if check.fatal:
        raise DataError(f"{label}: {'; '.join(check.fatal)}")
    if check.ok:
        return check.keypoints
    problems = "; ".join(check.problems)
    if policy == "refuse":
        raise DataError(f"{label}: {problems}; use --invalid repair to zero non-finite points and clip "
                        "confidences (docs/data.md)")
    _report([f"{label}: {problems}; {'dropped' if check.keypoints is None else 'repaired'}"], "warning", label)
    return check.keypoints


def validate_corpus(corpus: Corpus, *, num_joints: int | None, policy: str) -> Corpus:
    """:func:`validate_samples` over the three splits of ``corpus``."""
    splits = {split: validate_samples(corpus.split(split), num_joints=num_joints, policy=policy,
                                      where=f"{corpus.source} ({split})")
              for split in SPLITS}
    return attrs.evolve(corpus, **splits)

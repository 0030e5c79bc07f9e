"""Validation of clips on the way in: every source's clips, and the clips of ``mska predict``.

Checked per clip, and reported with the clip's id and the file it came from:

- the joint count differs from the layout's, or the points are not ``[T, J, 3]`` (never repairable);
- the clip has no frame, or (after repair) no point with confidence above 0;
- a coordinate or confidence is NaN or infinite;
- a confidence lies outside [0, 1];
- a found joint (confidence above 0) lies beyond the frame by more than ``[data] frame_margin`` of
  the frame's size: in normalised coordinates, where [-1, 1] is the frame, beyond
  ``±(1 + 2 * frame_margin)`` (±1.5 by default). Estimators extrapolate joints they cannot see
  (MediaPipe Holistic puts an off-screen wrist hundreds of pixels below the frame). The message
  gives the count and the fraction of the clip's found joints;
- more than :data:`CONTRADICTION` of its found joints lie beyond the frame: the frame size the clip
  was normalised with (its ``.pose`` header's, or ``[data] frame_width/frame_height``) does not fit
  its points;
- the gloss or the text is not valid UTF-8 (sources decode text with ``surrogateescape``, so a bad
  byte survives reading and is caught here, in one place).

``[data] invalid`` says what happens to a clip with a problem:

- ``"refuse"`` (the default): nothing is loaded; a :class:`~mska_core.errors.DataError` lists the
  clips and their problems and says how to repair them.
- ``"repair"``: a point with a non-finite coordinate or confidence gets coordinates 0 and confidence
  0 (a missing joint, as the encoder masks it); confidences are clipped to [0, 1]; a joint beyond
  the frame by more than the margin is clamped to the frame's border ([-1, 1]) and gets confidence
  0; undecodable bytes in text become U+FFFD; a clip with no frame, no usable point, or a frame size
  that does not fit its points is dropped, and so is a clip with the wrong joint count (or points that
  are not ``[T, J, 3]``), so that one such clip does not block the corpus. Every repair and drop is
  reported, one line per clip, as a warning on stderr. When *every* clip of a split has the wrong
  joint count, the data is in another layout: that is refused whatever the policy, with the hint to
  set ``model.layout``.

What the model sees, whatever the source: coordinates within ``±(1 + 2 * frame_margin)`` — a found
joint inside the frame in [-1, 1], one up to the margin beyond it a little outside, a missing joint
(confidence 0, which the encoder masks but still reads) clamped into the same range — confidences in
[0, 1], and no NaN or infinity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs

from mska_core.config.schema import DataConfig
from mska_core.data.samples import SPLITS, Corpus, Sample
from mska_core.errors import DataError

POLICIES = ("refuse", "repair")

#: The default of ``[data] frame_margin``, from its one home (:class:`~mska_core.config.DataConfig`).
FRAME_MARGIN: float = attrs.fields(DataConfig).frame_margin.default

#: Above this fraction of its found joints beyond the frame, a clip's frame size contradicts its points.
CONTRADICTION = 0.5
UNFIT = ("the frame size it was normalised with (its .pose header's, or [data] frame_width and frame_height) "
         "does not fit its points")

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


def outside_frame(keypoints: Any, margin: float = FRAME_MARGIN) -> tuple[Any, Any]:
    """``(outside, found)``, both bool ``[T, J]``, of normalised points ``[T, J, 3]``: the found joints
    (finite, confidence above 0), and those of them beyond the frame by more than ``margin`` of its size.
    A numpy array is checked with numpy (extraction runs where torch may not be installed)."""
    import numpy as np

    if isinstance(keypoints, np.ndarray):
        found = np.isfinite(keypoints[..., :3]).all(axis=-1) & (keypoints[..., 2] > 0)
        beyond = (np.abs(keypoints[..., :2]) > 1.0 + 2.0 * margin).any(axis=-1)
        return found & beyond, found
    import torch

    points = torch.as_tensor(keypoints)
    found = torch.isfinite(points[..., :3]).all(dim=-1) & (points[..., 2] > 0)
    beyond = (points[..., :2].abs() > 1.0 + 2.0 * margin).any(dim=-1)
    return found & beyond, found


def outside_fraction(keypoints: Any, margin: float = FRAME_MARGIN) -> float:
    """The fraction of a clip's found joints beyond the frame by more than ``margin`` (0 when none is found)."""
    outside, found = outside_frame(keypoints, margin)
    return float(outside.sum()) / max(int(found.sum()), 1)


def check_clip(keypoints: Any, num_joints: int | None, margin: float = FRAME_MARGIN) -> ClipCheck:
    """Check one clip's normalised points ``[T, J, C]`` (x, y, confidence) against a layout of
    ``num_joints``, with ``margin`` (``[data] frame_margin``) around the frame."""
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
    outside, found = outside_frame(points, margin)
    beyond = int(outside.sum())
    if beyond:
        share = beyond / max(int(found.sum()), 1)
        values = points[..., :2][outside]
        problems.append(f"{beyond} of {int(found.sum())} found joints ({share:.1%}) beyond the frame by more "
                        f"than {margin:g} of its size (coordinates {float(values.min()):.2f} to "
                        f"{float(values.max()):.2f}; the frame is [-1, 1])")
        if share > CONTRADICTION:
            problems.append(UNFIT)
            return ClipCheck(tuple(problems), (), None)
    bound = 1.0 + 2.0 * margin
    repaired = points
    if problems:
        repaired = torch.where(finite[..., None], points, torch.zeros((), dtype=points.dtype))
        repaired[..., 2] = repaired[..., 2].clamp(0.0, 1.0)
        repaired[..., :2] = torch.where(outside[..., None], repaired[..., :2].clamp(-1.0, 1.0), repaired[..., :2])
        repaired[..., 2] = torch.where(outside, torch.zeros((), dtype=points.dtype), repaired[..., 2])
    if not bool((repaired[..., 2] > 0).any()):
        problems.append("no point with a confidence above 0")
        return ClipCheck(tuple(problems), (), None)
    missing = (repaired[..., 2] <= 0)[..., None]
    if bool((missing & (repaired[..., :2].abs() > bound)).any()):  # masked, but the encoder reads them
        repaired = repaired.clone()
        repaired[..., :2] = torch.where(missing, repaired[..., :2].clamp(-bound, bound), repaired[..., :2])
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
                     where: str, margin: float = FRAME_MARGIN) -> list[Sample]:
    """The usable samples of ``samples`` under ``policy`` (see the module docs); ``where`` names the
    source and split in messages, ``margin`` is ``[data] frame_margin``."""
    if policy not in POLICIES:
        raise DataError(f"data.invalid: {policy!r} is not a policy; choose one of {', '.join(POLICIES)}")
    kept: list[Sample] = []
    refused: list[str] = []
    repaired: list[str] = []
    unusable: list[str] = []  # wrong joint count or shape, dropped under "repair"
    for sample in samples:
        check = check_clip(sample.keypoints, num_joints, margin)
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
        if not problems:  # (a missing joint's coordinates may have been clamped into range)
            kept.append(attrs.evolve(sample, keypoints=check.keypoints)
                        if check.keypoints is not None and check.keypoints is not sample.keypoints else sample)
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
                else "set [data] invalid = \"repair\" to zero non-finite points, clip confidences, clamp joints "
                "beyond the frame (confidence 0), replace bad bytes and drop unusable clips and clips with the "
                "wrong joint count (docs/data.md)")
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


def validate_clip(keypoints: Any, *, num_joints: int | None, policy: str, label: str,
                  margin: float = FRAME_MARGIN) -> Any:
    """One clip's points under ``policy`` (``mska predict``'s input): the points, repaired where
    ``policy`` is ``"repair"``, or ``None`` for a clip that cannot be used under ``"repair"`` (no frame,
    no usable point), reported on stderr. Under ``"refuse"``, or for a wrong joint count, a clip with a
    problem is a :class:`~mska_core.errors.DataError` naming ``label``."""
    if policy not in POLICIES:
        raise DataError(f"data.invalid: {policy!r} is not a policy; choose one of {', '.join(POLICIES)}")
    check = check_clip(keypoints, num_joints, margin)
    if check.fatal:
        raise DataError(f"{label}: {'; '.join(check.fatal)}")
    if check.ok:
        return check.keypoints
    problems = "; ".join(check.problems)
    if policy == "refuse" and problems.endswith(UNFIT):  # no repair keeps such a clip
        raise DataError(f"{label}: {problems}; check the frame size the clip is normalised with (docs/data.md)")
    if policy == "refuse":
        raise DataError(f"{label}: {problems}; use --invalid repair to zero non-finite points, clip "
                        "confidences and clamp joints beyond the frame (docs/data.md)")
    _report([f"{label}: {problems}; {'dropped' if check.keypoints is None else 'repaired'}"], "warning", label)
    return check.keypoints


def validate_corpus(corpus: Corpus, *, num_joints: int | None, policy: str,
                    margin: float = FRAME_MARGIN) -> Corpus:
    """:func:`validate_samples` over the three splits of ``corpus``."""
    splits = {split: validate_samples(corpus.split(split), num_joints=num_joints, policy=policy,
                                      where=f"{corpus.source} ({split})", margin=margin)
              for split in SPLITS}
    return attrs.evolve(corpus, **splits)

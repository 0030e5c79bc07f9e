"""Encoding a whole clip for prediction, however long: at once, or in overlapping windows.

Evaluation keeps the centre ``[data.augment] max_frames`` frames of a longer clip (the length the
model was trained on); prediction never cuts a clip. :func:`prediction_frames` keeps every frame (as
evaluation does for a clip within ``max_frames``, the length is trimmed to a multiple of 4, dropping
at most 3 frames at the end).

The core encoder has no fixed length in time (temporal convolutions, joint attention pooled over the
clip's frames), so a clip is encoded whole by default. With a window of ``W`` frames and an overlap
of ``O`` frames (both multiples of the encoder's downsampling in time, 4 for the paper's blocks):

- windows start every ``W - O`` frames; the last one ends at the clip's end (it may overlap its
  neighbour by more than ``O``); a clip of at most ``W`` frames is one window, encoded whole;
- each window is encoded alone, as a clip of its own;
- the per-frame outputs (logits of every head, gloss features, stream and head features) are
  stitched at the middle of each overlap: an output frame is taken from the window in which it lies
  farther from the window's edge, so every output frame comes from exactly one window and no window's
  edge (where its convolutions saw padding) is used when a neighbour covers that frame better;
- the stitched outputs are decoded as a whole clip's are: CTC over the stitched logits of each head
  and of the ensemble, and the translation from the stitched gloss features.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs

#: The overlap of two windows when only the window's length is given: a quarter of it.
DEFAULT_OVERLAP_SHARE = 4


@attrs.frozen
class Window:
    """One window: the frames ``[start, stop)`` it encodes and the output frames ``[keep_start,
    keep_stop)`` (indices in the whole clip's output) that the stitched output takes from it."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def uncapped(augment_cfg: Any, num_frames: int) -> Any:
    """``[data.augment]`` with a ``max_frames`` cap no clip of ``num_frames`` frames reaches: evaluation's
    frame selection then keeps every frame."""
    from mska_core.data.augment import MULTIPLE

    return attrs.evolve(augment_cfg, max_frames=max(augment_cfg.max_frames, num_frames + MULTIPLE))


def prediction_frames(num_frames: int, augment_cfg: Any) -> Any:
    """Every frame of a clip, as evaluation selects them but without its ``max_frames`` cap: a long
    tensor of indices (trimmed to a multiple of 4; a clip under 4 frames repeats its last frame)."""
    from mska_core.data.augment import select_frames

    return select_frames(num_frames, uncapped(augment_cfg, num_frames), None, train=False)


def default_overlap(window: int, factor: int) -> int:
    """:data:`DEFAULT_OVERLAP_SHARE` of ``window``, rounded down to a multiple of ``factor``."""
    return window // DEFAULT_OVERLAP_SHARE // factor * factor


def plan_windows(frames: int, window: int, overlap: int, factor: int) -> list[Window]:
    """The windows that cover ``frames`` frames (a multiple of ``factor``, the encoder's downsampling
    in time) and which output frames each contributes; see the module's description."""
    from mska_core.errors import DataError

    if window <= 0 or window % factor or overlap < 0 or overlap % factor or overlap >= window:
        raise DataError(f"--window {window} --overlap {overlap}: both must be multiples of {factor} (the "
                        f"encoder's downsampling in time), with 0 <= overlap < window")
    if frames <= window:
        return [Window(0, frames, 0, frames // factor)]
    starts = list(range(0, frames - window, window - overlap)) + [frames - window]
    starts = sorted(set(starts))
    cuts = [0] + [(later + earlier + window) // 2 // factor for earlier, later in itertools.pairwise(starts)] \
        + [frames // factor]
    return [Window(start, start + window, cuts[i], cuts[i + 1]) for i, start in enumerate(starts)]


def time_factor(encoder: Any, window: int) -> int:
    """Frames per output frame of ``encoder`` (4 for the paper's blocks)."""
    from mska_core.data.augment import MULTIPLE
    from mska_core.errors import DataError

    steps = int(encoder.output_length(window))
    factor = window // max(steps, 1)
    if factor < 1 or steps * factor != window or window % MULTIPLE:
        raise DataError(f"--window {window}: the encoder turns it into {steps} output frames, not a whole "
                        f"division; choose a multiple of {MULTIPLE}")
    return factor


def encode_clip(encoder: Any, clips: Any, *, window: int | None = None, overlap: int | None = None) -> Any:
    """The :class:`~mska_core.encoder.EncoderOutput` of a one-clip
    :class:`~mska_core.encoder.ClipBatch`: encoded whole when ``window`` is ``None`` or the clip fits
    in it, else window by window and stitched (``overlap`` defaults to a quarter of the window)."""
    frames = int(clips.keypoints.shape[1])
    if window is None or frames <= window:
        return encoder(clips)
    factor = time_factor(encoder, window)
    if overlap is None:
        overlap = default_overlap(window, factor)
    return stitch(encoder, clips, plan_windows(frames, window, overlap, factor), factor)


def stitch(encoder: Any, clips: Any, windows: list[Window], factor: int) -> Any:
    """Encode each window of a one-clip batch alone and join their outputs (see the module)."""
    import torch

    from mska_core.encoder import EncoderOutput

    if clips.keypoints.shape[0] != 1:
        raise ValueError("windows are for one clip at a time")
    parts = []
    for w in windows:
        crops = None if clips.crops is None else {k: v[:, w.start:w.stop] for k, v in clips.crops.items()}
        present = None if clips.crop_present is None else {
            k: v[:, w.start:w.stop] if v.ndim == 2 else v for k, v in clips.crop_present.items()}
        part = encoder(attrs.evolve(clips, keypoints=clips.keypoints[:, w.start:w.stop],
                                    lengths=torch.tensor([w.stop - w.start]), crops=crops, crop_present=present))
        offset = w.start // factor
        parts.append((slice(w.keep_start - offset, w.keep_stop - offset), part))

    def joined(field: str) -> dict[str, Any]:
        names = getattr(parts[0][1], field)
        return {name: torch.cat([getattr(p, field)[name][:, keep] for keep, p in parts], 1) for name in names}

    steps = windows[-1].keep_stop
    device = clips.keypoints.device
    return EncoderOutput(
        stream_features=joined("stream_features"), head_inputs=joined("head_inputs"),
        lengths=torch.tensor([steps], device=device), logits=joined("logits"),
        gloss_features=joined("gloss_features"), mask=torch.ones(1, steps, dtype=torch.bool, device=device),
    )

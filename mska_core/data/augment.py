"""Temporal augmentation of clips, as the MSKA reference does it, and the optional rotation.

Training: a length is drawn uniformly between ``speed_min`` and ``speed_max`` times the clip's length
(within ``max_frames``), rounded up to a multiple of 4; frames are drawn without replacement (faster)
or all frames plus random repeats (slower), in temporal order. With ``rotation`` > 0 the points are
rotated about the origin by an angle in ``[-rotation, rotation]`` degrees with probability 1/2, as the
MSKA reference does (its ``random_move``, 15 degrees): the angle is drawn uniformly, then a coin; the
x, y of every joint of every frame become ``(x cos a + y sin a, -x sin a + y cos a)``. The origin is
the frame's centre for normalised coordinates (MSKA pickles, the directory format with
``normalize``, the synthetic corpus). The reference draws one angle per batch; here every clip draws
its own (the same distribution per clip), so that a clip's augmentation depends only on its seed.

Evaluation: clips longer than ``max_frames`` keep their centre; the length is cut to a multiple of 4.

Every draw comes from the ``torch.Generator`` passed in, so a run seeded per (epoch, sample) repeats
exactly, whatever the worker or process that prepares the sample.
"""

from __future__ import annotations

import math
from typing import Any

MULTIPLE = 4  # the encoder downsamples time by 4


def select_frames(num_frames: int, cfg: Any, generator: Any, *, train: bool) -> Any:
    """Frame indices (a long tensor, in temporal order) for a clip of ``num_frames`` frames."""
    import torch

    cap = max(MULTIPLE, cfg.max_frames - cfg.max_frames % MULTIPLE)
    if not train or not cfg.enabled:
        index = torch.arange(num_frames)
        if num_frames > cap:
            start = (num_frames - cap) // 2
            index = index[start:start + cap]
        keep = max(MULTIPLE, len(index) - len(index) % MULTIPLE)
        if keep > len(index):  # a clip shorter than 4 frames: repeat its last frame
            index = torch.cat([index, index[-1:].repeat(keep - len(index))])
        return index[:keep]
    low = min(max(1, int(cfg.speed_min * num_frames)), cap)
    high = max(low, min(cap, int(cfg.speed_max * num_frames)))
    length = int(torch.randint(low, high + 1, (1,), generator=generator))
    length = min(cap, length + (-length) % MULTIPLE)
    if length <= num_frames:
        index = torch.randperm(num_frames, generator=generator)[:length]
    else:
        extra = torch.randint(num_frames, (length - num_frames,), generator=generator)
        index = torch.cat([torch.arange(num_frames), extra])
    return index.sort().values


def rotate(keypoints: Any, max_degrees: float, generator: Any) -> Any:
    """With probability 1/2, ``keypoints`` ``[T, J, C]`` rotated about the origin by an angle drawn
    uniformly in ``[-max_degrees, max_degrees]`` (the reference's draw order and direction)."""
    import torch

    u, coin = torch.rand(2, generator=generator).tolist()
    if max_degrees <= 0 or coin < 0.5:
        return keypoints
    theta = math.radians((2 * u - 1) * max_degrees)
    c, s = math.cos(theta), math.sin(theta)
    matrix = torch.tensor([[c, s], [-s, c]], dtype=keypoints.dtype)
    out = keypoints.clone()
    out[..., :2] = keypoints[..., :2] @ matrix.T
    return out


def augment(keypoints: Any, cfg: Any, generator: Any, *, train: bool) -> tuple[Any, Any]:
    """The clip's selected frames (and the indices used), rotated when training asks for it."""
    index = select_frames(keypoints.shape[0], cfg, generator, train=train)
    out = keypoints[index]
    if train and cfg.enabled and cfg.rotation > 0:
        out = rotate(out, cfg.rotation, generator)
    return out, index

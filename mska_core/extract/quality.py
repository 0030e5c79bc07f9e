"""What ``mska extract`` says about a clip before anyone trains on it: how much of each stream's part
was found, how many joints lie beyond the frame, and whether the recording was mirrored.

- **Found fraction** of a stream: the share of a clip's frames in which at least one of the stream's
  crop-region joints was found (confidence above 0). A frame where none was found keeps a held crop
  (the last good box, or the frame's centre square) so that crop ``i`` stays frame ``i``, but it is
  marked missing in ``boxes/ID.npz`` and no crop of it is learned from (``docs/data.md``).
- **Outside fraction**: the share of the clip's found joints beyond the frame by more than
  ``[data] frame_margin`` of its size (the same check corpus validation makes,
  :func:`mska_core.data.validate.outside_fraction`).
- **Mirrored recordings** (``[extract] mirrored``, or the annotation table's ``mirrored`` column):
  the frames are flipped back before keypoints are estimated or crops are cut, and keypoints read
  from files are flipped (x -> width - x) and relabelled through the layout's mirror pairs, so that
  ``hand_left`` is the signer's left hand in keypoints and crops alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def found_fractions(boxes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Per stream, the fraction of frames whose part was found (from the trackers' missing flags)."""
    return {name: float(1.0 - missing.mean()) if missing.size else 0.0 for name, (_, missing) in boxes.items()}


def outside_share(points: np.ndarray, width: int, height: int, margin: float) -> float:
    """The fraction of found joints of pixel points ``[T, J, 3]`` beyond the frame by more than ``margin``."""
    from mska_core.data.contract import normalize_pixel_array
    from mska_core.data.validate import outside_fraction

    return outside_fraction(normalize_pixel_array(points, width, height), margin)


def unmirror_points(points: np.ndarray, layout: Any, width: int) -> np.ndarray:
    """Pixel points ``[T, J, 3]`` of a mirrored recording as the un-mirrored frame shows them: x of
    every found joint becomes ``width - x``, and the layout's mirror pairs trade places."""
    out = np.array(points, dtype=np.float32, copy=True)
    found = out[..., 2] > 0
    out[..., 0] = np.where(found, width - out[..., 0], out[..., 0])
    return np.ascontiguousarray(out[:, list(layout.mirror_order())])


def unmirror_frame(rgb: np.ndarray) -> np.ndarray:
    """An RGB frame ``[H, W, 3]`` flipped left to right."""
    return np.ascontiguousarray(rgb[:, ::-1])


def describe_found(found: Mapping[str, float]) -> str:
    """``face 100%, hand_left 0%, hand_right 34%``."""
    return ", ".join(f"{name} {value:.0%}" for name, value in found.items())

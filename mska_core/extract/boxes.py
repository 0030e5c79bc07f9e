"""Square crop boxes from a stream's :class:`~mska_core.records.CropRegion`, frame by frame.

The box of a frame is the bounding box of the region's joints that were found (confidence > 0 and
finite coordinates), its longer side multiplied by ``scale`` and at least ``min_size`` pixels, centred
on the bounding box. It may reach past the frame's borders; the crop is padded there.

A frame where none of the region's joints were found keeps the last good box and is marked missing.
Frames before the first good box use the largest square centred in the frame (also marked missing),
so extraction never has to look ahead.
"""

from __future__ import annotations

import attrs
import numpy as np

from mska_core.records import CropRegion


@attrs.frozen
class StreamCrop:
    """One stream to crop: its name and where its crop lies in a frame. Plain data (pickles)."""

    name: str
    region: CropRegion


@attrs.frozen
class Box:
    """A square in frame pixels: top-left corner and side (integers; may lie partly outside)."""

    x: int
    y: int
    side: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)``, as Pillow's ``Image.crop`` takes it."""
        return (self.x, self.y, self.x + self.side, self.y + self.side)


def region_box(points: np.ndarray, joints: tuple[int, ...], scale: float, min_size: float) -> Box | None:
    """The box around ``points[joints]`` (``[J, 3]``: x, y, confidence), or ``None`` if none was found."""
    chosen = points[list(joints)]
    found = (chosen[:, 2] > 0) & np.isfinite(chosen[:, :2]).all(axis=1)
    if not found.any():
        return None
    xy = chosen[found, :2].astype(np.float64)
    low, high = xy.min(axis=0), xy.max(axis=0)
    centre = (low + high) / 2
    side = max(float((high - low).max()) * scale, min_size)
    side_px = max(int(round(side)), 1)
    return Box(x=int(round(centre[0] - side_px / 2)), y=int(round(centre[1] - side_px / 2)), side=side_px)


def centre_box(width: int, height: int) -> Box:
    """The largest square centred in a ``width`` × ``height`` frame."""
    side = min(width, height)
    return Box(x=(width - side) // 2, y=(height - side) // 2, side=side)


class BoxTracker:
    """The boxes of one stream through a clip: the frame's own box, else the last good one.

    ``boxes`` and ``missing`` grow by one per :meth:`update`; they are written beside the crops so a
    user can tell a real crop from a held one.
    """

    def __init__(self, crop: StreamCrop, layout: str, width: int, height: int) -> None:
        self.joints = crop.region.joints_for(layout)
        self.scale = crop.region.scale
        self.min_size = crop.region.min_size
        self.last = centre_box(width, height)
        self.boxes: list[tuple[int, int, int]] = []
        self.missing: list[bool] = []

    def update(self, points: np.ndarray) -> Box:
        """The box for the next frame, given its points ``[J, 3]``."""
        box = region_box(points, self.joints, self.scale, self.min_size)
        self.missing.append(box is None)
        if box is not None:
            self.last = box
        self.boxes.append((self.last.x, self.last.y, self.last.side))
        return self.last

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``int32 [T, 3]`` boxes (x, y, side) and ``bool [T]`` missing flags."""
        return (np.asarray(self.boxes, dtype=np.int32).reshape(-1, 3),
                np.asarray(self.missing, dtype=bool))

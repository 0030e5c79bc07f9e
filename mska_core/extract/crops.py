"""Cutting a square crop out of a frame, resizing it, and writing it as a JPEG file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mska_core.extract.boxes import Box

#: Name of the crop of frame ``index`` (0-based) in a clip's crop folder.
CROP_NAME = "{index:06d}.jpg"


def cut_crop(image: Any, box: Box, size: int) -> Any:
    """The ``size`` × ``size`` crop of a Pillow ``image`` inside ``box``; black where the box leaves it.

    Resampling is bilinear with Pillow's reducing step for large shrinks (``reducing_gap``), which
    keeps downsizing quick and free of aliasing.
    """
    from PIL import Image

    if _within(box, image.size):  # resize straight from the frame, no intermediate copy
        return image.resize((size, size), Image.Resampling.BILINEAR, box=box.as_tuple(), reducing_gap=2.0)
    return image.crop(box.as_tuple()).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)


def write_jpeg(crop: Any, folder: Path, index: int, quality: int) -> Path:
    """Write ``crop`` as frame ``index`` of a clip's crop folder."""
    path = folder / CROP_NAME.format(index=index)
    crop.save(path, format="JPEG", quality=quality)
    return path


def _within(box: Box, size: tuple[int, int]) -> bool:
    width, height = size
    return box.x >= 0 and box.y >= 0 and box.x + box.side <= width and box.y + box.side <= height


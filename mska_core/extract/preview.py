"""Contact sheets: look at what will be trained on before training (``mska extract --preview``).

One PNG per clip, ``OUT/preview/ID.png``: a row per crop stream, a column per sampled frame (at most
:data:`COLUMNS`, evenly spaced over the clip), each cell the crop as written. A frame where the
stream's part was not found (``boxes/ID.npz``'s ``STREAM_missing``) is drawn dimmed, framed in red
and crossed out: its crop is a held one (the last good box, or the frame's centre) that no training
reads. The top line gives the clip's id, its frame count and each stream's found fraction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: The most frames a sheet shows (evenly spaced over the clip).
COLUMNS = 12
#: The side of a cell, in pixels.
CELL = 96
#: Room for the stream names (left) and the title and frame numbers (top), in pixels.
LABEL_WIDTH, HEADER_HEIGHT = 96, 34
MISSING_COLOUR = (220, 30, 30)


def preview_path(root: Path, clip_id: str) -> Path:
    """Where a clip's contact sheet goes."""
    return Path(root) / "preview" / f"{clip_id}.png"


def sampled_frames(frames: int, columns: int = COLUMNS) -> list[int]:
    """At most ``columns`` frame indices spread evenly over ``frames`` frames (first and last included)."""
    if frames <= columns:
        return list(range(frames))
    return sorted({int(round(i * (frames - 1) / (columns - 1))) for i in range(columns)})


def write_preview(folder: Any, row: Any) -> Path:
    """Write the contact sheet of the finished clip ``row`` (a :class:`~mska_core.extract.outputs.ClipRow`)
    of the output ``folder``; return its path."""
    from PIL import Image, ImageDraw

    from mska_core.data.crop_files import CropFolders
    from mska_core.io import atomic_write_bytes

    frames = sampled_frames(row.frames)
    streams = list(row.streams)
    with np.load(folder.boxes(row.id), allow_pickle=False) as boxes:
        missing = {name: boxes[f"{name}_missing"] for name in streams if f"{name}_missing" in boxes.files}
    crops = CropFolders(folder.crops_root)
    width = LABEL_WIDTH + CELL * max(len(frames), 1)
    height = HEADER_HEIGHT + CELL * max(len(streams), 1)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    found = ", ".join(f"{name} {row.found[name]:.0%}" for name in streams if name in row.found)
    draw.text((4, 2), f"{row.id}: {row.frames} frames; found {found}", fill=(0, 0, 0))
    for column, frame in enumerate(frames):
        draw.text((LABEL_WIDTH + column * CELL + 4, HEADER_HEIGHT - 14), f"#{frame}", fill=(0, 0, 0))
    for line, stream in enumerate(streams):
        top = HEADER_HEIGHT + line * CELL
        draw.text((4, top + CELL // 2 - 6), stream, fill=(0, 0, 0))
        images = crops.read(stream, row.id, frames).permute(0, 2, 3, 1).numpy()  # [F, S, S, 3]
        for column, (frame, image) in enumerate(zip(frames, images)):
            left = LABEL_WIDTH + column * CELL
            cell = Image.fromarray(image).resize((CELL - 4, CELL - 4))
            lost = stream in missing and bool(missing[stream][frame])
            if lost:
                cell = Image.blend(cell, Image.new("RGB", cell.size, (255, 255, 255)), 0.6)
            sheet.paste(cell, (left + 2, top + 2))
            if lost:
                draw.rectangle((left + 1, top + 1, left + CELL - 2, top + CELL - 2), outline=MISSING_COLOUR, width=3)
                draw.line((left + 4, top + 4, left + CELL - 5, top + CELL - 5), fill=MISSING_COLOUR, width=2)
                draw.line((left + 4, top + CELL - 5, left + CELL - 5, top + 4), fill=MISSING_COLOUR, width=2)
                draw.text((left + 6, top + CELL - 18), "missing", fill=MISSING_COLOUR)
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return atomic_write_bytes(preview_path(folder.root, row.id), buffer.getvalue())

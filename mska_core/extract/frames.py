"""Frame folders as clips: a folder that directly holds images is one clip, its frames in name order.

PHOENIX-2014T (``fullFrame-210x260px/SPLIT/NAME/images0001.png``), PHOENIX-2014
(``.../NAME/1/NAME.avi_pid0_fn000000-0.png``) and CSL-Daily (folders of JPEGs) ship their videos so.

- The clip id is the folder's name, or its parent's when the name is only digits (PHOENIX-2014's
  ``NAME/1/``).
- Frames are the folder's ``.png``, ``.jpg`` and ``.jpeg`` files in natural order: the numbers in the
  names compare by value (``images2.png`` before ``images10.png``).
- A folder has no frame rate: ``mska extract --fps N`` gives it (25 when not given, with a notice).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mska_core.data.contract import natural_key
from mska_core.errors import DataError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
#: The frame rate of a frame folder when ``--fps`` does not give one (PHOENIX's and CSL-Daily's).
DEFAULT_FOLDER_FPS = 25.0


def frame_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural order of their names."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    files = [p for p in entries if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def is_frame_folder(folder: Path) -> bool:
    """Whether ``folder`` directly holds at least one image file."""
    try:
        return any(p.suffix.lower() in FRAME_SUFFIXES and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def frame_folder_id(folder: Path) -> str:
    """The clip id of a frame folder: its name, or its parent's when its name is only digits."""
    name = folder.name
    return folder.parent.name if name.isdigit() and folder.parent.name else name


class FrameFolderReader:
    """A frame folder opened like a video: :attr:`info` and :meth:`frames`."""

    def __init__(self, folder: Path, fps: float) -> None:
        from mska_core.extract.videos import VideoInfo

        self.folder = folder
        self.files = frame_files(folder)
        if not self.files:
            raise DataError(f"{folder}: the frame folder holds no {', '.join(FRAME_SUFFIXES)} files")
        width, height = _size(self.files[0])
        self.info = VideoInfo(fps=float(fps), width=width, height=height, frames=len(self.files))

    def frames(self, start: float = 0.0) -> Iterator[tuple[int, float, Any]]:
        """``(frame index, time in seconds, uint8 RGB [H, W, 3])`` of every frame at or after ``start``
        seconds, one at a time (the frames before it are not read)."""
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        for index, path in enumerate(self.files):
            if index / self.info.fps < start:
                continue
            try:
                with Image.open(path) as image:
                    rgb = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"{path}: frame {index} of {self.folder} is not a readable image "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
            if rgb.shape[:2] != (self.info.height, self.info.width):
                raise DataError(f"{path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the folder's first frame "
                                f"{self.info.width}x{self.info.height}; the frames of a clip share one size")
            yield index, index / self.info.fps, rgb

    def close(self) -> None:
        """Nothing is held open between frames."""


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__})") from None

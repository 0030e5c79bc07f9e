"""Finding videos and decoding them with PyAV, one frame at a time.

A clip's id is its video's file name without the suffix (``signer01/hello.mp4`` is ``hello``); two
videos with one id are an error, since every output file is named by the id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import DataError

#: Suffixes searched for in folders (a file named on the command line is taken whatever its suffix).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@attrs.frozen
class Video:
    """One video to extract: its clip id and its path."""

    id: str
    path: Path


@attrs.frozen
class VideoInfo:
    """What the container says about the video stream (``frames`` is 0 when it does not say)."""

    fps: float
    width: int
    height: int
    frames: int


def find_videos(paths: Sequence[str | Path]) -> list[Video]:
    """The videos named by ``paths`` (files, or folders searched recursively), sorted by id."""
    found: dict[str, Video] = {}
    for given in paths:
        root = Path(given)
        if root.is_dir():
            candidates = sorted(p for p in root.rglob("*")
                                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif root.is_file():
            candidates = [root]
        else:
            raise DataError(f"video {str(root)!r} does not exist; give video files or folders of videos")
        for path in candidates:
            video = Video(id=path.stem, path=path)
            other = found.get(video.id)
            if other is not None and other.path.resolve() != path.resolve():
                raise DataError(f"two videos have the clip id {video.id!r}: {other.path} and {path}; "
                                "rename one (outputs are named by the file name without its suffix)")
            found[video.id] = video
    return [found[key] for key in sorted(found)]


def open_video(path: str | Path) -> Any:
    """An open PyAV container with a video stream (threaded decoding); :class:`DataError` if unreadable."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: the file has no video stream")
    container.streams.video[0].thread_type = "AUTO"
    return container


def video_info(container: Any) -> VideoInfo:
    """Frame rate, size and (if the container records it) frame count of the first video stream."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return VideoInfo(fps=float(rate) if rate else 0.0, width=int(stream.codec_context.width),
                     height=int(stream.codec_context.height), frames=int(stream.frames or 0))


def decode_frames(container: Any, path: str | Path) -> Iterator[Any]:
    """The frames of the first video stream as PyAV ``VideoFrame`` objects, decoded one by one.

    A decoding error part-way is a :class:`DataError` naming the file and the frame.
    """
    import av

    index = 0
    try:
        for frame in container.decode(video=0):
            yield frame
            index += 1
    except (av.error.FFmpegError, ValueError) as exc:
        raise DataError(f"{path}: decoding failed at frame {index} ({_reason(exc)})") from None


def rgb_array(frame: Any) -> Any:
    """A decoded frame as a ``uint8`` numpy array ``[H, W, 3]`` in RGB order."""
    return frame.to_ndarray(format="rgb24")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

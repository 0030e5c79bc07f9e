"""Finding the inputs of ``mska extract`` (videos and frame folders) and reading them one frame at a
time: videos decoded with PyAV, frame folders (:mod:`mska_core.extract.frames`) read with Pillow.

A clip's id is its video's file name without the suffix (``signer01/hello.mp4`` is ``hello``), or its
frame folder's id; two inputs with one id are an error, since every output file is named by the id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import DataError

#: Suffixes searched for in folders (a file named on the command line is taken whatever its suffix).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@attrs.frozen
class Video:
    """One input to extract: its clip id, its path, and whether it is a video file (``"video"``) or a
    frame folder (``"frames"``)."""

    id: str
    path: Path
    kind: str = "video"


@attrs.frozen
class VideoInfo:
    """What the container says about the video stream (``frames`` is 0 when it does not say)."""

    fps: float
    width: int
    height: int
    frames: int


def find_videos(paths: Sequence[str | Path]) -> list[Video]:
    """The videos and frame folders named by ``paths`` (video files, frame folders, or folders searched
    recursively for both), sorted by id."""
    from mska_core.extract.frames import frame_folder_id, is_frame_folder

    found: dict[str, Video] = {}
    for given in paths:
        root = Path(given)
        if root.is_dir() and is_frame_folder(root):
            candidates = [Video(frame_folder_id(root), root, "frames")]
        elif root.is_dir():
            candidates = []
            for folder, subfolders, files in os.walk(root):
                subfolders.sort()
                here = Path(folder)
                if here != root and is_frame_folder(here):
                    candidates.append(Video(frame_folder_id(here), here, "frames"))
                candidates.extend(Video(Path(name).stem, here / name) for name in sorted(files)
                                  if Path(name).suffix.lower() in VIDEO_SUFFIXES)
        elif root.is_file():
            candidates = [Video(root.stem, root)]
        else:
            raise DataError(f"video {str(root)!r} does not exist; give video files, frame folders or folders of "
                            "them")
        for video in candidates:
            other = found.get(video.id)
            if other is not None and other.path.resolve() != video.path.resolve():
                raise DataError(f"two inputs have the clip id {video.id!r}: {other.path} and {video.path}; "
                                "rename one (outputs are named by the clip id)")
            found[video.id] = video
    return [found[key] for key in sorted(found)]


class VideoReader:
    """A video file opened for reading: :attr:`info` and :meth:`frames`, like a frame folder's reader.

    :attr:`decoded` counts the frames decoded so far (a reader that seeks decodes fewer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.container = open_video(path)
        self.info = video_info(self.container)
        self.decoded = 0

    def frames(self, start: float = 0.0) -> Iterator[tuple[int, float, Any]]:
        """``(frame index, time in seconds from the stream's start, uint8 RGB [H, W, 3])`` of every frame
        at or after ``start`` seconds.

        From ``start`` 0 every frame is decoded and counted in decoding order. Later, the reader seeks
        to the keyframe before ``start`` and decodes forward from there, counting frames from their
        timestamps (``round(time × frame rate)``, exact for the constant frame rate of recordings): the
        frames and indices are those decoding from the start gives (:func:`seek_position` says where it
        seeks; a keyframe found past ``start`` makes it decode from the very start instead)."""
        stream = self.container.streams.video[0]
        if start > 0 and stream.time_base is not None and self.info.fps > 0:
            import av

            first = stream.start_time or 0
            try:
                self.container.seek(seek_position(start, first, stream.time_base, self.info.fps), stream=stream,
                                    backward=True, any_frame=False)
                yield from self._decode(start, by_time=True)
                return
            except (_PastStart, av.error.FFmpegError):
                self.container.seek(first, stream=stream, backward=True, any_frame=False)
        yield from self._decode(start, by_time=False)

    def _decode(self, start: float, *, by_time: bool) -> Iterator[tuple[int, float, Any]]:
        stream = self.container.streams.video[0]
        base, first = stream.time_base, stream.start_time or 0
        index = -1
        for frame in decode_frames(self.container, self.path):
            self.decoded += 1
            time = float((frame.pts - first) * base) if frame.pts is not None and base is not None else None
            if by_time:
                if index < 0 and (time is None or time > start):
                    raise _PastStart  # nothing yielded yet: decode from the start instead
                index = round(time * self.info.fps) if time is not None else index + 1
                if time is None:
                    time = index / self.info.fps
            else:
                index += 1
                if time is None:
                    time = index / self.info.fps if self.info.fps else float(index)
            if time >= start:
                yield index, time, rgb_array(frame)

    def close(self) -> None:
        self.container.close()


class _PastStart(Exception):
    """Seeking landed past the first frame asked for (no keyframe before it was found)."""


def seek_position(start: float, first: int, base: Any, fps: float) -> int:
    """The timestamp (in the stream's ``base`` units, the stream starting at ``first``) a reader seeks
    to for a segment starting at ``start`` seconds: half a frame before it, so that the keyframe found
    is at or before the segment's first frame."""
    return first + max(0, int((start - 0.5 / fps) / base))


def open_input(video: Video, fps: float | None = None) -> Any:
    """A reader of ``video`` (:class:`VideoReader` or a frame folder's reader); ``fps`` is the frame
    rate of a frame folder (:data:`~mska_core.extract.frames.DEFAULT_FOLDER_FPS` when ``None``)."""
    from mska_core.extract.frames import DEFAULT_FOLDER_FPS, FrameFolderReader

    if video.kind == "frames":
        return FrameFolderReader(video.path, fps or DEFAULT_FOLDER_FPS)
    return VideoReader(video.path)


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

"""One clip, streamed: decode a frame, find or look up its points, cut each stream's crop.

:func:`clip_arrays` is the one extraction path: it decodes a video frame by frame, takes each frame's
points from a keypoint file or estimates them, follows every crop stream's box, and hands the frame and
its boxes to a *crop sink*. ``mska extract`` (:func:`extract_clip`) gives it a
:class:`~mska_core.extract.crops.CropWriter` and writes the arrays; ``mska predict VIDEO`` gives it a
:class:`~mska_core.extract.crops.CropCollector` and keeps everything in memory.

``mska extract`` writes everything under ``OUT/.partial/ID`` and moves it into place only when the
whole clip is there (:meth:`~mska_core.extract.outputs.OutputFolder.publish`). A clip that fails raises
:class:`ClipFailed` with a one-line reason and leaves nothing behind.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import numpy as np

from mska_core.errors import DataError, MskaError
from mska_core.extract.boxes import BoxTracker, StreamCrop
from mska_core.extract.crops import CropWriter
from mska_core.extract.keypoints import EstimatorRef, KeypointRef, read_keypoints
from mska_core.extract.outputs import ClipRow, OutputFolder
from mska_core.extract.videos import Video, VideoInfo, decode_frames, open_video, rgb_array, video_info

#: How many frames pass between two progress reports.
PROGRESS_EVERY = 8


class ClipFailed(MskaError):
    """A clip could not be extracted; the message is the one-line reason."""


@attrs.frozen
class ClipJob:
    """Everything a worker needs to extract one clip (plain data: it is sent to worker processes)."""

    video: Video
    keypoints: KeypointRef | EstimatorRef
    streams: tuple[StreamCrop, ...]
    named_streams: bool  # the user chose the streams: one without joints in the clip's layout is an error


@attrs.frozen
class ExtractOptions:
    """Settings shared by every clip of a run."""

    out: Path
    crop_size: int
    jpeg_quality: int
    layouts: Mapping[str, Any]  # registered layouts by name (KeypointLayout records)
    layout: str | None = None  # forced layout of keypoint files
    plugins: Any = None  # the config's [plugins] table, for the registry of worker processes


def extract_clip(job: ClipJob, options: ExtractOptions, estimator: Any = None,
                 on_frames: Callable[[int], None] | None = None) -> ClipRow:
    """Extract ``job``'s clip into ``options.out`` and return its ``clips.tsv`` row.

    ``estimator`` is the built estimator when ``job.keypoints`` is an :class:`EstimatorRef`;
    ``on_frames(n)`` is told about every ``n`` frames done.
    """
    folder = OutputFolder(options.out)
    clip_id = job.video.id
    folder.discard(clip_id, [crop.name for crop in job.streams])
    partial = folder.partial(clip_id)
    try:
        row = _extract(job, options, estimator, on_frames or (lambda n: None), partial)
        folder.publish(clip_id, row.streams)
    except BaseException as exc:  # nothing of a failed or interrupted clip stays behind
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, (DataError, OSError)):  # unreadable input or a full disk: this clip fails
            raise ClipFailed(str(exc)) from None
        raise
    return row


def _extract(job: ClipJob, options: ExtractOptions, estimator: Any, on_frames: Callable[[int], None],
             partial: Path) -> ClipRow:
    def writer(streams: Sequence[str]) -> CropWriter:
        folders = {name: partial / "crops" / name for name in streams}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return CropWriter(folders, options.crop_size, options.jpeg_quality)

    clip = clip_arrays(job, layouts=options.layouts, layout=options.layout, estimator=estimator, sink=writer,
                       on_frames=on_frames)
    _save_npy(partial / "keypoints.npy", clip.points)
    _save_boxes(partial / "boxes.npz", clip.boxes)
    info = clip.info
    return ClipRow(id=job.video.id, video=str(job.video.path), frames=clip.frames, fps=info.fps,
                   width=info.width, height=info.height, layout=clip.layout, source=clip.source,
                   version=clip.version, streams=tuple(clip.boxes))


class CropSink(Protocol):
    """Where :func:`clip_arrays` hands each frame and its crop boxes: :class:`~mska_core.extract.crops.CropWriter`
    (``mska extract`` writes JPEG files) or :class:`~mska_core.extract.crops.CropCollector` (``mska
    predict`` keeps the crops in memory)."""

    def submit(self, image: Any, index: int, boxes: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


@attrs.frozen
class ClipArrays:
    """What extraction finds in one clip: its keypoints and every crop stream's boxes.

    - ``points``: float32 ``[T, J, 3]``, x and y in the video's pixels, confidence;
    - ``layout``: the points' keypoint layout; ``info``: the video's frame rate and size;
    - ``source``, ``version``: where the points came from (``clips.tsv``'s columns);
    - ``boxes``: ``{stream: (int32 [T, 3] boxes (x, y, side), bool [T] missing frames)}``, one entry per
      stream cut (the crops themselves went to the :class:`CropSink`).
    """

    points: np.ndarray
    layout: str
    info: VideoInfo
    source: str
    version: str
    boxes: Mapping[str, tuple[np.ndarray, np.ndarray]]

    @property
    def frames(self) -> int:
        return int(self.points.shape[0])


def clip_arrays(job: ClipJob, *, layouts: Mapping[str, Any], layout: str | None = None, estimator: Any = None,
                sink: Callable[[Sequence[str]], CropSink],
                on_frames: Callable[[int], None] | None = None) -> ClipArrays:
    """Decode ``job``'s video frame by frame, take or estimate each frame's points, and hand the frame
    with its crop boxes (one per stream of ``job`` that has crop joints in the points' layout) to the
    sink ``sink(stream_names)`` makes. The one extraction path of ``mska extract`` and ``mska predict
    VIDEO``.

    ``layouts`` maps registered layout names to their :class:`~mska_core.records.KeypointLayout`; ``layout`` forces the layout of keypoint
    files; ``estimator`` is the built estimator when ``job.keypoints`` is an :class:`EstimatorRef`;
    ``on_frames(n)`` is told about every ``n`` frames done. A video whose frame count differs from its
    keypoint file's, or with no frame, raises :class:`ClipFailed`.
    """
    given = None
    if isinstance(job.keypoints, KeypointRef):
        given = read_keypoints(job.keypoints, layouts, layout)
        layout, source, version = given.layout, job.keypoints.source, ""
    else:
        layout, version = job.keypoints.layout, job.keypoints.version
        source = f"estimator:{job.keypoints.name}"
    streams = _streams_in_layout(job, layout)
    container = open_video(job.video.path)
    try:
        info = video_info(container)
        trackers = {crop.name: BoxTracker(crop, layout, info.width, info.height) for crop in streams}
        crops = sink(list(trackers))
        found: list[np.ndarray] = []
        try:
            frames = _stream_frames(job, layouts[layout].num_joints, estimator, on_frames or (lambda n: None), container,
                                    given, trackers, crops, found)
        except BaseException:
            crops.abort()
            raise
        crops.close()
    finally:
        container.close()
    if frames == 0:
        raise ClipFailed(f"{job.video.path}: no frames could be decoded")
    if given is not None and frames != len(given.points):
        raise ClipFailed(f"{job.video.path} has {frames} frames but its keypoints have {len(given.points)} "
                         f"({job.keypoints.source})")
    points = given.points if given is not None else np.stack(found)
    return ClipArrays(points=np.ascontiguousarray(points, dtype=np.float32), layout=layout, info=info,
                      source=source, version=version,
                      boxes={name: tracker.arrays() for name, tracker in trackers.items()})


def _stream_frames(job: ClipJob, num_joints: int, estimator: Any, on_frames: Callable[[int], None],
                   container: Any, given: Any, trackers: Mapping[str, BoxTracker], sink: CropSink,
                   found: list[np.ndarray]) -> int:
    """Decode the clip frame by frame; hand each frame and its crop boxes to ``sink``. Returns the
    number of frames; the estimator's points are appended to ``found``."""
    from PIL import Image

    frames = 0
    for frame in decode_frames(container, job.video.path):
        rgb = rgb_array(frame)
        if given is not None:
            if frames >= len(given.points):
                raise ClipFailed(f"{job.video.path} has more frames than its {len(given.points)} keypoint "
                                 f"frames ({job.keypoints.source})")
            points = given.points[frames]
        else:
            points = _estimate(estimator, job.keypoints, rgb, num_joints, frames)
            found.append(points)
        sink.submit(Image.fromarray(rgb), frames, {name: t.update(points) for name, t in trackers.items()})
        frames += 1
        if frames % PROGRESS_EVERY == 0:
            on_frames(PROGRESS_EVERY)
    on_frames(frames % PROGRESS_EVERY)
    return frames


def _streams_in_layout(job: ClipJob, layout: str) -> list[StreamCrop]:
    chosen = [crop for crop in job.streams if crop.region.joints_for(layout)]
    if job.named_streams:
        lacking = [crop.name for crop in job.streams if not crop.region.joints_for(layout)]
        if lacking:
            raise ClipFailed(f"stream(s) {', '.join(lacking)} have no crop joints in layout {layout!r}")
    return chosen


def _estimate(estimator: Any, ref: EstimatorRef, rgb: np.ndarray, num_joints: int, index: int) -> np.ndarray:
    try:
        points = np.asarray(estimator(rgb), dtype=np.float32)
    except Exception as exc:  # the plugin's code: name it
        raise ClipFailed(f"keypoint estimator {ref.name!r} failed on frame {index}: "
                         f"{type(exc).__name__}: {exc}") from None
    if points.shape != (num_joints, 3):
        raise ClipFailed(f"keypoint estimator {ref.name!r} returned points of shape {points.shape} for frame "
                         f"{index}; layout {ref.layout!r} needs ({num_joints}, 3)")
    return points


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array, dtype=np.float32))


def _save_boxes(path: Path, boxes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, (frame_boxes, missing) in boxes.items():
        arrays[name] = frame_boxes
        arrays[f"{name}_missing"] = missing
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())

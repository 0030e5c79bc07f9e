"""One clip, streamed: decode a frame, find or look up its points, cut and write each stream's crop.

Everything is written under ``OUT/.partial/ID`` and moved into place only when the whole clip is
there (:meth:`~mska_core.extract.outputs.OutputFolder.publish`). A clip that fails raises
:class:`ClipFailed` with a one-line reason and leaves nothing behind.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mska_core.errors import DataError, MskaError
from mska_core.extract.boxes import BoxTracker, StreamCrop
from mska_core.extract.crops import CropWriter
from mska_core.extract.keypoints import EstimatorRef, KeypointRef, read_keypoints
from mska_core.extract.outputs import ClipRow, OutputFolder
from mska_core.extract.videos import Video, decode_frames, open_video, rgb_array, video_info

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
    layouts: Mapping[str, int]  # registered layouts and their joint counts
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
    given = None
    if isinstance(job.keypoints, KeypointRef):
        given = read_keypoints(job.keypoints, options.layouts, options.layout)
        layout, source, version = given.layout, job.keypoints.source, ""
    else:
        layout, version = job.keypoints.layout, job.keypoints.version
        source = f"estimator:{job.keypoints.name}"
    streams = _streams_in_layout(job, layout)
    container = open_video(job.video.path)
    try:
        info = video_info(container)
        trackers = {crop.name: BoxTracker(crop, layout, info.width, info.height) for crop in streams}
        folders = {crop.name: partial / "crops" / crop.name for crop in streams}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        writer = CropWriter(folders, options.crop_size, options.jpeg_quality)
        found: list[np.ndarray] = []
        try:
            frames = _stream_frames(job, options, estimator, on_frames, container, given, layout, trackers,
                                    writer, found)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    finally:
        container.close()
    if frames == 0:
        raise ClipFailed(f"{job.video.path}: no frames could be decoded")
    if given is not None and frames != len(given.points):
        raise ClipFailed(f"{job.video.path} has {frames} frames but its keypoints have {len(given.points)} "
                         f"({job.keypoints.source})")
    points_all = given.points if given is not None else np.stack(found)
    _save_npy(partial / "keypoints.npy", points_all)
    _save_boxes(partial / "boxes.npz", trackers)
    return ClipRow(id=job.video.id, video=str(job.video.path), frames=frames, fps=info.fps, width=info.width,
                   height=info.height, layout=layout, source=source, version=version,
                   streams=tuple(trackers))


def _stream_frames(job: ClipJob, options: ExtractOptions, estimator: Any, on_frames: Callable[[int], None],
                   container: Any, given: Any, layout: str, trackers: Mapping[str, BoxTracker],
                   writer: CropWriter, found: list[np.ndarray]) -> int:
    """Decode the clip frame by frame; hand each frame and its crop boxes to ``writer``. Returns the
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
            points = _estimate(estimator, job.keypoints, rgb, options.layouts[layout], frames)
            found.append(points)
        writer.submit(Image.fromarray(rgb), frames, {name: t.update(points) for name, t in trackers.items()})
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


def _save_boxes(path: Path, trackers: Mapping[str, BoxTracker]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, tracker in trackers.items():
        boxes, missing = tracker.arrays()
        arrays[name] = boxes
        arrays[f"{name}_missing"] = missing
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())

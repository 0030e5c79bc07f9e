"""One input, streamed: read a frame, find or look up its points, cut each stream's crop, for every
clip cut from that input.

An input (a video file or a frame folder) gives one clip, or several: the segments of a long recording
(``--annotations`` with ``video``, ``start`` and ``end`` columns) are :class:`Cut` s of one
:class:`ClipJob`, and the input is read **once**, however many segments it has, from the keyframe
before its first segment's start (a video is seeked there, frames counted from their timestamps:
:meth:`~mska_core.extract.videos.VideoReader.frames`) to its last segment's end. A frame goes to every
cut whose time range holds it; a cut is finished (and, in ``mska extract``, published) as soon as the
input passes its end.

:func:`extract_cuts` is the one extraction path: it hands each frame and its crop boxes to a *crop
sink* per cut. ``mska extract`` (:func:`extract_job`) gives it a
:class:`~mska_core.extract.crops.CropWriter` and writes the arrays; ``mska predict VIDEO``
(:func:`clip_arrays`) gives it a :class:`~mska_core.extract.crops.CropCollector` and keeps everything in
memory.

``mska extract`` writes each clip under ``OUT/.partial/ID`` and moves it into place only when the whole
clip is there (:meth:`~mska_core.extract.outputs.OutputFolder.publish`). A clip that fails is reported
with a one-line reason and leaves nothing behind.
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
from mska_core.extract.quality import describe_found, found_fractions, outside_share, unmirror_frame, unmirror_points
from mska_core.extract.videos import Video, VideoInfo, open_input

#: How many frames pass between two progress reports.
PROGRESS_EVERY = 8
#: Slack when comparing a frame's time with a segment's bounds (timestamps are rounded by containers).
TIME_SLACK = 1e-6


class ClipFailed(MskaError):
    """A clip could not be extracted; the message is the one-line reason."""


@attrs.frozen
class Cut:
    """A clip cut from an input: its id and its time range in seconds (``None``: the whole input)."""

    id: str
    start: float | None = None
    end: float | None = None

    @property
    def whole(self) -> bool:
        return self.start is None

    def holds(self, time: float) -> bool:
        """Whether a frame at ``time`` seconds belongs to the cut."""
        if self.start is None or self.end is None:
            return True
        return self.start - TIME_SLACK <= time < self.end - TIME_SLACK

    def describe(self) -> str:
        return "" if self.whole else f" ({self.start:g}-{self.end:g} s)"


@attrs.frozen
class ClipJob:
    """Everything a worker needs to extract the clips of one input (plain data: it is sent to worker
    processes). ``cuts`` is empty for the whole input as one clip named by its id."""

    video: Video
    keypoints: KeypointRef | EstimatorRef
    streams: tuple[StreamCrop, ...]
    named_streams: bool  # the user chose the streams: one without joints in the clip's layout is an error
    cuts: tuple[Cut, ...] = ()
    mirrored: bool = False  # the recording is a mirror image: un-mirror frames and keypoint files

    @property
    def clip_cuts(self) -> tuple[Cut, ...]:
        """The clips this job makes."""
        return self.cuts or (Cut(self.video.id),)

    @property
    def clip_ids(self) -> tuple[str, ...]:
        return tuple(cut.id for cut in self.clip_cuts)


@attrs.frozen
class ExtractOptions:
    """Settings shared by every clip of a run."""

    out: Path
    crop_size: int
    jpeg_quality: int
    layouts: Mapping[str, Any]  # registered layouts by name (KeypointLayout records)
    layout: str | None = None  # forced layout of keypoint files
    plugins: Any = None  # the config's [plugins] table, for the registry of worker processes
    packed: bool = True  # crops in one packed file per clip and stream (else one JPEG file per frame)
    fps: float | None = None  # frame rate of frame folders
    margin: float = 0.25  # [data] frame_margin: a found joint beyond the frame by more is counted outside
    min_found: float = 0.0  # [extract] min_found: a stream found in fewer of a clip's frames is flagged
    strict: bool = False  # a flagged clip fails (nothing of it is written)
    preview: bool = False  # write OUT/preview/ID.png, a contact sheet of the clip's crops


@attrs.frozen
class CutResult:
    """What became of one cut: its ``clips.tsv`` row, or the reason it failed."""

    id: str
    row: ClipRow | None = None
    reason: str = ""


def extract_job(job: ClipJob, options: ExtractOptions, estimator: Any = None,
                on_frames: Callable[[int], None] | None = None,
                on_result: Callable[[CutResult], None] | None = None) -> list[CutResult]:
    """Extract every clip of ``job`` into ``options.out``; return (and tell ``on_result``, as each clip
    finishes) one :class:`CutResult` per clip.

    ``estimator`` is the built estimator when ``job.keypoints`` is an :class:`EstimatorRef`;
    ``on_frames(n)`` is told about every ``n`` frames read.
    """
    folder = OutputFolder(options.out)
    results: list[CutResult] = []
    streams = [crop.name for crop in job.streams]
    for cut in job.clip_cuts:
        folder.discard(cut.id, streams)

    def sink(cut: Cut, names: Sequence[str]) -> CropWriter:
        partial = folder.partial(cut.id) / "crops"
        partial.mkdir(parents=True, exist_ok=True)
        targets = {name: folder.partial_crops(cut.id, name, options.packed) for name in names}
        for target in targets.values():
            if not options.packed:
                target.mkdir(parents=True, exist_ok=True)
        return CropWriter(targets, options.crop_size, options.jpeg_quality, packed=options.packed)

    def finished(cut: Cut, clip: ClipArrays) -> None:
        partial = folder.partial(cut.id)
        info = clip.info
        found = found_fractions(clip.boxes)
        scarce = {name: value for name, value in found.items() if value < options.min_found}
        if scarce and options.strict:
            failed(cut, f"{', '.join(scarce)} found in {describe_found(scarce)} of its {clip.frames} frames, "
                        f"below [extract] min_found = {options.min_found:g} (--strict)")
            return
        try:
            _save_npy(partial / "keypoints.npy", clip.points)
            _save_boxes(partial / "boxes.npz", clip.boxes)
            row = ClipRow(id=cut.id, video=str(job.video.path), frames=clip.frames, fps=info.fps,
                          width=info.width, height=info.height, layout=clip.layout, source=clip.source,
                          version=clip.version, streams=tuple(clip.boxes), found=found,
                          outside=outside_share(clip.points, info.width, info.height, options.margin),
                          mirrored=job.mirrored)
            folder.publish(cut.id, row.streams, packed=options.packed)
            if options.preview:
                from mska_core.extract.preview import write_preview

                write_preview(folder, row)
        except OSError as exc:  # a full disk: this clip fails
            shutil.rmtree(partial, ignore_errors=True)
            failed(cut, str(exc))
            return
        report(CutResult(cut.id, row=row))

    def failed(cut: Cut, reason: str) -> None:
        shutil.rmtree(folder.partial(cut.id), ignore_errors=True)
        report(CutResult(cut.id, reason=reason))

    def report(result: CutResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    try:
        extract_cuts(job, layouts=options.layouts, layout=options.layout, estimator=estimator, sink=sink,
                     on_frames=on_frames, on_cut=finished, on_cut_failed=failed, fps=options.fps)
    except (ClipFailed, DataError, OSError) as exc:  # the input itself failed: every clip not done yet
        done = {result.id for result in results}
        for cut in job.clip_cuts:
            if cut.id not in done:
                failed(cut, str(exc))
    except BaseException:  # interrupted: nothing of an unfinished clip stays behind
        for cut in job.clip_cuts:
            shutil.rmtree(folder.partial(cut.id), ignore_errors=True)
        raise
    return results


class CropSink(Protocol):
    """Where :func:`extract_cuts` hands each frame and its crop boxes: :class:`~mska_core.extract.crops.CropWriter`
    (``mska extract`` writes JPEG crops) or :class:`~mska_core.extract.crops.CropCollector` (``mska
    predict`` keeps the crops in memory)."""

    def submit(self, image: Any, index: int, boxes: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


@attrs.frozen
class ClipArrays:
    """What extraction finds in one clip: its keypoints and every crop stream's boxes.

    - ``points``: float32 ``[T, J, 3]``, x and y in the input's pixels, confidence;
    - ``layout``: the points' keypoint layout; ``info``: the input's frame rate and size (``frames``:
      the clip's);
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
                on_frames: Callable[[int], None] | None = None, fps: float | None = None) -> ClipArrays:
    """The one clip of ``job`` (its whole input), through :func:`extract_cuts`; ``sink(stream_names)``
    makes its crop sink. The path of ``mska predict VIDEO``. A failure raises :class:`ClipFailed`."""
    found: list[ClipArrays] = []
    problems: list[str] = []
    extract_cuts(job, layouts=layouts, layout=layout, estimator=estimator,
                 sink=lambda cut, names: sink(names), on_frames=on_frames,
                 on_cut=lambda cut, clip: found.append(clip), on_cut_failed=lambda cut, why: problems.append(why),
                 fps=fps)
    if problems:
        raise ClipFailed(problems[0])
    return found[0]


class _OpenCut:
    """A cut while the input is read: its trackers, sink, frames and points so far."""

    def __init__(self, cut: Cut) -> None:
        self.cut = cut
        self.trackers: dict[str, BoxTracker] = {}
        self.sink: Any = None
        self.frames = 0
        self.points: list[np.ndarray] = []


def extract_cuts(job: ClipJob, *, layouts: Mapping[str, Any], layout: str | None = None, estimator: Any = None,
                 sink: Callable[[Cut, Sequence[str]], CropSink], on_cut: Callable[[Cut, ClipArrays], None],
                 on_cut_failed: Callable[[Cut, str], None], on_frames: Callable[[int], None] | None = None,
                 fps: float | None = None) -> None:
    """Read ``job``'s input once, frame by frame; take or estimate the points of every frame some cut
    holds, and hand the frame with its crop boxes (one per stream of ``job`` that has crop joints in the
    points' layout) to that cut's sink, ``sink(cut, stream_names)``. Each cut ends in
    ``on_cut(cut, arrays)`` or ``on_cut_failed(cut, reason)``.

    ``layouts`` maps registered layout names to their :class:`~mska_core.records.KeypointLayout`;
    ``layout`` forces the layout of keypoint files (which cover the whole input: a segment's points are cut from them); ``estimator`` is the
    built estimator when ``job.keypoints`` is an :class:`EstimatorRef` (run only on frames a cut holds);
    ``fps`` is a frame folder's frame rate. An input that cannot be read, or whose frame count differs
    from its keypoint file's, raises :class:`ClipFailed` (cuts already finished stay finished).
    """
    from PIL import Image

    given = None
    if isinstance(job.keypoints, KeypointRef):
        given = read_keypoints(job.keypoints, layouts, layout)
        layout, source, version = given.layout, job.keypoints.source, ""
    else:
        layout, version = job.keypoints.layout, job.keypoints.version
        source = f"estimator:{job.keypoints.name}"
    assert layout is not None
    streams = _streams_in_layout(job, layout)
    where = job.keypoints.source if given is not None else ""
    tell = on_frames or (lambda n: None)
    reader = open_input(job.video, fps)
    waiting = sorted(job.clip_cuts, key=lambda c: c.start or 0.0)
    last_end = None if any(c.whole for c in waiting) else max(c.end for c in waiting)  # type: ignore[type-var]
    open_cuts: list[_OpenCut] = []
    skipped: list[Cut] = []  # cuts that lie between two frames
    info = reader.info
    if given is not None and job.mirrored:  # points of the mirrored frames, as the flipped-back frames show them
        given = attrs.evolve(given, points=unmirror_points(given.points, layouts[layout], info.width))
    read = 0  # frames read so far
    seen = 0  # frames the reader gave (it skips those before the first segment)
    first = 0.0 if last_end is None else max(0.0, min(c.start for c in waiting) - TIME_SLACK)  # type: ignore[type-var]
    try:
        for index, time, rgb in reader.frames(first):
            if last_end is not None and time >= last_end - TIME_SLACK:
                break
            while waiting and (waiting[0].start or 0.0) <= time + TIME_SLACK:
                cut = waiting.pop(0)  # cuts start in order: this one holds the frame, or ended before it
                if cut.holds(time):
                    open_cuts.append(_OpenCut(cut))
                else:
                    skipped.append(cut)
            for state in [s for s in open_cuts if not s.cut.holds(time) and s.frames]:
                _finish(state, info, layout, source, version, on_cut, on_cut_failed)
                open_cuts.remove(state)
            holding = [s for s in open_cuts if s.cut.holds(time)]
            if holding:
                if job.mirrored:
                    rgb = unmirror_frame(rgb)
                if given is not None:
                    if index >= len(given.points):
                        raise ClipFailed(f"{job.video.path} has more frames than its {len(given.points)} keypoint "
                                         f"frames ({where})")
                    points = given.points[index]
                else:
                    points = _estimate(estimator, job.keypoints, rgb, layouts[layout].num_joints, index)  # type: ignore[arg-type]
                image = Image.fromarray(rgb)
                for state in holding:
                    if state.sink is None:
                        state.trackers = {crop.name: BoxTracker(crop, layout, info.width, info.height)
                                          for crop in streams}
                        state.sink = sink(state.cut, list(state.trackers))
                    state.sink.submit(image, state.frames,
                                      {name: t.update(points) for name, t in state.trackers.items()})
                    state.points.append(points)
                    state.frames += 1
            read = index + 1
            seen += 1
            if seen % PROGRESS_EVERY == 0:
                tell(PROGRESS_EVERY)
        else:  # the input ended: ``read`` is its frame count
            if given is not None and last_end is None and read and read != len(given.points):
                raise ClipFailed(f"{job.video.path} has {read} frames but its keypoints have "
                                 f"{len(given.points)} ({where})")
        tell(seen % PROGRESS_EVERY)
    except BaseException:
        for state in open_cuts:
            if state.sink is not None:
                state.sink.abort()
        raise
    finally:
        reader.close()
    for state in open_cuts:
        if state.frames:
            _finish(state, info, layout, source, version, on_cut, on_cut_failed)
        else:
            waiting.append(state.cut)
    for cut in skipped + waiting:
        what = "no frames could be read" if cut.whole else "no frame of the input lies in the segment"
        on_cut_failed(cut, f"{job.video.path}{cut.describe()}: {what}")


def _finish(state: _OpenCut, info: VideoInfo, layout: str, source: str, version: str,
            on_cut: Callable[[Cut, ClipArrays], None], on_cut_failed: Callable[[Cut, str], None]) -> None:
    """Close a cut's sink and hand its arrays on."""
    try:
        state.sink.close()
    except (OSError, DataError, RuntimeError) as exc:
        on_cut_failed(state.cut, f"writing its crops failed: {exc}")
        return
    points = np.ascontiguousarray(np.stack(state.points), dtype=np.float32)
    clip_info = attrs.evolve(info, frames=state.frames)
    on_cut(state.cut, ClipArrays(points=points, layout=layout, info=clip_info, source=source, version=version,
                                 boxes={name: tracker.arrays() for name, tracker in state.trackers.items()}))


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

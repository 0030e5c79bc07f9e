"""A whole ``mska extract`` run: plan the clips, extract them (in this process or in worker processes),
show progress, and keep ``clips.tsv`` (and, with annotations, the split) up to date.

A clip that fails is reported in one line and skipped; the others go on. Clips already finished in
``OUT`` are skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.config.schema import DataConfig, ExtractConfig
from mska_core.errors import DataError, MskaError, PluginError, UnknownNameError
from mska_core.extract.annotations import Annotations, write_split
from mska_core.extract.boxes import StreamCrop
from mska_core.extract.clip import ClipFailed, ClipJob, Cut, CutResult, ExtractOptions, extract_job
from mska_core.extract.keypoints import EstimatorRef, KeypointFiles
from mska_core.extract.outputs import (
    ClipRow,
    OutputFolder,
    append_clip,
    read_all_clips,
    read_clips,
    write_clips,
)
from mska_core.extract.videos import VIDEO_SUFFIXES, Video, find_videos


@attrs.frozen
class ExtractRequest:
    """What to extract: the inputs of ``mska extract`` and its ``[extract]`` settings (defaults in
    :class:`~mska_core.config.schema.ExtractConfig`). ``shard`` is ``(K, N)``: only the K-th (1-based) of
    N deterministic parts of the inputs (``--shard K/N``)."""

    videos: tuple[str, ...]
    out: Path
    keypoints: str | None = None
    estimator: str | None = None
    annotations: str | None = None
    split: str | None = None
    settings: ExtractConfig = attrs.field(factory=ExtractConfig)
    plugins: Any = None  # the config's [plugins] table (worker processes load the same plugins)
    shard: tuple[int, int] | None = None
    margin: float = attrs.field(default=attrs.fields(DataConfig).frame_margin.default)  # [data] frame_margin
    strict: bool = False  # a clip whose stream is found in fewer than [extract] min_found of its frames fails


@attrs.frozen
class ExtractReport:
    """What a run did: clips written now, clips found finished, failures (id, reason), frames written."""

    written: tuple[ClipRow, ...]
    skipped: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    frames: int
    seconds: float
    split_table: Path | None = None
    notices: tuple[str, ...] = ()

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def found(self) -> dict[str, float]:
        """Per stream, the fraction of the written frames whose part was found."""
        totals: dict[str, list[float]] = {}
        for row in self.written:
            for name, value in row.found.items():
                total = totals.setdefault(name, [0.0, 0.0])
                total[0] += value * row.frames
                total[1] += row.frames
        return {name: found / frames if frames else 0.0 for name, (found, frames) in totals.items()}

    def flagged(self, min_found: float) -> list[tuple[ClipRow, dict[str, float]]]:
        """The written clips with a stream found in fewer than ``min_found`` of their frames."""
        flagged = []
        for row in self.written:
            scarce = {name: value for name, value in row.found.items() if value < min_found}
            if scarce:
                flagged.append((row, scarce))
        return flagged


#: Names a split may not take: they are folders of the output itself.
RESERVED_SPLITS = frozenset({"keypoints", "crops", "boxes", "clips", "preview", ".partial"})


class Progress:
    """What a run reports while it works (the command line shows a rich progress bar)."""

    def start(self, total_clips: int) -> None: ...

    def frames(self, count: int) -> None: ...

    def clip_done(self, row: ClipRow) -> None: ...

    def clip_failed(self, clip_id: str, reason: str) -> None: ...

    def stop(self) -> None: ...


def shard_of(key: str, parts: int) -> int:
    """The part (1-based, of ``parts``) an input with clip id ``key`` belongs to: a hash of the id
    alone, so every job of ``--shard K/N`` agrees whatever else the corpus holds."""
    return zlib.crc32(key.encode("utf-8")) % parts + 1


def run_extraction(request: ExtractRequest, registry: Any,
                   progress: Progress | None = None) -> ExtractReport:
    """Extract every clip of ``request`` into ``request.out`` with the estimators and streams of
    ``registry``; see ``docs/data.md`` for what is written.

    With ``request.shard`` the run writes its finished clips to its own ``clips.K-of-N.tsv``; a run
    without it merges every part into ``clips.tsv`` (and writes the split table with annotations).
    """
    progress = progress or Progress()
    started = time.perf_counter()
    plan = _plan(request, registry)
    out = OutputFolder(Path(request.out))
    out.root.mkdir(parents=True, exist_ok=True)
    table = out.clips_part(*request.shard) if request.shard else out.clips_tsv
    rows = read_all_clips(out)
    own = rows if request.shard is None else read_clips(table)
    write_clips(table, own)  # drops a line torn by a killed run (and merges the parts) before appending
    if request.shard is None:
        for part in out.clips_parts():
            part.unlink()
    skipped: list[str] = []
    todo: list[ClipJob] = []
    for job in plan.jobs:
        left = [cut for cut in job.clip_cuts if not _finished(out, rows, cut.id, job)]
        skipped.extend(cut.id for cut in job.clip_cuts if cut not in left)
        if left:
            todo.append(attrs.evolve(job, cuts=tuple(left)))
    written: list[ClipRow] = []
    failed = list(plan.failed)

    def result(outcome: CutResult) -> None:
        if outcome.row is None:
            failed.append((outcome.id, outcome.reason))
            progress.clip_failed(outcome.id, outcome.reason)
            return
        row = outcome.row
        append_clip(table, row)  # the clip is finished from here on
        rows[row.id] = own[row.id] = row
        written.append(row)
        progress.clip_done(row)

    for clip_id, reason in plan.failed:
        progress.clip_failed(clip_id, reason)
    workers = min(request.settings.workers, len(todo))
    pool = WorkerPool(plan.options, workers) if workers > 1 else None
    progress.start(sum(len(job.clip_cuts) for job in todo))  # after the workers started: the bar runs a thread
    try:
        if pool is not None:
            pool.run(todo, result, progress.frames)
        else:
            _run_here(todo, plan.options, registry, result, progress.frames)
    finally:
        if pool is not None:
            pool.stop()
        progress.stop()
        write_clips(table, own)
    split_table = None
    if plan.annotations is not None and request.split and request.shard is None:
        ids = [cut.id for job in plan.jobs for cut in job.clip_cuts]
        finished = [rows[clip_id] for clip_id in ids if clip_id in rows and out.is_finished(rows[clip_id], [])]
        split_table = write_split(out.root, request.split, finished, plan.annotations)
    return ExtractReport(written=tuple(written), skipped=tuple(skipped), failed=tuple(failed),
                         frames=sum(row.frames for row in written), seconds=time.perf_counter() - started,
                         split_table=split_table, notices=tuple(plan.notices))


def _finished(out: OutputFolder, rows: dict[str, ClipRow], clip_id: str, job: ClipJob) -> bool:
    return out.is_finished(rows.get(clip_id), [crop.name for crop in job.streams])


# --- planning -------------------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    """The jobs to run, the clips that failed before starting (no keypoints, no annotation line, no
    video), the options every clip shares, the annotations (with ``--annotations``) and notices."""

    jobs: list[ClipJob]
    failed: list[tuple[str, str]]
    options: ExtractOptions
    annotations: Annotations | None
    notices: list[str]


def _plan(request: ExtractRequest, registry: Any) -> _Plan:
    """What to do for ``request``; bad usage raises (exit code 2)."""
    if (request.keypoints is None) == (request.estimator is None):
        raise DataError("give exactly one of --keypoints PATH (existing keypoint files) and --estimator NAME "
                        "(a registered keypoint estimator; `mska plugins --all` lists them)")
    if (request.annotations is None) != (request.split is None):
        raise DataError("--annotations and --split go together: the annotation table and the split its clips "
                        "belong to")
    if request.split is not None and (request.split in RESERVED_SPLITS or "/" in request.split):
        raise DataError(f"--split {request.split!r} is a folder of the output; use train, dev or test")
    if request.shard is not None and not 1 <= request.shard[0] <= request.shard[1]:
        raise DataError(f"--shard {request.shard[0]}/{request.shard[1]}: K must be between 1 and N")
    layouts = {layout.name: layout for layout in registry.layouts}
    if request.settings.layout is not None and request.settings.layout not in layouts:
        raise UnknownNameError(f"[extract] layout {request.settings.layout!r} is not registered; registered: "
                               f"{', '.join(layouts)}")
    crops = _stream_crops(request.settings.streams, registry)
    annotations = Annotations.read(Path(request.annotations)) if request.annotations else None
    failed: list[tuple[str, str]] = []
    if annotations is not None and annotations.segments:
        inputs = _segment_inputs(request, annotations, failed)
    else:
        inputs = [(video, ()) for video in _find_inputs(request.videos)]
    if request.estimator is not None:
        record = registry.keypoint_estimators.get(request.estimator)
        if record.layout not in layouts:
            raise DataError(f"keypoint estimator {record.name!r} gives layout {record.layout!r}, which no "
                            f"plugin registers (registered: {', '.join(layouts)})")
        provider = record.provider
        source: Callable[[str], Any] = lambda clip_id: EstimatorRef(
            record.name, record.layout, getattr(provider, "version", "") or "")
    else:
        files = KeypointFiles(request.keypoints)  # type: ignore[arg-type]
        source = files.lookup
    jobs: list[ClipJob] = []
    for video, cuts in inputs:
        if request.shard is not None and shard_of(video.id, request.shard[1]) != request.shard[0]:
            continue
        ids = [cut.id for cut in cuts] or [video.id]
        if annotations is not None and not annotations.segments and video.id not in annotations:
            failed.append((video.id, f"no line for {video.id!r} in the annotations {request.annotations}"))
            continue
        whole = len(cuts) == 1 and cuts[0].whole  # a whole clip's keypoints may be named by the clip's id
        ref = (source(cuts[0].id) if whole else None) or source(video.id)
        if ref is None:
            reason = files.describe_missing(video.id)
            failed.extend((clip_id, reason) for clip_id in ids)
            continue
        flags = {annotations.mirrored(clip_id) for clip_id in ids} - {None} if annotations is not None else set()
        if len(flags) > 1:
            failed.extend((clip_id, f"the rows of {video.id!r} in {request.annotations} disagree on mirrored; a "
                                    "recording is mirrored or not") for clip_id in ids)
            continue
        mirrored = flags.pop() if flags else request.settings.mirrored
        jobs.append(ClipJob(video=video, keypoints=ref, streams=crops, named_streams=bool(request.settings.streams),
                            cuts=tuple(cuts), mirrored=mirrored))
    notices = []
    folders = [job.video for job in jobs if job.video.kind == "frames"]
    if folders and request.settings.fps is None:
        notices.append(f"{len(folders)} frame folder(s) read at 25 frames/s (they record no frame rate); give "
                       "--fps N if theirs differs")
    options = ExtractOptions(out=Path(request.out), crop_size=request.settings.crop_size,
                             jpeg_quality=request.settings.jpeg_quality, layouts=layouts,
                             layout=request.settings.layout, plugins=request.plugins,
                             packed=request.settings.crop_format == "packed", fps=request.settings.fps,
                             margin=request.margin, min_found=request.settings.min_found, strict=request.strict,
                             preview=request.settings.preview)
    return _Plan(jobs=jobs, failed=failed, options=options, annotations=annotations, notices=notices)


def _find_inputs(paths: Sequence[str]) -> list[Video]:
    videos = find_videos(paths)
    if not videos:
        raise DataError(f"no videos ({', '.join(s[1:] for s in VIDEO_SUFFIXES)}) or frame folders found in "
                        f"{', '.join(paths)}")
    return videos


def _segment_inputs(request: ExtractRequest, annotations: Annotations,
                    failed: list[tuple[str, str]]) -> list[tuple[Video, tuple[Cut, ...]]]:
    """The inputs of a table whose rows name their videos, each with the clips cut from it (a row whose
    video is not found fails, in one line naming the table's line)."""
    roots = [Path(p) if Path(p).is_dir() else Path(p).parent for p in request.videos]
    by_id: dict[str, Video] | None = None  # the inputs found under the roots, by id (when first needed)
    groups: dict[Path, tuple[Video, list[Cut]]] = {}
    for row in annotations.rows:
        video = _resolve_video(row.video or "", roots)
        if video is None:
            if by_id is None:
                by_id = {v.id: v for v in find_videos(request.videos)}
            video = by_id.get(row.clip_id) if row.whole else None
            video = video or by_id.get(Path(row.video or "").stem) or by_id.get(row.video or "")
        if video is None:
            failed.append((row.clip_id, f"{annotations.path}:{row.line}: video {row.video!r} not found under "
                                        f"{', '.join(map(str, roots))}"))
            continue
        cut = Cut(row.clip_id) if row.whole else Cut(row.clip_id, row.start, row.end)
        groups.setdefault(video.path, (video, []))[1].append(cut)
    return [(video, tuple(cuts)) for video, cuts in groups.values()]


def _resolve_video(pattern: str, roots: Sequence[Path]) -> Video | None:
    """The video file or frame folder ``pattern`` (a path or a glob, relative to a root) names."""
    import glob

    from mska_core.extract.frames import FRAME_SUFFIXES, frame_folder_id, is_frame_folder

    if not pattern:
        return None
    for root in roots:
        matches = sorted(glob.glob(str(root / pattern))) if glob.has_magic(pattern) else [str(root / pattern)]
        for match in (Path(m) for m in matches):
            if match.is_dir() and is_frame_folder(match):
                return Video(frame_folder_id(match), match, "frames")
            if match.is_file() and match.suffix.lower() in FRAME_SUFFIXES:
                return Video(frame_folder_id(match.parent), match.parent, "frames")
            if match.is_file():
                return Video(match.stem, match)
    return None


def _stream_crops(names: Sequence[str], registry: Any) -> tuple[StreamCrop, ...]:
    """The streams to crop: those named, or every registered stream that declares a crop region."""
    with_region = [spec for spec in registry.streams if spec.crop_region is not None]
    if not names:
        return tuple(StreamCrop(spec.name, spec.crop_region) for spec in with_region)
    crops = []
    for name in names:
        spec = registry.streams.get(name)
        if spec.crop_region is None:
            raise DataError(f"stream {name!r} declares no crop region; streams with one: "
                            f"{', '.join(s.name for s in with_region) or 'none'}")
        crops.append(StreamCrop(spec.name, spec.crop_region))
    return tuple(crops)


# --- running --------------------------------------------------------------------------------------


def _run_here(jobs: Sequence[ClipJob], options: ExtractOptions, registry: Any,
              result: Callable[[CutResult], None], frames: Callable[[int], None]) -> None:
    estimator = None
    try:
        for job in jobs:
            if estimator is None and isinstance(job.keypoints, EstimatorRef):  # a failure here stops the run
                estimator = registry.keypoint_estimators.get(job.keypoints.name).build({})
            try:
                extract_job(job, options, estimator, frames, result)
            except MskaError as exc:  # e.g. a stream without crop joints: every clip of the job fails
                for clip_id in job.clip_ids:
                    result(CutResult(clip_id, reason=str(exc)))
    finally:
        _close(estimator)


class WorkerPool:
    """Worker processes that take inputs from a queue (at most two per worker wait in it).

    Processes are forked where the platform allows it and this process runs a single thread (quick to
    start, and plugins registered in this process are there too); otherwise spawned.
    """

    def __init__(self, options: ExtractOptions, workers: int) -> None:
        import threading

        methods = multiprocessing.get_all_start_methods()
        method = "fork" if "fork" in methods and threading.active_count() == 1 else "spawn"
        context = multiprocessing.get_context(method)
        self.workers = workers
        self.tasks: Any = context.Queue()
        self.results: Any = context.Queue()
        arguments = (self.tasks, self.results, options, os.getpid())
        self.processes = [context.Process(target=_worker, args=arguments, daemon=True)
                          for _ in range(workers)]
        for process in self.processes:
            process.start()

    def run(self, jobs: Sequence[ClipJob], result: Callable[[CutResult], None],
            frames: Callable[[int], None]) -> None:
        """Extract ``jobs``; report each clip through ``result`` and progress through ``frames``."""
        pending: Iterator[ClipJob] = iter(jobs)
        queued = 0
        current: dict[int, set[str]] = {}  # worker pid -> clips of its job not reported yet
        outstanding = sum(len(job.clip_cuts) for job in jobs)

        def feed() -> None:
            nonlocal queued
            while queued < 2 * self.workers:
                job = next(pending, None)
                if job is None:
                    return
                self.tasks.put(job)
                queued += 1

        feed()
        while outstanding:
            try:
                kind, pid, payload = self.results.get(timeout=0.5)
            except queue.Empty:
                for process in self.processes:
                    if not process.is_alive() and process.pid in current:
                        for clip_id in sorted(current.pop(process.pid)):
                            result(CutResult(clip_id, reason="the worker process extracting it died (exit code "
                                                             f"{process.exitcode})"))
                            outstanding -= 1
                if outstanding and not any(p.is_alive() for p in self.processes):
                    for job in pending:
                        for clip_id in job.clip_ids:
                            result(CutResult(clip_id, reason="no worker process left to extract it"))
                    return
                continue
            if kind == "frames":
                frames(payload)
            elif kind == "start":
                current[pid] = set(payload)
                queued -= 1
                feed()
            elif kind == "fatal":
                raise PluginError(payload)
            else:
                current.get(pid, set()).discard(payload.id)
                outstanding -= 1
                result(payload)

    def stop(self) -> None:
        """Tell the workers to finish and wait for them (a worker still busy after 5 s is terminated)."""
        for _ in self.processes:
            self.tasks.put(None)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


def _next_job(tasks: Any, parent: int) -> ClipJob | None:
    """The next job, or ``None`` when told to stop or when the parent process is gone."""
    while True:
        try:
            return tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the parent was killed: nobody waits for our results
                return None


def _worker(tasks: Any, results: Any, options: ExtractOptions, parent: int) -> None:
    """A worker process: extract inputs from ``tasks`` until ``None``; report each clip on ``results``."""
    from mska_core.registry import get_registry, registry_for

    pid = os.getpid()
    estimator = None
    try:
        while (job := _next_job(tasks, parent)) is not None:
            results.put(("start", pid, job.clip_ids))
            if estimator is None and isinstance(job.keypoints, EstimatorRef):
                try:
                    registry = registry_for(options.plugins, get_registry())  # this process's own
                    estimator = registry.keypoint_estimators.get(job.keypoints.name).build({})
                except MskaError as exc:  # the estimator cannot run at all: the parent stops the run
                    results.put(("fatal", pid, str(exc)))
                    return
            reported: set[str] = set()

            def report(outcome: CutResult) -> None:
                reported.add(outcome.id)
                results.put(("result", pid, outcome))

            try:
                extract_job(job, options, estimator, lambda n: results.put(("frames", pid, n)), report)
            except (ClipFailed, MskaError) as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001 - one input's surprise must not stop the others
                reason = f"{type(exc).__name__}: {exc}"
            else:
                continue
            for clip_id in job.clip_ids:
                if clip_id not in reported:
                    report(CutResult(clip_id, reason=reason))
    except KeyboardInterrupt:  # the parent reports the interruption
        pass
    finally:
        _close(estimator)


def _close(estimator: Any) -> None:
    close = getattr(estimator, "close", None)
    if callable(close):
        close()

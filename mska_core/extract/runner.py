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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.config.schema import ExtractConfig
from mska_core.errors import DataError, MskaError, PluginError, UnknownNameError
from mska_core.extract.annotations import Annotations, write_split
from mska_core.extract.boxes import StreamCrop
from mska_core.extract.clip import ClipFailed, ClipJob, ExtractOptions, extract_clip
from mska_core.extract.keypoints import EstimatorRef, KeypointFiles
from mska_core.extract.outputs import ClipRow, OutputFolder, append_clip, read_clips, write_clips
from mska_core.extract.videos import find_videos


@attrs.frozen
class ExtractRequest:
    """What to extract: the inputs of ``mska extract`` and its ``[extract]`` settings (defaults in
    :class:`~mska_core.config.schema.ExtractConfig`)."""

    videos: tuple[str, ...]
    out: Path
    keypoints: str | None = None
    estimator: str | None = None
    annotations: str | None = None
    split: str | None = None
    settings: ExtractConfig = attrs.field(factory=ExtractConfig)
    plugins: Any = None  # the config's [plugins] table (worker processes load the same plugins)


@attrs.frozen
class ExtractReport:
    """What a run did: clips written now, clips found finished, failures (id, reason), frames written."""

    written: tuple[ClipRow, ...]
    skipped: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    frames: int
    seconds: float
    split_table: Path | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


#: Names a split may not take: they are folders of the output itself.
RESERVED_SPLITS = frozenset({"keypoints", "crops", "boxes", "clips", ".partial"})


class Progress:
    """What a run reports while it works (the command line shows a rich progress bar)."""

    def start(self, total_clips: int) -> None: ...

    def frames(self, count: int) -> None: ...

    def clip_done(self, row: ClipRow) -> None: ...

    def clip_failed(self, clip_id: str, reason: str) -> None: ...

    def stop(self) -> None: ...


def run_extraction(request: ExtractRequest, registry: Any,
                   progress: Progress | None = None) -> ExtractReport:
    """Extract every clip of ``request`` into ``request.out`` with the estimators and streams of
    ``registry``; see ``docs/data.md`` for what is written."""
    progress = progress or Progress()
    started = time.perf_counter()
    plan = _plan(request, registry)
    out = OutputFolder(Path(request.out))
    out.root.mkdir(parents=True, exist_ok=True)
    rows = read_clips(out.clips_tsv)
    write_clips(out.clips_tsv, rows)  # drops a line torn by a killed run before anything is appended
    skipped = [job.video.id for job in plan.jobs if _finished(out, rows, job)]
    todo = [job for job in plan.jobs if job.video.id not in skipped]
    written: list[ClipRow] = []
    failed = list(plan.failed)

    def done(row: ClipRow) -> None:
        append_clip(out.clips_tsv, row)  # the clip is finished from here on
        rows[row.id] = row
        written.append(row)
        progress.clip_done(row)

    def fail(clip_id: str, reason: str) -> None:
        failed.append((clip_id, reason))
        progress.clip_failed(clip_id, reason)

    for clip_id, reason in plan.failed:
        progress.clip_failed(clip_id, reason)
    workers = min(request.settings.workers, len(todo))
    pool = WorkerPool(plan.options, workers) if workers > 1 else None
    progress.start(len(todo))  # after the workers started: the progress bar runs a thread
    try:
        if pool is not None:
            pool.run(todo, done, fail, progress.frames)
        else:
            _run_here(todo, plan.options, registry, done, fail, progress.frames)
    finally:
        if pool is not None:
            pool.stop()
        progress.stop()
        write_clips(out.clips_tsv, rows)
    split_table = None
    if plan.annotations is not None and request.split:
        finished = [rows[job.video.id] for job in plan.jobs if _finished(out, rows, job)]
        split_table = write_split(out.root, request.split, finished, plan.annotations)
    return ExtractReport(written=tuple(written), skipped=tuple(skipped), failed=tuple(failed),
                         frames=sum(row.frames for row in written), seconds=time.perf_counter() - started,
                         split_table=split_table)


def _finished(out: OutputFolder, rows: dict[str, ClipRow], job: ClipJob) -> bool:
    return out.is_finished(rows.get(job.video.id), [crop.name for crop in job.streams])


# --- planning -------------------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    """The jobs to run, the clips that failed before starting (no keypoints, no annotation line), the
    options every clip shares, and the annotations (with ``--annotations``)."""

    jobs: list[ClipJob]
    failed: list[tuple[str, str]]
    options: ExtractOptions
    annotations: Annotations | None


def _plan(request: ExtractRequest, registry: Any) -> _Plan:
    """What to do for ``request``; bad usage raises (exit code 2)."""
    if (request.keypoints is None) == (request.estimator is None):
        raise DataError("give exactly one of --keypoints PATH (existing keypoint files) and --estimator NAME "
                        "(a registered keypoint estimator; `mska plugins --all` lists them)")
    if (request.annotations is None) != (request.split is None):
        raise DataError("--annotations and --split go together: the TSV (id, gloss, text) and the split its "
                        "videos belong to")
    if request.split is not None and (request.split in RESERVED_SPLITS or "/" in request.split):
        raise DataError(f"--split {request.split!r} is a folder of the output; use train, dev or test")
    layouts = {layout.name: layout for layout in registry.layouts}
    if request.settings.layout is not None and request.settings.layout not in layouts:
        raise UnknownNameError(f"[extract] layout {request.settings.layout!r} is not registered; registered: "
                               f"{', '.join(layouts)}")
    crops = _stream_crops(request.settings.streams, registry)
    videos = find_videos(request.videos)
    if not videos:
        raise DataError(f"no videos ({', '.join(('mp4', 'avi', 'mkv', 'webm', 'mov'))}) found in "
                        f"{', '.join(request.videos)}")
    annotations = Annotations.read(Path(request.annotations)) if request.annotations else None
    failed: list[tuple[str, str]] = []
    jobs: list[ClipJob] = []
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
    for video in videos:
        if annotations is not None and video.id not in annotations:
            failed.append((video.id, f"no line for {video.id!r} in the annotations {request.annotations}"))
            continue
        ref = source(video.id)
        if ref is None:
            failed.append((video.id, files.describe_missing(video.id)))
            continue
        jobs.append(ClipJob(video=video, keypoints=ref, streams=crops,
                            named_streams=bool(request.settings.streams)))
    options = ExtractOptions(out=Path(request.out), crop_size=request.settings.crop_size,
                             jpeg_quality=request.settings.jpeg_quality, layouts=layouts,
                             layout=request.settings.layout, plugins=request.plugins)
    return _Plan(jobs=jobs, failed=failed, options=options, annotations=annotations)


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
              done: Callable[[ClipRow], None], fail: Callable[[str, str], None],
              frames: Callable[[int], None]) -> None:
    estimator = None
    try:
        for job in jobs:
            if estimator is None and isinstance(job.keypoints, EstimatorRef):  # a failure here stops the run
                estimator = registry.keypoint_estimators.get(job.keypoints.name).build({})
            try:
                row = extract_clip(job, options, estimator, frames)
            except (ClipFailed, MskaError) as exc:
                fail(job.video.id, str(exc))
                continue
            done(row)
    finally:
        _close(estimator)


class WorkerPool:
    """Worker processes that take clips from a queue (at most two per worker wait in it).

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

    def run(self, jobs: Sequence[ClipJob], done: Callable[[ClipRow], None], fail: Callable[[str, str], None],
            frames: Callable[[int], None]) -> None:
        """Extract ``jobs``; report each clip through ``done`` or ``fail`` and progress through ``frames``."""
        pending: Iterator[ClipJob] = iter(jobs)
        queued = 0
        current: dict[int, str] = {}  # worker pid -> clip id it works on
        outstanding = len(jobs)

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
                        clip_id = current.pop(process.pid)
                        fail(clip_id, f"the worker process extracting it died (exit code {process.exitcode})")
                        outstanding -= 1
                if outstanding and not any(p.is_alive() for p in self.processes):
                    for job in pending:
                        fail(job.video.id, "no worker process left to extract it")
                    return
                continue
            if kind == "frames":
                frames(payload)
            elif kind == "start":
                current[pid] = payload
                queued -= 1
                feed()
            elif kind == "fatal":
                raise PluginError(payload)
            else:
                current.pop(pid, None)
                outstanding -= 1
                if kind == "done":
                    done(payload)
                else:
                    fail(*payload)

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
    """A worker process: extract clips from ``tasks`` until ``None``; report on ``results``."""
    from mska_core.registry import get_registry, registry_for

    pid = os.getpid()
    estimator = None
    try:
        while (job := _next_job(tasks, parent)) is not None:
            results.put(("start", pid, job.video.id))
            if estimator is None and isinstance(job.keypoints, EstimatorRef):
                try:
                    registry = registry_for(options.plugins, get_registry())  # this process's own
                    estimator = registry.keypoint_estimators.get(job.keypoints.name).build({})
                except MskaError as exc:  # the estimator cannot run at all: the parent stops the run
                    results.put(("fatal", pid, str(exc)))
                    return
            try:
                row = extract_clip(job, options, estimator, lambda n: results.put(("frames", pid, n)))
            except (ClipFailed, MskaError) as exc:
                results.put(("failed", pid, (job.video.id, str(exc))))
            except Exception as exc:  # noqa: BLE001 - one clip's surprise must not stop the others
                results.put(("failed", pid, (job.video.id, f"{type(exc).__name__}: {exc}")))
            else:
                results.put(("done", pid, row))
    except KeyboardInterrupt:  # the parent reports the interruption
        pass
    finally:
        _close(estimator)


def _close(estimator: Any) -> None:
    close = getattr(estimator, "close", None)
    if callable(close):
        close()

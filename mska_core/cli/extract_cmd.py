"""``mska extract VIDEO|DIR ... --out OUT [--keypoints PATH | --estimator NAME]``: keypoints and
per-stream crops from videos, frame folders and segments of recordings (the output layout is in
``docs/data.md`` and :mod:`mska_core.data.contract`).

Every option but the inputs has an ``[extract]`` config key; flags win over ``--config`` and ``--set``.
Defaults live in :class:`mska_core.config.schema.ExtractConfig`. Exit code 1 when some clip failed.
"""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import add_config_options, emit_json, status_console

#: Flags whose destination is the [extract] key of the same name.
_EXTRACT_FLAGS = ("streams", "crop_size", "jpeg_quality", "layout", "workers", "crop_format", "fps", "mirrored",
                  "min_found", "preview")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "extract", help="keypoints and per-stream crops (face, hands, ...) from videos and frame folders",
        description=(
            "Read videos (PyAV), frame folders or segments of recordings (--annotations) frame by frame, take "
            "each frame's keypoints from existing files (--keypoints) or a keypoint estimator plugin "
            "(--estimator), and cut a square crop per frame for every stream that declares a crop region. "
            "Writes OUT/keypoints/ID.npy, OUT/crops/STREAM/ID.crops (one file per clip and stream) and "
            "OUT/clips.tsv; finished clips are skipped on a re-run. Exit code 1 if a clip failed."
        ),
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO|DIR",
                        help="video files, frame folders, or folders searched recursively for videos (mp4, avi, "
                             "mkv, webm, mov) and frame folders (folders of png/jpg frames)")
    parser.add_argument("--out", required=True, metavar="OUT", help="output folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--keypoints", metavar="PATH",
                        help="a folder of ID.npy / ID.npz / ID.pose files (any .pose header a layout reads), one such "
                             "file, or an MSKA pickle")
    source.add_argument("--estimator", metavar="NAME",
                        help="a registered keypoint estimator (mska plugins --all lists them)")
    parser.add_argument("--streams", type=_names, metavar="A,B",
                        help="streams to crop (default: every stream with a crop region in the layout)")
    parser.add_argument("--crop-size", type=int, metavar="PX", help="side of the square crops in pixels")
    parser.add_argument("--jpeg-quality", type=int, metavar="Q", help="JPEG quality of the crops (1-100)")
    parser.add_argument("--layout", help="layout of keypoint files (default: the one with their joint count)")
    parser.add_argument("--annotations", metavar="TABLE",
                        help="id, gloss, text per clip (or id, video, start, end, gloss, text: segments; or a "
                             "PHOENIX-2014T corpus CSV): OUT also becomes a directory-format corpus")
    parser.add_argument("--split", metavar="NAME", help="with --annotations: the split these clips form")
    parser.add_argument("--fps", type=float, metavar="N", help="frame rate of frame folders (default 25)")
    parser.add_argument("--crop-format", choices=("packed", "files"),
                        help="packed: one file per clip and stream (default); files: one JPEG per frame")
    parser.add_argument("--shard", type=_shard, metavar="K/N",
                        help="extract only part K of N (a deterministic split of the inputs), writing "
                             "clips.K-of-N.tsv; a final run without --shard merges the parts")
    parser.add_argument("--workers", type=int, metavar="N", help="clips extracted at once, in processes")
    parser.add_argument("--mirrored", action="store_true", default=None,
                        help="the recordings are mirror images (selfie cameras): un-mirror frames and keypoint "
                             "files so that left is the signer's left (an annotation table's mirrored column "
                             "decides per clip)")
    parser.add_argument("--min-found", type=float, metavar="F",
                        help="flag a clip whose stream's part was found in fewer than this fraction of its "
                             "frames (default 0.5)")
    parser.add_argument("--strict", action="store_true",
                        help="a clip flagged by --min-found fails: nothing of it is written")
    parser.add_argument("--preview", action="store_true", default=None,
                        help="write OUT/preview/ID.png per clip: frames x streams, missing frames marked")
    parser.add_argument("--config", metavar="FILE", help="TOML config; its [extract] table sets the defaults")
    add_config_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="write a summary as JSON on stdout")
    parser.set_defaults(run=run)


def _shard(text: str) -> tuple[int, int]:
    part, _, parts = text.partition("/")
    try:
        shard = (int(part), int(parts))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N (e.g. 3/8)") from None
    if not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be between 1 and N")
    return shard


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def resolve_config(args: argparse.Namespace) -> Any:
    """The config file and ``--set`` overrides, then the flags on top."""
    import attrs

    from mska_core.config import load_config
    from mska_core.errors import ConfigError

    config = load_config(args.config, args.overrides)
    flags = {key: getattr(args, key) for key in _EXTRACT_FLAGS if getattr(args, key) is not None}
    try:
        return attrs.evolve(config, extract=attrs.evolve(config.extract, **flags))
    except ValueError as exc:  # a schema validator, e.g. --crop-size 0
        raise ConfigError(f"command line: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mska_core.extract import ExtractRequest, run_extraction
    from mska_core.extract.quality import describe_found
    from mska_core.registry import get_registry, registry_for

    config = resolve_config(args)
    registry = registry_for(config.plugins, get_registry())
    request = ExtractRequest(
        videos=tuple(args.videos), out=Path(args.out), keypoints=args.keypoints, estimator=args.estimator,
        annotations=args.annotations, split=args.split, settings=config.extract, plugins=config.plugins,
        shard=args.shard, margin=config.data.frame_margin, strict=args.strict,
    )
    out = status_console()
    progress = _RichProgress(out, enabled=not args.no_progress)
    report = run_extraction(request, registry=registry, progress=progress)
    for notice in report.notices:
        out.print(f"notice: {notice}", soft_wrap=True, markup=False)
    out.print(f"extracted {len(report.written)} clip(s), {report.frames} frames in {report.seconds:.1f} s "
              f"({report.frames_per_second:.0f} frames/s); {len(report.skipped)} already finished; "
              f"{len(report.failed)} failed", soft_wrap=True)
    found = report.found()
    if found:
        out.print(f"found in the frames written: {describe_found(found)}", soft_wrap=True, markup=False)
    for row, scarce in report.flagged(config.extract.min_found):
        out.print(f"flagged: clip {row.id}: {describe_found(scarce)} of its {row.frames} frames found, below "
                  f"[extract] min_found = {config.extract.min_found:g}; its missing frames are masked, not learned "
                  "from", soft_wrap=True, markup=False)
    outside = [row for row in report.written if row.outside > 0]
    for row in outside:
        out.print(f"outside: clip {row.id}: {row.outside:.1%} of its found joints beyond the frame by more than "
                  f"{config.data.frame_margin:g} of its size ([data] invalid decides at training)", soft_wrap=True,
                  markup=False)
    if report.split_table is not None:
        out.print(f"wrote {report.split_table}", soft_wrap=True)
    if args.json:
        emit_json({
            "out": str(request.out),
            "written": [row.id for row in report.written],
            "skipped": list(report.skipped),
            "failed": [{"id": clip_id, "reason": reason} for clip_id, reason in report.failed],
            "frames": report.frames,
            "seconds": round(report.seconds, 3),
            "split_table": str(report.split_table) if report.split_table else None,
            "found": {name: round(value, 4) for name, value in found.items()},
            "clips": {row.id: {"found": dict(row.found), "outside": row.outside, "mirrored": row.mirrored}
                      for row in report.written},
            "flagged": [row.id for row, _ in report.flagged(config.extract.min_found)],
        })
    return 1 if report.failed else 0


class _RichProgress:
    """A rich progress bar on stderr (clips, frames/s); failures as one line each."""

    def __init__(self, out: Any, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.bar: Any = None
        self.task: Any = None

    def start(self, total_clips: int) -> None:
        if not self.enabled or total_clips == 0:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("extract"), BarColumn(), MofNCompleteColumn(), TextColumn("clips"),
            TextColumn("{task.fields[rate]:>6.0f} frames/s"), TimeElapsedColumn(),
            console=self.out, transient=True,
        )
        self.task = self.bar.add_task("extract", total=total_clips, rate=0.0, frames=0)
        self.bar.start()

    def frames(self, count: int) -> None:
        if self.bar is None or count == 0:
            return
        task = self.bar.tasks[self.task]
        frames = task.fields["frames"] + count
        elapsed = task.elapsed or 0.0
        self.bar.update(self.task, frames=frames, rate=frames / elapsed if elapsed > 0 else 0.0)

    def clip_done(self, row: Any) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def clip_failed(self, clip_id: str, reason: str) -> None:
        self.out.print(f"mska: clip {clip_id} failed: {reason}", soft_wrap=True, markup=False)
        if self.bar is not None:
            self.bar.advance(self.task)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()

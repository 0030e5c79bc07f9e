"""Reading a late segment of a long recording: seeking to the keyframe before it against decoding
from the start of the video.

A recording is made here (``--seconds`` of H.264 at 25 frames/s, ``--size``, libx264's default of a
keyframe every 250 frames, the scene of :mod:`bench.extract`); each round reads the frames of a
``--length`` second segment starting at ``--start`` seconds with
:meth:`mska_core.extract.videos.VideoReader.frames` (seeking) and with the same reader made to decode
from frame 0 (what extraction did before it seeked), interleaved, checking that both give the same
frame indices. It reports the median seconds, the frames decoded and the ratio.

    python -m bench.segments [--seconds 120] [--start 100] [--length 3] [--size 640x480] [--repeat 5]
                             [--json bench/results/segments.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def read_segment(path: Path, start: float, end: float, seek: bool) -> tuple[float, int, list[int]]:
    """Seconds, frames decoded and frame indices of reading ``[start, end)`` of ``path``."""
    from mska_core.extract.videos import VideoReader

    began = time.perf_counter()
    reader = VideoReader(path)
    indices = []
    try:
        for index, when, _ in reader.frames(start if seek else 0.0):
            if when >= end:
                break
            if when >= start:
                indices.append(index)
    finally:
        reader.close()
    return time.perf_counter() - began, reader.decoded, indices


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from bench.extract import scene, write_video

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--start", type=float, default=100.0)
    parser.add_argument("--length", type=float, default=3.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "segments.json"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    console = Console()
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        path = Path(tmp) / "recording.mp4"
        frames, _ = scene(width, height, 250, seed=0)  # ten seconds, looped
        write_video(path, [frames[t % len(frames)] for t in range(args.seconds * 25)])
        end = args.start + args.length
        runs: dict[str, list[float]] = {"seek": [], "from frame 0": []}
        decoded: dict[str, int] = {}
        for _ in range(args.repeat):
            results = {}
            for name, seek in (("seek", True), ("from frame 0", False)):
                seconds, count, indices = read_segment(path, args.start, end, seek)
                runs[name].append(seconds)
                decoded[name] = count
                results[name] = indices
            if results["seek"] != results["from frame 0"]:
                raise SystemExit("seeking gave other frames than decoding from the start")
        frames_in_segment = len(results["seek"])
    median = {name: statistics.median(values) for name, values in runs.items()}
    table = Table(title=f"a {args.length:g} s segment at {args.start:g} s of a {args.seconds} s {args.size} recording")
    for column in ("reader", "median s", "frames decoded", "segment frames"):
        table.add_column(column)
    for name in runs:
        table.add_row(name, f"{median[name]:.3f}", str(decoded[name]), str(frames_in_segment))
    console.print(table)
    ratio = median["from frame 0"] / median["seek"]
    console.print(f"seeking is {ratio:.1f}x faster (median of {args.repeat} interleaved rounds)")
    result: dict[str, Any] = {
        "seconds": args.seconds, "start": args.start, "length": args.length, "size": args.size,
        "repeat": args.repeat, "median_s": median, "runs_s": runs, "decoded": decoded,
        "segment_frames": frames_in_segment, "speedup": ratio, "python": platform.python_version(),
        "machine": platform.machine(),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

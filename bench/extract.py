"""Throughput of ``mska extract`` (decode + crop + write) against PyAV decoding of the same videos.

The videos are made here: H.264 mp4 files of a signer-like scene (a textured, lit background and a face
and two hands moving over it) with COCO-WholeBody keypoints of the face and hands, so extraction cuts
three crops per frame (face, hand_left, hand_right) as it would on real data. Every measurement runs
in this process, interleaved with the baseline, and the median of ``--repeat`` runs is reported:

- decode only: ``container.decode(video=0)`` over every frame of every clip;
- decode + RGB (the baseline): the same with each frame converted to an RGB array, the pixels any
  extraction needs;
- extract, packed crops (the default: one file per clip and stream) and one JPEG file per crop (the
  folder format), each with 1 and 2 workers: :func:`mska_core.extract.run_extraction` into a fresh
  folder (for 2 workers, including starting the worker processes);
- for scale, creating as many small files as the folder format writes crops (three per frame), with
  no video: what the folder's file system charges for one file per crop.

Beside the rates it reports the bytes written per frame against the input video's, and the files each
format creates per 1,000 frames. The folder's file system type (from ``/proc/mounts``) is recorded:
run it on the disk training will read from, not on a tmpfs.

    python -m bench.extract [--clips 4] [--frames 120] [--size 640x480] [--repeat 3] [--dir DIR]
                            [--json bench/results/extract.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

FACE, LEFT_HAND, RIGHT_HAND = range(23, 91), range(91, 112), range(112, 133)


def scene(width: int, height: int, frames: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames of a moving face and two hands over a textured background, and their keypoints
    ``[T, 133, 3]`` (face and hand points on each part's outline)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    ramp = np.linspace(60, 160, width, dtype=np.float32)[None, :, None]
    background = np.clip(ramp + texture, 0, 255).astype(np.uint8)
    points = np.zeros((frames, 133, 3), dtype=np.float32)
    images = []
    unit = min(width, height)
    for t in range(frames):
        phase = 2 * np.pi * t / max(frames, 1)
        parts = {
            FACE: (width * 0.5 + unit * 0.02 * np.sin(phase), height * 0.3, unit * 0.12, (215, 170, 140)),
            LEFT_HAND: (width * 0.3 + unit * 0.1 * np.cos(phase), height * 0.7 + unit * 0.08 * np.sin(phase),
                        unit * 0.07, (205, 160, 130)),
            RIGHT_HAND: (width * 0.7 - unit * 0.1 * np.cos(phase), height * 0.65 + unit * 0.1 * np.sin(2 * phase),
                         unit * 0.07, (205, 160, 130)),
        }
        image = Image.fromarray(np.roll(background, t, axis=1))
        draw = ImageDraw.Draw(image)
        for joints, (cx, cy, radius, colour) in parts.items():
            draw.ellipse((cx - radius, cy - radius * 1.2, cx + radius, cy + radius * 1.2), fill=colour)
            angles = np.linspace(0, 2 * np.pi, len(joints), endpoint=False)
            points[t, list(joints), 0] = cx + radius * np.cos(angles)
            points[t, list(joints), 1] = cy + radius * 1.2 * np.sin(angles)
            points[t, list(joints), 2] = 1.0
        images.append(np.asarray(image))
    return images, points


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "preset": "fast"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def decode_only(videos: list[Path], rgb: bool) -> int:
    from mska_core.extract.videos import decode_frames, open_video, rgb_array

    count = 0
    for path in videos:
        container = open_video(path)
        try:
            for frame in decode_frames(container, path):
                if rgb:
                    rgb_array(frame)
                count += 1
        finally:
            container.close()
    return count


def create_files(folder: Path, frames: int, per_frame: int, size: int = 3000) -> int:
    """Create ``per_frame`` files of ``size`` bytes per frame (what extraction's crops cost the file
    system, without decoding or encoding anything); returns the frames."""
    data = bytes(size)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(frames):
        for stream in range(per_frame):
            (folder / f"{stream}-{index:06d}.jpg").write_bytes(data)
    return frames


def extract(videos: list[Path], keypoints: Path, out: Path, workers: int, crop_format: str = "packed") -> int:
    from mska_core.config.schema import ExtractConfig
    from mska_core.extract import ExtractRequest, run_extraction
    from mska_core.registry import get_registry

    report = run_extraction(ExtractRequest(videos=tuple(map(str, videos)), out=out, keypoints=str(keypoints),
                                           settings=ExtractConfig(workers=workers, crop_format=crop_format)),
                            registry=get_registry())
    if report.failed:
        raise SystemExit(f"extraction failed: {report.failed}")
    return report.frames


def file_system(folder: Path) -> str:
    """The type of the file system ``folder`` is on (the longest mount point above it in /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(folder.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and (resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def count_files(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


def folder_bytes(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            parts = path.relative_to(folder).parts
            key = f"crops/{parts[1]}" if parts[0] == "crops" else parts[0]  # a stream's crops, keypoints, ...
            sizes[key] = sizes.get(key, 0) + path.stat().st_size
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None,
                        help="folder for the videos and outputs (default: the system's temporary folder)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "extract.json"))
    args = parser.parse_args()
    os.environ["MSKA_LOAD_PLUGINS"] = ""  # only mska-core's own streams: face, hand_left, hand_right
    width, height = (int(v) for v in args.size.lower().split("x"))

    work = Path(tempfile.mkdtemp(prefix="mska-bench-extract-", dir=args.dir))
    try:
        videos = []
        (work / "keypoints").mkdir()
        for index in range(args.clips):
            frames, points = scene(width, height, args.frames, seed=index)
            videos.append(work / f"clip{index}.mp4")
            write_video(videos[-1], frames)
            np.save(work / "keypoints" / f"clip{index}.npy", points)
        total = args.clips * args.frames
        runs = {
            "decode only": lambda: decode_only(videos, rgb=False),
            "decode + RGB array (baseline)": lambda: decode_only(videos, rgb=True),
            "extract, packed crops, 1 worker": lambda: extract(videos, work / "keypoints", work / "out-p1", 1),
            "extract, packed crops, 2 workers": lambda: extract(videos, work / "keypoints", work / "out-p2", 2),
            "extract, a file per crop, 1 worker": lambda: extract(videos, work / "keypoints", work / "out-f1", 1,
                                                                  "files"),
            "extract, a file per crop, 2 workers": lambda: extract(videos, work / "keypoints", work / "out-f2", 2,
                                                                   "files"),
            "create 3 files/frame, no video": lambda: create_files(work / "out-files", total, 3),
        }
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for name, run in runs.items():  # warm-up: file cache, imports
            assert run() == total, name
        sizes = {"packed": folder_bytes(work / "out-p1"), "files": folder_bytes(work / "out-f1")}
        files = {"packed": count_files(work / "out-p1"), "files": count_files(work / "out-f1")}
        for _ in range(args.repeat):  # interleaved, so load on the machine affects all alike
            for name, run in runs.items():
                for out in work.glob("out*"):  # extraction starts from an empty folder, untimed
                    shutil.rmtree(out)
                start = time.perf_counter()
                run()
                samples[name].append(total / (time.perf_counter() - start))
        video_bytes = sum(path.stat().st_size for path in videos)
        kind = file_system(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rates = {name: statistics.median(values) for name, values in samples.items()}
    baseline = rates["decode + RGB array (baseline)"]
    decode = rates["decode only"]

    from rich.console import Console
    from rich.table import Table

    from mska_core.config.schema import ExtractConfig

    where = args.dir or tempfile.gettempdir()
    table = Table(title=f"mska extract, {args.clips} clips x {args.frames} frames of {width}x{height} in {where} "
                        f"({kind}; median of {args.repeat}; higher is better)")
    table.add_column("run")
    table.add_column("frames/s", justify="right")
    table.add_column("x decode + RGB", justify="right")
    table.add_column("x decode only", justify="right")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:.0f}", f"{rate / baseline:.2f}", f"{rate / decode:.2f}")
    console = Console()
    console.print(table)
    sizes_table = Table(title="bytes on disk per frame, and files created per 1,000 frames")
    sizes_table.add_column("what")
    for crop_format in sizes:
        sizes_table.add_column(f"{crop_format}: bytes/frame", justify="right")
    keys = sorted({key for found in sizes.values() for key in found})
    for key in keys:
        sizes_table.add_row(key, *(f"{sizes[f].get(key, 0) / total:,.0f}" for f in sizes))
    sizes_table.add_row("all outputs", *(f"{sum(sizes[f].values()) / total:,.0f}" for f in sizes))
    sizes_table.add_row("x the mp4 video (input)", *(f"{sum(sizes[f].values()) / video_bytes:.2f}" for f in sizes))
    sizes_table.add_row("files per 1,000 frames", *(f"{1000 * files[f] / total:,.1f}" for f in sizes))
    console.print(sizes_table)
    console.print(f"the mp4 video (input): {video_bytes / total:,.0f} bytes/frame")

    result = {
        "benchmark": "extract",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "settings": {"dir": str(Path(where).resolve()), "file_system": kind, "clips": args.clips,
                     "frames": args.frames, "width": width, "height": height, "repeat": args.repeat,
                     "crop_size": ExtractConfig().crop_size,
                     "streams": sorted(k.split("/")[1] for k in sizes["packed"] if k.startswith("crops/"))},
        "frames_per_second": rates,
        "ratio_to_decode_rgb": {name: rate / baseline for name, rate in rates.items()},
        "ratio_to_decode_only": {name: rate / decode for name, rate in rates.items()},
        "samples": samples,
        "bytes_per_frame": {f: {key: value / total for key, value in found.items()} for f, found in sizes.items()},
        "bytes_per_frame_total": {f: sum(found.values()) / total for f, found in sizes.items()},
        "output_over_input": {f: sum(found.values()) / video_bytes for f, found in sizes.items()},
        "files_per_1000_frames": {f: 1000 * count / total for f, count in files.items()},
        "video_bytes_per_frame": video_bytes / total,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

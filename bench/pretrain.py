"""Throughput of a DINO pretraining step against a plain backbone step and against the data pipeline.

For each architecture (the tiny test ViT and DINOv2 ViT-S/14, both at the ``[pretrain]`` defaults:
112 px, 2 global and ``local_crops`` local crops of 56 px, ``out_dim`` prototypes, ``centering``) and
each device (CPU, and CUDA when available), side by side in one process:

- **DINO step**: what ``mska pretrain`` does per batch, through the same model object
  (``training.dino.DINO``): ``forward_backward`` (teacher forward on the global views, student forward
  on all views, DINO + KoLeo loss, the step's figures, backward), clipping, AdamW, ``update_teacher``;
- **backbone step** (baseline): forward and backward of the student backbone alone on the same views;
- **multi-crop data**: building the batch's views on the CPU (``MultiCropDataset`` over decoded
  images, no model), from rendered images in memory and from PNG files on disk.

It reports images per second and the ratio of data time to DINO-step time (below 1 means one
data-loading worker keeps up with the model).

    python -m bench.pretrain [--batch-size 32] [--steps 3] [--json bench/results/pretrain.json]

``--against lightly`` (or ``--against dinov2 --dinov2-src DIR`` on a GPU with xFormers) times our
step side by side with the code a user would otherwise run instead, with the step's float32 floor
and profiles (see ``bench/dino_against.py``); its last line is ``DINO step vs lightly: X×``, the
lowest ratio over ``--local-crops``:

    python -m bench.pretrain --against lightly [--local-crops 2 8] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named like the standard library's ``inspect``: keep the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import importlib.util
import json
import platform
import statistics
import tempfile
import time

import torch

from mska_core.config import PretrainConfig
from mska_core.data.crops import CropFolder, MultiCrop, MultiCropDataset, collate_views
from mska_core.registry import get_registry
from mska_core.synthetic.crops import SyntheticCrops
from mska_core.synthetic.render import write_synthetic_crops
from mska_core.training.dino import DINO, DINOHead

ARCHS = ("vit_tiny_test", "dinov2_vits14")
DEFAULTS = PretrainConfig()
IMG_SIZE, LOCAL_SIZE, LOCAL_CROPS = DEFAULTS.img_size, 56, DEFAULTS.local_crops


def _time(fn, steps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(arch: str, device: torch.device, batch: int, steps: int) -> dict:
    from mska_core.backbones import build_arch

    registry = get_registry()
    torch.manual_seed(0)
    backbone = build_arch(arch, img_size=IMG_SIZE)
    model = DINO(backbone, DINOHead(backbone.feature_dim, DEFAULTS.out_dim),
                 registry.losses.get("dino").build(out_dim=DEFAULTS.out_dim, centering=DEFAULTS.centering),
                 koleo_loss=registry.losses.get("koleo").build(), koleo_weight=DEFAULTS.koleo_weight).to(device)
    optimizer = torch.optim.AdamW(model.param_groups(), lr=1e-4)
    views = [torch.randn(batch, 3, IMG_SIZE, IMG_SIZE, device=device) for _ in range(2)]
    views += [torch.randn(batch, 3, LOCAL_SIZE, LOCAL_SIZE, device=device) for _ in range(LOCAL_CROPS)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def dino_step() -> None:  # the loop's step (training/dino.py pretrain), schedules aside
        optimizer.zero_grad(set_to_none=True)
        model.forward_backward(views, DEFAULTS.warmup_teacher_temp)
        model.clip_gradients(DEFAULTS.grad_clip)
        optimizer.step()
        model.update_teacher(DEFAULTS.momentum_teacher)
        sync()

    student = model.student

    def backbone_step() -> None:
        student.backbone.zero_grad(set_to_none=True)
        features = torch.cat([student.backbone(torch.cat(views[:2])), student.backbone(torch.cat(views[2:]))])
        features.square().mean().backward()
        sync()

    dino_s = _time(dino_step, steps)
    backbone_s = _time(backbone_step, steps)
    return {"arch": arch, "device": str(device), "batch": batch, "dino_step_s": dino_s,
            "dino_images_per_s": batch / dino_s, "backbone_step_s": backbone_s,
            "backbone_images_per_s": batch / backbone_s, "dino_overhead": dino_s / backbone_s}


def bench_data(batch: int, steps: int) -> dict:
    augment = MultiCrop(global_size=IMG_SIZE, local_size=LOCAL_SIZE, local_crops=LOCAL_CROPS)
    memory = SyntheticCrops("face", batch, IMG_SIZE, seed=0)
    for i in range(batch):
        memory.load(i)  # render once, as the synthetic source does
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_crops(folder, "face", batch, IMG_SIZE, seed=0)
        for name, source in (("memory", memory), ("png", CropFolder([folder]))):
            dataset = MultiCropDataset(source, augment, seed=0)
            seconds = _time(lambda: collate_views([dataset[i] for i in range(batch)]), steps)
            results[name] = {"batch_s": seconds, "images_per_s": batch / seconds}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (median)")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--json", default=None, help="default: bench/results/pretrain.json, or "
                        "bench/results/pretrain_against_NAME.json with --against")
    parser.add_argument("--against", choices=["lightly", "dinov2"], default=None,
                        help="time our DINO step side by side with lightly's or the official dinov2 one")
    parser.add_argument("--dinov2-src", type=Path, default=None, help="a facebookresearch/dinov2 checkout")
    parser.add_argument("--local-crops", type=int, nargs="+", default=[DEFAULTS.local_crops, 8],
                        help="local views per image, one comparison each (default: ours, and the guide's 8)")
    parser.add_argument("--local-size", type=int, default=LOCAL_SIZE)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="with --against lightly: also ours with the "
                        "backbones under torch.compile (compiled in the warm-up step)")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.against:
        return against(args)
    args.json = args.json or "bench/results/pretrain.json"

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    data = bench_data(args.batch_size, args.steps)
    models = [bench_model(arch, device, args.batch_size, args.steps) for device in devices for arch in args.archs]
    for row in models:
        row["data_to_step_ratio"] = data["memory"]["batch_s"] / row["dino_step_s"]
        row["png_data_to_step_ratio"] = data["png"]["batch_s"] / row["dino_step_s"]

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"DINO pretraining, batch {args.batch_size}, {IMG_SIZE} px + {LOCAL_CROPS} x {LOCAL_SIZE} px")
    for column in ("arch", "device", "DINO step img/s", "backbone step img/s", "DINO / backbone time",
                   "data / step (memory)", "data / step (png)"):
        table.add_column(column, justify="right")
    for row in models:
        table.add_row(row["arch"], row["device"], f"{row['dino_images_per_s']:.1f}",
                      f"{row['backbone_images_per_s']:.1f}", f"{row['dino_overhead']:.2f}",
                      f"{row['data_to_step_ratio']:.2f}", f"{row['png_data_to_step_ratio']:.2f}")
    console = Console(stderr=True)
    console.print(table)
    console.print(f"multi-crop data on CPU: {data['memory']['images_per_s']:.1f} img/s from memory, "
                  f"{data['png']['images_per_s']:.1f} img/s from PNG files (one process)")
    result = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
        "batch_size": args.batch_size, "img_size": IMG_SIZE, "local_size": LOCAL_SIZE, "local_crops": LOCAL_CROPS,
        "steps": args.steps, "data": data, "models": models,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    from mska_core.io import atomic_write_bytes

    atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
    return 0


def against(args: argparse.Namespace) -> int:
    from bench import dino_against

    if args.against == "dinov2":
        if args.dinov2_src is None or not (args.dinov2_src / "dinov2" / "train" / "ssl_meta_arch.py").is_file():
            print("bench.pretrain: --against dinov2 needs --dinov2-src DIR, a checkout of "
                  "facebookresearch/dinov2 (dinov2/train/ssl_meta_arch.py under it)", file=sys.stderr)
            return 2
        missing = dino_against.dinov2_available()
        if missing:
            print(f"bench.pretrain: the official dinov2 training step {missing}; run it on a GPU machine "
                  "with xFormers", file=sys.stderr)
            return 2
    elif importlib.util.find_spec("lightly") is None:
        print("bench.pretrain: --against lightly needs lightly (pip install 'mska-core[bench]')", file=sys.stderr)
        return 2
    report = dino_against.compare(args.against, batch=args.batch_size, local_size=args.local_size,
                                  local_crops=args.local_crops, rounds=args.rounds, dinov2_src=args.dinov2_src,
                                  with_floor=not args.no_floor, with_profile=not args.no_profile,
                                  compiled=args.compile)
    report["machine"] = {"platform": platform.platform(), "python": sys.version.split()[0],
                         "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    headline = dino_against.print_report(report)
    report["headline"] = headline
    from mska_core.io import atomic_write_bytes

    path = Path(args.json or f"bench/results/pretrain_against_{args.against}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
    print(headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed of the MSKA paper preset (four keypoint streams and four VisualHeads) on the CPU (and CUDA).

Every run is the whole model of ``examples/configs/mska-slr-paper.toml`` at the Phoenix-2014T gloss
vocabulary (1,094): keypoint branches, fusion and the four heads.

1. **Against the reference** (the headline): eval-mode forward of B=1, T=100 clips in fp32, our
   paper mode and the reference implementation side by side in one process, interleaved, on the
   same weights (converted with ``convert_reference_state_dict``) and the same input; the largest
   relative difference of the logits is reported with the times. ``--reference PATH`` names a
   Python file (kept outside this repository) with a class ``Recognition(num_classes)`` that builds
   the reference's ``DSTA`` keypoint network (``num_subset=6``) and its four VisualHeads, and whose
   ``forward(keypoints [B, 3, T, 133], mask [B, 1, T'], lengths [B])`` returns ``{head: outputs}``.
   Without it the ratio is taken to the reference's measured 0.42 s.
2. **The grid**: forward (eval, no grad) and forward + backward (train mode) at B in {1, 4},
   T in {100, 400}, fp32 and bf16 autocast, paper and softmax attention.
3. **Where the time goes**: the top operators of torch.profiler for our paper-mode forward.

    python -m bench.encoder [--reference /tmp/refcheck/ref_mska.py] [--threads 2] [--quick]

Writes ``bench/results/encoder.json``. Keep it short on shared machines: few repetitions.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named like the standard library's ``inspect``: keep the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import contextlib
import importlib.util
import json
import platform
import statistics
import time

import torch

from mska_core.config import load_config
from mska_core.encoder import ClipBatch, MSKAEncoder
from mska_core.encoder.reference import convert_reference_state_dict

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "examples" / "configs" / "mska-slr-paper.toml"
RESULTS = ROOT / "bench" / "results" / "encoder.json"
REFERENCE_SECONDS = 0.42  # the reference's B=1, T=100 fp32 forward on two threads of these machines
VOCAB = 1094


def build(attention: str, device: torch.device) -> MSKAEncoder:
    model_cfg = load_config(PRESET, [f'model.attention="{attention}"']).model
    torch.manual_seed(0)
    return MSKAEncoder.from_config(model_cfg, vocab_size=VOCAB).to(device)


def clips(batch: int, frames: int, device: torch.device) -> ClipBatch:
    generator = torch.Generator().manual_seed(batch * 1000 + frames)
    points = torch.rand(batch, frames, 133, 3, generator=generator) * 2 - 1
    points[..., 2] = torch.rand(batch, frames, 133, generator=generator)
    return ClipBatch(points, torch.full((batch,), frames)).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, device: torch.device, repeats: int, warm_up: bool = True) -> float:
    if warm_up:
        fn()
        synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast(device: torch.device, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def step(encoder: MSKAEncoder, batch: ClipBatch, mode: str, device: torch.device, dtype: str):
    def forward() -> None:
        encoder.eval()
        with torch.no_grad(), autocast(device, dtype):
            encoder(batch)

    def forward_backward() -> None:
        encoder.train()
        encoder.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            out = encoder(batch)
            loss = sum(logits.float().log_softmax(-1).mean() for logits in out.logits.values())
        loss.backward()

    return forward if mode == "forward" else forward_backward


# -- 1. against the reference ----------------------------------------------------------------------


def load_reference(path: str):
    spec = importlib.util.spec_from_file_location("mska_reference_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Recognition(VOCAB)


def against_reference(path: str | None, repeats: int) -> dict:
    device = torch.device("cpu")
    ours = build("paper", device).eval()
    batch = clips(1, 100, device)
    result: dict = {"batch": 1, "frames": 100, "dtype": "fp32", "device": "cpu"}
    if path is None:
        result["ours_s"] = seconds(step(ours, batch, "forward", device, "fp32"), device, repeats)
        result["reference_s"] = REFERENCE_SECONDS
        result["reference"] = "the reference's measured 0.42 s (not run here)"
    else:
        reference = load_reference(path).eval()
        state = {f"recognition_network.{k}": v for k, v in reference.state_dict().items()}
        ours.load_state_dict(convert_reference_state_dict(state), strict=True)
        keypoints = batch.keypoints.permute(0, 3, 1, 2).contiguous()
        mask = torch.ones(1, 1, 25, dtype=torch.bool)
        lengths = torch.tensor([25])
        with torch.no_grad():
            theirs = reference(keypoints, mask, lengths)
            mine = ours(batch)
        result["max_relative_difference"] = max(
            float((mine.logits[h] - theirs[h]["gloss_logits"]).abs().max() / theirs[h]["gloss_logits"].abs().max())
            for h in mine.logits
        )
        ours_times, reference_times = [], []
        with torch.no_grad():
            ours(batch), reference(keypoints, mask, lengths)
            for _ in range(repeats):  # interleaved, so that both see the same machine load
                start = time.perf_counter()
                ours(batch)
                ours_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                reference(keypoints, mask, lengths)
                reference_times.append(time.perf_counter() - start)
        result["ours_s"] = statistics.median(ours_times)
        result["reference_s"] = statistics.median(reference_times)
        result["ours_min_s"], result["reference_min_s"] = min(ours_times), min(reference_times)
        result["reference"] = f"run side by side from {path}"
    result["speedup"] = result["reference_s"] / result["ours_s"]
    result["speedup_vs_0.42s"] = REFERENCE_SECONDS / result["ours_s"]
    return result


# -- 2. the grid -----------------------------------------------------------------------------------


def grid(device: torch.device, quick: bool) -> list[dict]:
    rows = []
    batches, frames = ((1,), (100,)) if quick else ((1, 4), (100, 400))
    for attention in ("paper", "softmax"):
        encoder = build(attention, device)
        for mode in ("forward", "forward+backward"):
            for dtype in ("fp32", "bf16"):
                for b in batches:
                    for t in frames:
                        # The smallest size warms the code paths up; larger ones are timed once.
                        small = b * t <= 100
                        took = seconds(step(encoder, clips(b, t, device), mode, device, dtype), device,
                                       repeats=3 if small else 1, warm_up=small)
                        rows.append({
                            "device": device.type, "attention": attention, "mode": mode, "dtype": dtype,
                            "batch": b, "frames": t, "seconds": took, "clips_per_s": b / took,
                        })
                        print(f"  {device.type} {attention:7s} {mode:16s} {dtype} B={b} T={t}: {took:.3f} s",
                              file=sys.stderr)
        del encoder
    return rows


# -- 3. profile ------------------------------------------------------------------------------------


def profile(top: int = 12) -> list[dict]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profile

    device = torch.device("cpu")
    encoder = build("paper", device).eval()
    batch = clips(1, 100, device)
    with torch.no_grad():
        encoder(batch)
        with run_profile(activities=[ProfilerActivity.CPU]) as prof:
            encoder(batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000,
         "share": e.self_cpu_time_total / total}
        for e in events[:top]
    ]


def print_tables(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ref = report["reference"]
    head = Table(title="paper mode vs the reference: B=1, T=100, fp32 forward, CPU")
    for column in ("ours (s)", "reference (s)", "speed-up", "vs 0.42 s", "max rel. diff", "reference"):
        head.add_column(column, justify="right")
    diff = ref.get("max_relative_difference")
    head.add_row(f"{ref['ours_s']:.3f}", f"{ref['reference_s']:.3f}", f"{ref['speedup']:.2f}x",
                 f"{ref['speedup_vs_0.42s']:.2f}x", "-" if diff is None else f"{diff:.1e}", ref["reference"])
    console.print(head)
    table = Table(title=f"MSKA paper preset ({report['threads']} threads)")
    for column in ("device", "attention", "mode", "dtype", "B", "T", "seconds", "clips/s"):
        table.add_column(column, justify="right")
    for row in report["grid"]:
        table.add_row(row["device"], row["attention"], row["mode"], row["dtype"], str(row["batch"]),
                      str(row["frames"]), f"{row['seconds']:.3f}", f"{row['clips_per_s']:.2f}")
    console.print(table)
    prof = Table(title="where the time goes: paper-mode forward, B=1, T=100 (torch.profiler, self CPU)")
    for column in ("operator", "calls", "self ms", "share"):
        prof.add_column(column, justify="left" if column == "operator" else "right")
    for row in report["profile"]:
        prof.add_row(row["op"], str(row["calls"]), f"{row['self_ms']:.1f}", f"{row['share']:.0%}")
    console.print(prof)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="a Python file with the reference's Recognition (see above)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repetitions against the reference")
    parser.add_argument("--quick", action="store_true", help="B=1, T=100 only in the grid")
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "threads": args.threads,
        "reference": against_reference(args.reference, args.repeats),
        "grid": grid(torch.device("cpu"), args.quick),
    }
    if torch.cuda.is_available():
        report["grid"] += grid(torch.device("cuda"), args.quick)
    report["profile"] = profile()
    print_tables(report)
    from mska_core.io import atomic_write_bytes

    atomic_write_bytes(Path(args.json), (json.dumps(report, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

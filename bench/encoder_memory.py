"""Peak memory of the MSKA paper preset against the reference implementation's own code, each pass in
a fresh process.

Every measurement is one subprocess (``--worker``) that imports the same libraries for both sides,
builds one side — the reference's ``Recognition`` network (as ``bench/encoder.py`` builds it from
``--reference-src``) or our paper preset (``MSKAEncoder``, paper mode, every kernel on unless
``--disable``) — makes the input and reads its resident set (``VmRSS``: the model built), runs one
warm-up pass, reads ``VmRSS`` again, resets the high-water mark (``5`` written to
``/proc/self/clear_refs``), runs the measured pass and reads ``VmHWM`` from ``/proc/self/status``:

- **step peak**: the measured pass's high-water mark above the resident set just before it (what
  the pass needs beyond what the process already held, the allocator's memory kept from the
  warm-up included — the allocator reuses it, so this can be near zero);
- **pass peak**: the same high-water mark above the resident set of the built model and input
  (everything the pass needs: activations, saved tensors, gradients, temporaries);
- **process peak**: the largest resident set of the whole process (imports, building, warm-up and
  the pass).

The passes are those of ``bench/encoder.py``: a training step (train mode, forward + backward of the
reference's loss, gradients set to ``None`` before it) and an eval forward (eval mode, no grad).
The reference and ours alternate (the order turns each round), ``--rounds`` times; the table gives
medians.

    python -m bench.encoder_memory --reference-src /path/to/MSKA [--threads 2] [--rounds 3]

Writes ``bench/results/encoder_memory.json``. Linux only (``/proc``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named like the standard library's ``inspect``: keep the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import statistics
import subprocess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "encoder_memory.json"
#: The passes measured by default: (mode, batch).
PASSES = (("train", 4), ("eval", 1))
SIDES = ("reference", "paper")


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def worker(args: argparse.Namespace) -> dict:
    """One side, one pass, in this (fresh) process: the figures in KiB."""
    import torch
    import torch._dynamo  # (the reference's side imports these: both sides hold them)
    import torchvision.utils  # noqa: F401

    from bench import encoder as bench

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    imported = status_kib("VmRSS")
    case = bench.Case(args.batch, args.frames)
    if args.side == "reference":
        model = bench.build_reference(args.reference_src)
        run = (lambda: bench.reference_train(model, case)) if args.mode == "train" else (lambda: bench.reference_eval(model, case))
    else:
        from mska_core.config import load_config
        from mska_core.encoder import MSKAEncoder

        model_cfg = load_config(bench.PRESET, ['model.attention="paper"']).model
        model = MSKAEncoder.from_config(model_cfg, vocab_size=bench.VOCAB).set_disabled_kernels(args.disable)
        run = (lambda: bench.ours_train(model, case)) if args.mode == "train" else (lambda: bench.ours_eval(model, case))
    built = status_kib("VmRSS")
    run()  # warm-up
    before = status_kib("VmRSS")
    process_peak = status_kib("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")
    run()
    step_hwm = status_kib("VmHWM")
    return {"rss_imported_kib": imported, "rss_built_kib": built, "rss_before_kib": before,
            "step_hwm_kib": step_hwm, "step_peak_kib": step_hwm - before, "pass_peak_kib": step_hwm - built,
            "process_peak_kib": max(process_peak, step_hwm)}


def measure(args: argparse.Namespace, side: str, mode: str, batch: int) -> dict:
    command = [sys.executable, "-m", "bench.encoder_memory", "--worker", side, "--mode", mode, "--batch", str(batch),
               "--frames", str(args.frames), "--threads", str(args.threads), "--reference-src", str(args.reference_src)]
    if args.disable:
        command += ["--disable", *args.disable]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(f"bench.encoder_memory: the {side} {mode} B={batch} process failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-src", required=True, type=Path,
                        help="a checkout of sutwangyan/MSKA, outside this repository (see docs/encoder.md)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per side and pass")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--passes", nargs="+", default=[f"{m}:{b}" for m, b in PASSES],
                        help="MODE:B pairs (default train:4 eval:1)")
    parser.add_argument("--disable", nargs="*", default=[], help="our kernels to switch off (mska_core.encoder.KERNELS)")
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["train", "eval"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not Path("/proc/self/clear_refs").exists():
        print("bench.encoder_memory: needs Linux's /proc/self/clear_refs and /proc/self/status", file=sys.stderr)
        return 2
    if args.worker:
        args.side = args.worker
        print(json.dumps(worker(args)))
        return 0

    passes = []
    for item in args.passes:
        mode, _, batch = item.partition(":")
        if mode not in ("train", "eval") or not batch.isdigit():
            print(f"bench.encoder_memory: --passes {item!r}: expected MODE:B with MODE train or eval", file=sys.stderr)
            return 2
        passes.append((mode, int(batch)))
    report: dict = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "threads": args.threads, "frames": args.frames, "rounds": args.rounds, "disabled_kernels": args.disable,
        "load_average": os.getloadavg(),
        "command": "python -m bench.encoder_memory " + " ".join(argv if argv is not None else sys.argv[1:]),
        "passes": [],
    }
    for mode, batch in passes:
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for round_ in range(args.rounds):
            for side in (SIDES if round_ % 2 == 0 else SIDES[::-1]):
                runs[side].append(measure(args, side, mode, batch))
                print(f"  {mode} B={batch} {side}: {runs[side][-1]}", file=sys.stderr)
        medians = {side: {key: statistics.median(r[key] for r in values) for key in values[0]}
                   for side, values in runs.items()}
        report["passes"].append({"mode": mode, "batch": batch, "medians_kib": medians, "all": runs})
    print_table(report)
    from mska_core.io import atomic_write_bytes

    atomic_write_bytes(Path(args.json), (json.dumps(report, indent=2) + "\n").encode())
    return 0


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"peak memory, MiB (medians of {report['rounds']} fresh processes each, "
                        f"T={report['frames']}, {report['threads']} threads)")
    figures = (("pass_peak_kib", "pass peak"), ("step_peak_kib", "step peak"), ("process_peak_kib", "process peak"))
    for column in ("pass", "B", *[f"{label}: {side}" for _, label in figures for side in ("reference", "ours")]):
        table.add_column(column, justify="right")
    for row in report["passes"]:
        ref, ours = row["medians_kib"]["reference"], row["medians_kib"]["paper"]
        table.add_row(row["mode"], str(row["batch"]),
                      *[f"{side[key] / 1024:.0f}" for key, _ in figures for side in (ref, ours)])
    Console(width=None if sys.stdout.isatty() else 160).print(table)


if __name__ == "__main__":
    raise SystemExit(main())

"""Inspecting a large checkpoint against a plain ``torch.load`` of the same file.

Writes a checkpoint of about ``--gib`` GiB (our payload, then the same tensors as safetensors) in a
temporary folder, and measures, each in a fresh subprocess and interleaved with its baseline:

- ``describe(path)`` (what ``mska inspect --json`` runs: mmap + weights_only for torch files, the
  JSON header alone for safetensors) against ``torch.load(path, weights_only=True)`` and
  ``safetensors.torch.load_file``;
- ``diff_checkpoints(a, b)`` (what ``mska inspect A --diff B`` runs: both files memory-mapped,
  tensor by tensor, pages handed back after each) of two such torch files (B: every other tensor
  changed by 1e-3) against the baseline of ``torch.load`` of both files, then the same comparison
  key by key (``torch.equal`` and the largest absolute difference);
- wall time of the operation itself (after imports), wall time of the whole process, and the peak
  resident memory of the process (``resource.getrusage``, ``ru_maxrss``).

The files are deleted at the end.

    python -m bench.inspect [--gib 1.0] [--repeat 3] [--json bench/results/inspect.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's ``inspect``: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import textwrap
import time

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    path, what = sys.argv[1], sys.argv[2]
    if what != "describe-no-torch":
        import torch  # the header-only path must show it never needs torch
    from mska_core.checkpoints import describe, diff_checkpoints
    start = time.perf_counter()
    if what == "diff":
        report = diff_checkpoints(path, sys.argv[3])
        count = report.totals()["changed"]
    elif what == "torch.load both + compare":
        a = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        b = torch.load(sys.argv[3], map_location="cpu", weights_only=True)["state_dict"]
        count = 0
        for k in a:  # the same facts the diff reports: equal, largest difference, largest magnitude
            equal = torch.equal(a[k], b[k])
            largest = float((a[k] - b[k]).abs().max()), float(a[k].abs().max()), float(b[k].abs().max())
            count += not equal
    elif what.startswith("describe"):
        info = describe(path)
        count = info["totals"]["tensors"]
    elif what == "torch.load":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        count = len(obj["state_dict"])
    else:
        from safetensors.torch import load_file
        count = len(load_file(path))
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": elapsed, "peak_rss": peak, "tensors": count, "torch": "torch" in sys.modules}))
    """
)
_IMPORTS_ONLY = "import resource, torch, mska_core.checkpoints.inspector; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"


_WRITE = textwrap.dedent(
    """
    import sys, torch
    from mska_core.checkpoints import make_payload, save_checkpoint
    folder, gib = sys.argv[1], float(sys.argv[2])
    count = max(1, round(gib * 1024 / 16))  # tensors of 16 MiB (2048 x 2048 float32)
    state = {f"blocks.{i // 4}.mlp.fc{i % 4}.weight": torch.randn(2048, 2048) for i in range(count)}
    payload = make_payload("model", state, epoch=1)
    save_checkpoint(payload, folder + "/big.pt")
    save_checkpoint(payload, folder + "/big.safetensors")
    for i, key in enumerate(state):  # B: every other tensor changed a little (a fine-tuned copy)
        if i % 2:
            state[key] += 1e-3
    save_checkpoint(make_payload("model", state, epoch=2), folder + "/big_b.pt")
    """
)


def write_files(folder: Path, gib: float) -> tuple[Path, Path, Path]:
    """Write the two files in a child process: Linux keeps a process's peak RSS across exec, so the
    parent must never hold the tensors or every measured child would inherit that peak."""
    env = dict(os.environ, MSKA_LOAD_PLUGINS="")
    subprocess.run([sys.executable, "-c", _WRITE, str(folder), str(gib)], env=env, check=True)
    return folder / "big.pt", folder / "big.safetensors", folder / "big_b.pt"


def measure(path: Path, what: str, other: Path | None = None) -> dict[str, float]:
    env = dict(os.environ, MSKA_LOAD_PLUGINS="")
    start = time.perf_counter()
    extra = [str(other)] if other is not None else []
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(path), what, *extra], capture_output=True,
                            text=True, env=env, check=True)
    data = json.loads(result.stdout)
    data["process_seconds"] = time.perf_counter() - start
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "inspect.json"))
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="mska-inspect-bench-"))
    try:
        torch_file, st_file, changed_file = write_files(folder, args.gib)
        cases = {
            "diff A B (mmap, tensor by tensor)": (torch_file, "diff", changed_file),
            "torch.load both + compare (baseline)": (torch_file, "torch.load both + compare", changed_file),
            "describe (torch zip, mmap)": (torch_file, "describe", None),
            "torch.load (baseline)": (torch_file, "torch.load", None),
            "describe (safetensors header)": (st_file, "describe", None),
            "describe (safetensors header, torch never imported)": (st_file, "describe-no-torch", None),
            "safetensors load_file (baseline)": (st_file, "load_file", None),
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for _ in range(args.repeat):  # interleaved, so machine load affects all alike
            for name, (path, what, other) in cases.items():
                samples[name].append(measure(path, what, other))
        env = dict(os.environ, MSKA_LOAD_PLUGINS="")
        imports_rss = int(subprocess.run([sys.executable, "-c", _IMPORTS_ONLY], capture_output=True, text=True,
                                         env=env, check=True).stdout)
        sizes = {"torch": torch_file.stat().st_size, "safetensors": st_file.stat().st_size}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    results = {
        name: {key: statistics.median(s[key] for s in runs) for key in ("seconds", "process_seconds", "peak_rss")}
        for name, runs in samples.items()
    }
    pairs = {
        "diff of two torch zip files": ("diff A B (mmap, tensor by tensor)", "torch.load both + compare (baseline)"),
        "torch zip": ("describe (torch zip, mmap)", "torch.load (baseline)"),
        "safetensors": ("describe (safetensors header)", "safetensors load_file (baseline)"),
        "safetensors, torch never imported": (
            "describe (safetensors header, torch never imported)", "safetensors load_file (baseline)"),
    }
    ratios = {
        label: {
            "time": results[ours]["seconds"] / results[base]["seconds"],
            "peak_rss": results[ours]["peak_rss"] / results[base]["peak_rss"],
        }
        for label, (ours, base) in pairs.items()
    }

    from rich.console import Console
    from rich.table import Table

    gib = 1024 ** 3
    table = Table(title=f"inspect a {sizes['torch'] / gib:.2f} GiB checkpoint, median of {args.repeat} runs")
    for column in ("operation", "operation s", "process s", "peak RSS MiB"):
        table.add_column(column, justify="right" if column != "operation" else "left")
    for name, row in results.items():
        table.add_row(name, f"{row['seconds']:.3f}", f"{row['process_seconds']:.2f}", f"{row['peak_rss'] / 2**20:.0f}")
    console = Console()
    console.print(table)
    console.print(f"python + torch + mska_core imports alone: peak RSS {imports_rss / 2**20:.0f} MiB")
    for name, row in results.items():
        console.print(f"{name}: peak RSS above the imports {(row['peak_rss'] - imports_rss) / 2**20:+.0f} MiB")
    for label, ratio in ratios.items():
        console.print(f"{label}: ours / baseline time {ratio['time']:.4f}, peak RSS {ratio['peak_rss']:.3f}")

    out = {
        "benchmark": "inspect",
        "file_bytes": sizes,
        "repeat": args.repeat,
        "results": results,
        "ratios": ratios,
        "imports_only_peak_rss": imports_rss,
        "peak_rss_above_imports": {name: row["peak_rss"] - imports_rss for name, row in results.items()},
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

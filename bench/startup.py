"""Start-up time of the `mska` command against `python -c "import torch"`.

Listing plugins and printing help must never import torch or timm. This benchmark runs each command
in a fresh subprocess, side by side with the torch-import baseline, and reports medians and ratios.

    python -m bench.startup [--repeat 7] [--json bench/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "mska --help": [sys.executable, "-m", "mska_core", "--help"],
    "mska plugins": [sys.executable, "-m", "mska_core", "plugins"],
    "mska plugins --json": [sys.executable, "-m", "mska_core", "plugins", "--json"],
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import torch" (baseline)': [sys.executable, "-c", "import torch"],
}
BASELINE = 'python -c "import torch" (baseline)'


def time_command(argv: list[str], repeat: int) -> list[float]:
    env = dict(os.environ, MSKA_LOAD_PLUGINS="")
    subprocess.run(argv, capture_output=True, env=env, check=True)  # warm the file cache and .pyc
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "startup.json"))
    args = parser.parse_args()

    # Interleave the commands so that load on the machine affects all of them alike.
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            samples[name].extend(time_command(argv, 1))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians[BASELINE]

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"start-up, median of {args.repeat} runs (lower is better)")
    table.add_column("command")
    table.add_column("median s", justify="right")
    table.add_column("min s", justify="right")
    table.add_column("× of import torch", justify="right")
    for name, values in samples.items():
        table.add_row(name, f"{medians[name]:.3f}", f"{min(values):.3f}", f"{medians[name] / baseline:.2f}")
    Console().print(table)

    result = {
        "benchmark": "startup",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "median_s": medians,
        "min_s": {name: min(values) for name, values in samples.items()},
        "ratio_to_import_torch": {name: medians[name] / baseline for name in samples},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

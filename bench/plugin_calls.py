"""The cost of calling a third party's loss through the plugin guard, every training step.

A loss a plugin supplies is built through the registry, which wraps its ``forward`` so that a failure
names the plugin. This benchmark times one tiny loss forward (a mean of squares over 16 numbers, so
that the guard, not the arithmetic, is what is measured) called four ways, interleaved in one
process:

- ``bare``: the module called as torch calls it, no guard (the floor);
- ``guarded``: as the registry builds it now, failures attributed, no output redirection;
- ``guarded + redirect (before)``: the same guard with what the call prints sent to stderr, as every
  call into a third-party record did before (``os.dup``, two ``os.dup2`` and ``os.close`` of descriptor 1 and
  a swap of ``sys.stdout`` per call);
- ``redirect alone (no forward)``: entering and leaving :func:`mska_core.plugins.plugin_output_to_stderr` with
  nothing inside.

    python -m bench.plugin_calls [--calls 20000] [--repeat 5] [--json bench/results/plugin_calls.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def build_losses() -> dict[str, object]:
    """One loss module three ways: as the module itself, as the registry builds it now, and with the
    per-call redirection of before."""
    import torch

    from mska_core import LossSpec, hookimpl
    from mska_core.plugins import guarded
    from mska_core.registry import make_registry

    class Squares(torch.nn.Module):
        def forward(self, output: torch.Tensor, batch: object) -> torch.Tensor:
            return (output * output).mean()

    class SquaresPlugin:
        @hookimpl
        def mska_losses(self) -> list[LossSpec]:
            return [LossSpec("squares", Squares, "mean square")]

    registry = make_registry(SquaresPlugin(), warn=False)
    spec = registry.losses.get("squares")
    before = Squares()
    before.forward = guarded(before.forward, spec.provider, "LossSpec 'squares': build(...).forward", redirect=True)
    return {"bare": Squares(), "now": spec.build(), "before": before}


def per_call_us(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "plugin_calls.json"))
    args = parser.parse_args()

    import torch

    from mska_core.plugins import plugin_output_to_stderr

    torch.set_num_threads(1)
    losses = build_losses()
    x = torch.randn(16)

    def redirect_alone() -> None:
        with plugin_output_to_stderr():
            pass

    cases: dict[str, Callable[[], object]] = {
        "bare forward (floor)": lambda: losses["bare"](x, None),
        "guarded (now)": lambda: losses["now"](x, None),
        "guarded + redirect (before)": lambda: losses["before"](x, None),
        "redirect alone (no forward)": redirect_alone,
    }
    for call in cases.values():  # warm-up
        per_call_us(call, 200)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):  # interleaved, so that load on the machine affects every case alike
        for name, call in cases.items():
            samples[name].append(per_call_us(call, args.calls))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor = medians["bare forward (floor)"]

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one loss forward, median of {args.repeat} x {args.calls} calls (lower is better)")
    table.add_column("call")
    table.add_column("µs per call", justify="right")
    table.add_column("over the floor µs", justify="right")
    for name, value in medians.items():
        table.add_row(name, f"{value:.2f}", "" if name.startswith("redirect") else f"{value - floor:+.2f}")
    Console().print(table)
    before, now = medians["guarded + redirect (before)"], medians["guarded (now)"]
    print(f"per step and plugin loss: {before - now:.2f} µs and 4 system calls (dup, dup2 twice, close) saved; the guard's cost over "
          f"the floor went from {before - floor:.2f} to {now - floor:.2f} µs")

    result = {
        "benchmark": "plugin_calls",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "calls": args.calls,
        "repeat": args.repeat,
        "median_us": medians,
        "samples_us": samples,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""The most that running streams of equal shape as one computation could gain, before writing it.

The paper preset has keypoint branches of identical structure (the two hands: the same joint count,
the same blocks). Running them as one computation would batch their products over the two streams;
its upper bound is one branch run on the clips of both (the same arithmetic, in products twice as
large, with one set of weights, so no per-stream weight handling at all). For every group of
branches of identical structure this times, interleaved in alternating order, a training step
(forward + backward of the features' sum) and an eval forward of

- **separate**: each branch of the group on the batch's clips, one after the other (what the
  encoder does);
- **as one**: the group's first branch on the clips of every branch of the group, concatenated;

and prints the median of the rounds' ratios separate / as one, the share of the branches' time in a
whole paper-mode step of the encoder (measured in the same rounds), and so the bound of the whole
step's gain: ``1 / (1 - share · (1 - 1 / ratio))``.

    python -m bench.encoder_stream_batching [--threads 2] [--rounds 7] [--batches 1 4] [--frames 100]

Writes ``bench/results/encoder_stream_batching.json``.
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
import time

import torch

from mska_core.config import load_config
from mska_core.encoder import ClipBatch, KeypointBranch, MSKAEncoder

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "examples" / "configs" / "mska-slr-paper.toml"
RESULTS = ROOT / "bench" / "results" / "encoder_stream_batching.json"
VOCAB = 1094


def structure(branch: KeypointBranch) -> tuple:
    """What must be equal for two branches to run as one computation: every parameter's shape."""
    return tuple((name, tuple(p.shape)) for name, p in branch.named_parameters())


def groups(encoder: MSKAEncoder) -> list[list[str]]:
    """Streams whose keypoint branches have identical structure, two or more per group."""
    by_structure: dict[tuple, list[str]] = {}
    for name, branch in encoder.branches.items():
        if isinstance(branch.keypoint, KeypointBranch):
            by_structure.setdefault(structure(branch.keypoint), []).append(name)
    return [names for names in by_structure.values() if len(names) > 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = MSKAEncoder.from_config(load_config(PRESET, ['model.attention="paper"']).model, vocab_size=VOCAB)
    found = groups(encoder)
    report: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__},
                    "threads": args.threads, "frames": args.frames, "rounds": args.rounds,
                    "load_average": os.getloadavg(), "groups": found, "rows": [],
                    "command": "python -m bench.encoder_stream_batching " + " ".join(argv if argv is not None else sys.argv[1:])}
    for group in found:
        branches = [encoder.branches[name].keypoint for name in group]
        joints = branches[0].num_joints
        for batch in args.batches:
            for mode in ("eval", "train"):
                report["rows"].append(measure(encoder, branches, group, joints, batch, mode, args))
    print_table(report)
    from mska_core.io import atomic_write_bytes

    atomic_write_bytes(Path(args.json), (json.dumps(report, indent=2) + "\n").encode())
    return 0


def measure(encoder: MSKAEncoder, branches: list[KeypointBranch], group: list[str], joints: int, batch: int,
            mode: str, args: argparse.Namespace) -> dict:
    generator = torch.Generator().manual_seed(batch)
    points = torch.rand(batch, args.frames, joints, 3, generator=generator)
    together = torch.cat([points] * len(branches))
    lengths = torch.full((batch,), args.frames)
    clips = ClipBatch(torch.rand(batch, args.frames, encoder.num_joints, 3, generator=generator), lengths)

    def step(fn) -> None:
        encoder.train(mode == "train")
        if mode == "train":
            encoder.zero_grad(set_to_none=True)
            sum(out.sum() for out in fn()).backward()
        else:
            with torch.no_grad():
                fn()

    runs = {
        "separate": lambda: [branch(points, lengths) for branch in branches],
        "as one": lambda: [branches[0](together, torch.cat([lengths] * len(branches)))],
        "encoder": lambda: list(encoder(clips).logits.values()),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        step(run)  # warm-up
    for round_ in range(args.rounds):
        order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for name in order:
            start = time.perf_counter()
            step(runs[name])
            times[name].append(time.perf_counter() - start)
    ratio = statistics.median(s / o for s, o in zip(times["separate"], times["as one"]))
    share = statistics.median(s / e for s, e in zip(times["separate"], times["encoder"]))
    row = {"group": group, "batch": batch, "mode": mode, "all": times,
           "seconds": {name: statistics.median(values) for name, values in times.items()},
           "ratio": ratio, "share_of_encoder": share, "encoder_bound": 1 / (1 - share * (1 - 1 / ratio))}
    print(f"  {'+'.join(group)} {mode} B={batch}: {row['seconds']} ratio {ratio:.3f} share {share:.2f} "
          f"bound {row['encoder_bound']:.3f}", file=sys.stderr)
    return row


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"streams as one computation, upper bound (wall seconds, medians of {report['rounds']} "
                        f"interleaved rounds, {report['threads']} threads, T={report['frames']})")
    for column in ("streams", "pass", "B", "separate s", "as one s", "separate / as one",
                   "share of the encoder's step", "bound on the encoder's gain"):
        table.add_column(column, justify="right")
    for row in report["rows"]:
        table.add_row("+".join(row["group"]), row["mode"], str(row["batch"]), f"{row['seconds']['separate']:.3f}",
                      f"{row['seconds']['as one']:.3f}", f"{row['ratio']:.3f}x", f"{row['share_of_encoder']:.0%}",
                      f"{row['encoder_bound']:.3f}x")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


if __name__ == "__main__":
    raise SystemExit(main())

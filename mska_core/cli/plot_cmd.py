"""``mska plot RUN_DIR``: PNG curves of the losses and dev metrics in a run's ``metrics.jsonl``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mska_core.cli.output import console, emit_json


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plot", help="PNG curves of a run's losses and metrics",
        description="Draw losses.png and metrics.png from RUN_DIR/metrics.jsonl (into RUN_DIR unless --out).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the folder of a 'mska train' run")
    parser.add_argument("--out", metavar="DIR", help="where to write the PNG files (default: RUN_DIR)")
    parser.add_argument("--json", action="store_true", help="write the paths of the PNG files as JSON")
    parser.set_defaults(run=run)


def plot_run(run_dir: Path, out_dir: Path) -> list[Path]:
    """Write ``losses.png`` (every loss part against the step) and, when the run was evaluated,
    ``metrics.png`` (dev WER and BLEU/ROUGE against the epoch); return the paths."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mska_core.errors import DataError
    from mska_core.io import atomic_write_bytes
    from mska_core.run_files import METRICS
    from mska_core.training.scaffold import read_metrics

    records = read_metrics(run_dir / METRICS)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train:
        raise DataError(f"{run_dir / METRICS}: no training records to plot (is {run_dir} a run folder?)")
    written = []

    def save(fig: Any, name: str) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(atomic_write_bytes(out_dir / name, buffer.getvalue()))

    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in train]
    for key in [k for k in train[0] if k == "loss" or k.startswith("loss/")]:
        ax_loss.plot(steps, [r.get(key) for r in train], label=key.removeprefix("loss/"))
    ax_loss.set(xlabel="step", ylabel="loss", title="training losses")
    ax_loss.legend()
    ax_lr.plot(steps, [r["lr"] for r in train])
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    save(fig, "losses.png")
    if evals:
        fig, (ax_wer, ax_text) = plt.subplots(1, 2, figsize=(11, 4))
        epochs = [r["epoch"] for r in evals]
        for key in [k for k in evals[0] if k.startswith("wer/")]:
            ax_wer.plot(epochs, [r.get(key) for r in evals], marker="o", label=key[4:])
        ax_wer.set(xlabel="epoch", ylabel="WER (%)", title="dev WER")
        ax_wer.legend()
        for key in ("bleu1", "bleu4", "rouge_l"):
            if key in evals[0]:
                ax_text.plot(epochs, [r.get(key) for r in evals], marker="o", label=key)
        ax_text.set(xlabel="epoch", ylabel="score", title="dev translation")
        if any(key in evals[0] for key in ("bleu1", "bleu4", "rouge_l")):
            ax_text.legend()
        save(fig, "metrics.png")
    return written


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    paths = plot_run(run_dir, Path(args.out) if args.out else run_dir)
    if args.json:
        emit_json([str(p) for p in paths])
    else:
        for path in paths:
            console().print(f"wrote {path}")
    return 0

"""``mska demo``: the quickstart, end to end, on the embedded synthetic corpus.

1. pretrain a face and a hand crop encoder briefly with DINO (``mska pretrain``), exporting each;
2. inspect the exports (``mska inspect``);
3. fine-tune the quickstart model with them as the initialisation of the face and both hand streams
   (``mska train --mska-face-state ... --mska-hand-state ... --face-backbone ...``);
4. evaluate the best checkpoint on the test split (``mska evaluate``) and compare its BLEU-4 with
   answering every clip with the most frequent training sentence.

Everything is written under ``--workdir``; the closing table gives each stage's time and the scores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from mska_core.cli.output import emit_json, status_console

#: The quickstart config shipped with mska-core (the same file as examples/configs/quickstart.toml).
QUICKSTART = Path(__file__).resolve().parents[1] / "presets" / "quickstart.toml"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="the quickstart end to end on synthetic data: pretrain, export, inspect, train, evaluate",
        description="Run the quickstart on the embedded synthetic corpus: DINO-pretrain face and hand "
                    "crop encoders briefly, export and inspect them, fine-tune the four-stream model "
                    "initialised with them, and evaluate it on the test split.",
    )
    parser.add_argument("--workdir", default="mska-demo", metavar="DIR",
                        help="where everything is written (a new folder; default: ./mska-demo)")
    parser.add_argument("--config", default=str(QUICKSTART), metavar="F", help="the fine-tuning config")
    parser.add_argument("--pretrain-steps", type=int, default=12, metavar="N", help="DINO steps per encoder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the fine-tuning config, e.g. --set train.epochs=2")
    parser.add_argument("--no-crops", action="store_true",
                        help="skip pretraining and crops: keypoint streams only (faster)")
    parser.add_argument("--json", action="store_true", help="write the summary as JSON on stdout")
    parser.set_defaults(run=run)


def _fresh(folder: Path) -> Path:
    if not folder.exists() or not any(folder.iterdir()):
        return folder
    n = 2
    while (folder.parent / f"{folder.name}-{n}").exists():
        n += 1
    return folder.parent / f"{folder.name}-{n}"


def run(args: argparse.Namespace) -> int:
    from mska_core.cli import main as mska_main
    from mska_core.cli.evaluate_cmd import evaluate_checkpoint
    from mska_core.cli.train_cmd import resolve_config
    from mska_core.errors import MskaError
    from mska_core.registry import get_registry
    from mska_core.evaluation.metrics import most_frequent_baseline

    out = status_console()
    work = _fresh(Path(args.workdir))
    work.mkdir(parents=True, exist_ok=True)
    out.print(f"[bold]mska demo[/bold] in {work}")
    registry = get_registry()
    stages: list[tuple[str, float, str]] = []
    started = time.perf_counter()

    def stage(name: str, argv: list[str]) -> None:
        out.rule(name)
        tick = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the --json summary
            code = mska_main(argv)
        if code != 0:
            raise MskaError(f"demo: stage '{name}' failed (exit {code}): mska {' '.join(argv)}")
        stages.append((name, time.perf_counter() - tick, ""))

    exports: dict[str, tuple[Path, Path]] = {}
    crop_size = 28
    if not args.no_crops:
        from mska_core.config import load_config

        crop_size = load_config(args.config, args.overrides).data.synthetic.crop_size
        for group in ("face", "hand"):
            folder = work / f"dino_{group}"
            encoder, backbone = folder / f"encoder_{group}.pt", folder / "backbone.pt"
            stage(f"pretrain {group}", [
                "pretrain", "--stream", group, "--epochs", "1", "--max-steps", str(args.pretrain_steps),
                "--img-size", str(crop_size), "--batch-size", "16", "--output-dir", str(folder),
                "--export-checkpoint", "--output-path", str(encoder), "--export-backbone", str(backbone),
                "--seed", "0",
            ])
            exports[group] = (encoder, backbone)
        for group, (encoder, _) in exports.items():
            stage(f"inspect {group}", ["inspect", str(encoder)])

    out.rule("train")
    tick = time.perf_counter()
    train_args = argparse.Namespace(
        file=args.config, overrides=[f"run.output_dir={json.dumps(str(work))}", *args.overrides],
        use_mska=False, no_progress=False, states={}, backbones={},
    )
    if exports:
        train_args.states = {"face": str(exports["face"][0]), "hand": str(exports["hand"][0])}
        train_args.backbones = {"face": f"file::{exports['face'][1]}", "hand_left": f"file::{exports['hand'][1]}",
                                "hand_right": f"file::{exports['hand'][1]}"}
        for stream in ("face", "hand_left", "hand_right"):
            train_args.overrides.append(f"model.streams.{stream}.img_size={crop_size}")
    config, notes = resolve_config(train_args, registry)
    for note in notes:
        out.print(f"[dim]shorthand:[/dim] {note}")
    from mska_core.training.loop import FineTuning

    tuning = FineTuning(config, registry=registry, out=out.print, console=out)
    tuning.prepare()
    if tuning.init_report is not None:
        out.print(tuning.init_report.table("initial weights from the pretrained exports"))
    result = tuning.run()
    stages.append(("train", time.perf_counter() - tick, f"{result.global_step} steps"))

    out.rule("evaluate")
    tick = time.perf_counter()
    test, _, corpus = evaluate_checkpoint(str(result.best))
    baseline = most_frequent_baseline([s.text for s in corpus.train], [s.text for s in corpus.test])
    stages.append(("evaluate", time.perf_counter() - tick, f"{test['clips']} test clips"))
    total = time.perf_counter() - started
    dev = result.best_metrics
    summary = {
        "workdir": str(work), "best": str(result.best), "seconds": round(total, 1),
        "stages": [{"stage": n, "seconds": round(s, 1)} for n, s, _ in stages],
        "dev": {k: dev.get(k) for k in ("wer", "bleu4", "rouge_l")},
        "test": {k: test.get(k) for k in ("wer", "bleu1", "bleu4", "rouge_l")},
        "baseline_test_bleu4": baseline["bleu4"],
        "bleu_signature": test.get("bleu_signature"),
    }
    if args.json:
        emit_json(summary)
    _show(out, stages, summary)
    return 0


def _show(out: Any, stages: list[tuple[str, float, str]], summary: dict[str, Any]) -> None:
    from rich.table import Table

    timing = Table(title="stages", title_justify="left")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    timing.add_column("")
    for name, seconds, note in stages:
        timing.add_row(name, f"{seconds:.0f}", note)
    timing.add_row("[bold]total[/bold]", f"[bold]{summary['seconds']:.0f}[/bold]", "")
    out.print(timing)
    scores = Table(title="quickstart results (synthetic corpus)", title_justify="left")
    scores.add_column("")
    scores.add_column("dev", justify="right")
    scores.add_column("test", justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    scores.add_row("WER (ensemble) %", fmt(summary["dev"]["wer"]), fmt(summary["test"]["wer"]))
    scores.add_row("BLEU-4", fmt(summary["dev"]["bleu4"]), fmt(summary["test"]["bleu4"]))
    scores.add_row("ROUGE-L", fmt(summary["dev"]["rouge_l"]), fmt(summary["test"]["rouge_l"]))
    scores.add_row("BLEU-4, most frequent sentence", "", fmt(summary["baseline_test_bleu4"]))
    out.print(scores)
    out.print(f"best checkpoint: {summary['best']}")

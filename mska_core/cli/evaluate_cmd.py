"""``mska evaluate --checkpoint F [--split test]``: WER per head, for the ensemble and the best of them,
BLEU-1..4, ROUGE-L (glosses cleaned up first as ``[eval] gloss_cleanup`` says)."""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import add_config_options, add_stream_change_option, console, emit_json


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a fine-tuned checkpoint on a split (WER, BLEU, ROUGE-L)",
        description="Decode a split with a checkpoint of 'mska train' and score it. The data comes from "
                    "the config stored in the checkpoint; --set changes it (e.g. --set data.path=...).",
    )
    parser.add_argument("--checkpoint", required=True, metavar="F", help="best.pt or last.pt of a run")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"), help="split to score")
    parser.add_argument("--beam-size", type=int, default=None, metavar="N",
                        help="CTC beam width (default: the config's train.test_beam_size)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N", help="clips per batch")
    add_config_options(parser)
    add_stream_change_option(parser)
    parser.add_argument("--predictions", metavar="FILE", help="also write every clip's prediction as JSON lines")
    parser.add_argument("--json", action="store_true", help="write the metrics as JSON on stdout")
    parser.set_defaults(run=run)


def evaluate_checkpoint(checkpoint: str, split: str = "test", *, overrides: Any = (), beam_size: int | None = None,
                        batch_size: int | None = None, allow_stream_change: bool = False,
                        ) -> tuple[dict[str, Any], list[Any], Any]:
    """Score ``split`` with a fine-tuned checkpoint: ``(result, predictions, corpus)``; the result holds
    the metrics, the checkpoint, the split and the CTC beam width."""
    from mska_core.backbones.normalization import crop_normalization
    from mska_core.config import load_config
    from mska_core.data.collate import Collator
    from mska_core.data.crop_files import crop_plan
    from mska_core.data.datasets import ClipDataset, load_corpus
    from mska_core.registry import get_registry
    from mska_core.evaluation.evaluate import evaluate
    from mska_core.training.trained import load_trained

    registry = get_registry()
    trained = load_trained(checkpoint, registry=registry, overrides=overrides,
                           allow_stream_change=allow_stream_change)
    registry = get_registry()  # as the checkpoint's [plugins] table (and --set plugins.*) made it
    config = trained.config
    if overrides:
        config = load_config(config, overrides)
    layout = registry.layouts.get(config.model.layout)
    corpus = load_corpus(config.data, layout=layout.name, num_joints=layout.num_joints, registry=registry)
    dataset = ClipDataset(corpus.split(split), trained.vocabularies, config.data.augment, train=False,
                          seed=config.run.seed, layout=layout.name, render_crops=corpus.render_crops,
                          crops=crop_plan(config, corpus, trained.model.encoder, registry))
    beam = beam_size or config.train.test_beam_size
    metrics, predictions = evaluate(
        trained.model, dataset, trained.vocabularies, device="cpu",
        batch_size=batch_size or config.train.batch_size, beam_size=beam,
        translation_beam_size=config.train.translation_beam_size, max_text_length=config.train.max_text_length,
        length_penalty=config.train.length_penalty, gloss_cleanup=config.eval.gloss_cleanup,
        collate_fn=Collator.for_model(trained.model, trained.vocabularies, crop_normalization(trained.model.encoder)),
    )
    result = {"checkpoint": str(trained.path), "split": split, "ctc_beam_size": beam,
              "epoch": trained.payload.get("epoch"), **metrics}
    return result, predictions, corpus


def run(args: argparse.Namespace) -> int:
    import json

    result, predictions, _ = evaluate_checkpoint(args.checkpoint, args.split, overrides=args.overrides,
                                                 beam_size=args.beam_size, batch_size=args.batch_size,
                                                 allow_stream_change=args.allow_stream_change)
    if args.predictions:
        from mska_core.io import atomic_write_bytes

        lines = "".join(json.dumps(p.as_dict()) + "\n" for p in predictions)
        atomic_write_bytes(args.predictions, lines.encode())
    if args.json:
        emit_json(result)
        return 0
    show(result, console())
    return 0


def show(result: dict[str, Any], out: Any) -> None:
    """A table of the metrics of one evaluation."""
    from rich.table import Table

    table = Table(title=f"{result['split']} split · {result['clips']} clips · {result['checkpoint']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key.startswith("wer/") and key != "wer/best":
            table.add_row(f"WER {key[4:]}", f"{value:.2f}")
    if "wer/best" in result:
        table.add_row(f"WER best ({result['wer_best']})", f"{result['wer/best']:.2f}")
    else:
        table.add_row("WER", "n/a (no glosses)")
    for key, label in (("bleu1", "BLEU-1"), ("bleu2", "BLEU-2"), ("bleu3", "BLEU-3"), ("bleu4", "BLEU-4"),
                       ("rouge_l", "ROUGE-L")):
        if key in result:
            table.add_row(label, f"{result[key]:.2f}")
    out.print(table)
    if result.get("gloss_cleanup", "none") != "none":
        out.print(f"[dim]glosses cleaned up before WER: {result['gloss_cleanup']}[/dim]")
    if "bleu_signature" in result:
        out.print(f"[dim]sacrebleu: {result['bleu_signature']}[/dim]")

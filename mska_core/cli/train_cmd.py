"""``mska train --config F [--set k=v]... [--resume]``: fine-tune a multi-stream model.

The shorthands of the SLT fine-tuning guide are sugar for config keys:

==========================  ===============================================================
``--use-mska``              the MSKA paper's four streams and four heads, when the config names none
``--mska-face-state F``     ``[model.init] face = F``
``--mska-hand-state F``     ``[model.init] hand = F`` (both hands: weight group ``hand``)
``--face-backbone S``       ``[model.streams.face] backbone = S`` (and ``[data] crops = true``)
``--hand-left-backbone S``  ``[model.streams.hand_left] backbone = S``
``--hand-right-backbone S`` ``[model.streams.hand_right] backbone = S``
==========================  ===============================================================

Torchrun: ``torchrun --nproc_per_node=N -m mska_core train ...`` trains with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mska_core.cli.output import add_config_options, console, emit_json

SHORTHANDS = (
    ("mska_face_state", "model.init.face"),
    ("mska_hand_state", "model.init.hand"),
    ("face_backbone", "model.streams.face.backbone"),
    ("hand_left_backbone", "model.streams.hand_left.backbone"),
    ("hand_right_backbone", "model.streams.hand_right.backbone"),
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune a multi-stream model from a TOML config",
        description="Fine-tune with CTC, self-distillation and translation losses; writes a run folder "
                    "with config.toml, metrics.jsonl, last.pt and best.pt.",
    )
    parser.add_argument("--config", "-c", dest="file", metavar="F", help="TOML config (omit for the defaults)")
    add_config_options(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    parser.add_argument("--extend", action="store_true",
                        help="with --resume: allow a larger train.epochs than the run was started with")
    parser.add_argument("--use-mska", action="store_true",
                        help="the MSKA paper's four streams and heads (when the config names none)")
    parser.add_argument("--mska-face-state", metavar="F", help="face encoder weights: [model.init] face")
    parser.add_argument("--mska-hand-state", metavar="F", help="hand encoder weights for both hands: [model.init] hand")
    parser.add_argument("--face-backbone", metavar="SPEC", help="face crop backbone, e.g. file::backbone.pt:dinov2_vits14")
    parser.add_argument("--hand-left-backbone", metavar="SPEC", help="left-hand crop backbone spec")
    parser.add_argument("--hand-right-backbone", metavar="SPEC", help="right-hand crop backbone spec")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="write the run's summary as JSON on stdout")
    parser.set_defaults(run=run)


def resolve_config(args: argparse.Namespace, registry: Any) -> tuple[Any, list[str]]:
    """The config of ``--config`` with ``--set`` overrides and the shorthands applied; and notes on
    what the shorthands did."""
    from mska_core.config.loader import apply_override, read_toml, structure
    from mska_core.config.schema import PAPER_HEADS, PAPER_STREAMS, Config

    data: dict[str, Any] = read_toml(args.file) if args.file else {}
    implicit_streams = not data.get("model", {}).get("streams")
    for override in args.overrides:
        apply_override(data, override)
    notes: list[str] = []
    model = data.setdefault("model", {})
    layout = model.get("layout", "coco_wholebody")
    given = {attr: getattr(args, attr) for attr, _ in SHORTHANDS if getattr(args, attr, None)}
    touches_streams = any(attr.endswith("backbone") for attr in given)
    if (args.use_mska or touches_streams) and implicit_streams:
        # Naming one stream selects only the named ones: name every stream the config used implicitly.
        if args.use_mska:
            names = list(PAPER_STREAMS)
        else:
            names = [s.name for s in registry.streams_for_layout(layout)]
        streams = model.setdefault("streams", {})
        for name in names:
            streams.setdefault(name, {})
        if args.use_mska and not model.get("heads"):
            model["heads"] = {name: {"streams": list(streams)} for name, streams in PAPER_HEADS.items()}
        notes.append(f"streams: {', '.join(names)}")
    for attr, key in SHORTHANDS:
        if attr in given:
            apply_override(data, f"{key}={json.dumps(given[attr])}")
            notes.append(f"{key} = {given[attr]}")
    if touches_streams and "crops" not in data.get("data", {}):
        apply_override(data, "data.crops=true")
        notes.append("data.crops = true (crop backbones read face and hand crops)")
    if args.no_progress:
        apply_override(data, "train.progress=false")
    config = structure(Config, data, args.file or "<defaults>")
    return config, notes


def run(args: argparse.Namespace) -> int:
    from mska_core.registry import get_registry
    from mska_core.training.distributed import from_environment
    from mska_core.training.loop import FineTuning

    registry = get_registry()
    config, notes = resolve_config(args, registry)
    main_rank = from_environment().is_main
    out = console()
    for note in notes:
        if main_rank:
            out.print(f"[dim]shorthand:[/dim] {note}")
    tuning = FineTuning(config, resume=args.resume, registry=registry, out=out.print, console=out,
                        extend=args.extend)
    tuning.prepare()
    if main_rank:
        out.print(f"run folder: {tuning.run_dir}")
        out.print(f"data: {tuning.corpus.source} — {len(tuning.corpus.train)} train, {len(tuning.corpus.dev)} dev, "
                  f"{len(tuning.corpus.test)} test clips; {len(tuning.vocabularies.gloss)} glosses, "
                  f"{len(tuning.vocabularies.text)} words")
        params = sum(p.numel() for p in tuning.model.parameters())
        out.print(f"model: streams {', '.join(tuning.model.encoder.stream_names)}; heads "
                  f"{', '.join(tuning.model.encoder.heads)}; {params / 1e6:.2f} M parameters; losses "
                  f"{', '.join(f'{k} x{w:g}' for k, (_, w) in tuning.losses.items())}")
        if tuning.init_report is not None:
            report = tuning.init_report
            out.print(report.table("initial weights") if hasattr(report, "table") else str(report))
        if tuning.info.enabled:
            out.print(f"distributed: {tuning.info.world_size} processes ({tuning.info.backend})")
    try:
        result = tuning.run()
    finally:
        from mska_core.training.distributed import teardown

        teardown(tuning.info)
    if not main_rank:
        return 0
    summary = {
        "run_dir": str(result.run_dir), "best": str(result.best) if result.best else None,
        "last": str(result.last), "global_step": result.global_step, "epoch": result.epoch,
        "seconds": round(result.seconds, 1), "best_dev": result.best_metrics,
    }
    if args.json:
        emit_json(summary)
    else:
        best = result.best_metrics
        shown = ", ".join(f"{k} {best[k]:.2f}" for k in ("wer", "bleu4", "rouge_l") if k in best)
        out.print(f"[green]done[/green] in {result.seconds:.0f} s: best dev {shown or '-'} -> {result.best or result.last}")
    return 0

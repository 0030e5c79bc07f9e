"""``mska pretrain``: DINO pretraining of a crop encoder for one stream, with exports.

Every flag has a ``[pretrain]`` key in the config (``--train-dir`` is ``train_dirs``); the command line
wins over ``--config`` and ``--set``. Defaults live in :class:`mska_core.config.PretrainConfig`.
"""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import add_config_options, emit_json, status_console

#: Flags whose destination is the [pretrain] key of the same name.
_PRETRAIN_FLAGS = (
    "stream", "train_dirs", "output_dir", "epochs", "export_checkpoint", "output_path", "export_backbone",
    "arch", "backbone", "img_size", "batch_size", "resume", "max_steps", "num_workers",
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="DINO pretraining of a face or hand crop encoder, with exports",
        description=(
            "DINO pretraining (student and EMA teacher ViT, multi-crop, centring, KoLeo) of the crop "
            "encoder of one stream. Without --train-dir, synthetic face or hand crops are used. "
            "Every flag has a [pretrain] config key; flags win over --config and --set."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config; its [pretrain] table sets the defaults")
    add_config_options(parser)
    parser.add_argument("--stream", help="stream or weight group the encoder is for: face, hand, hand_left, ...")
    parser.add_argument("--train-dir", dest="train_dirs", nargs="+", metavar="DIR",
                        help="folders of png/jpg crops (searched recursively); omit for synthetic crops")
    parser.add_argument("--output-dir", metavar="DIR", help="where checkpoint.pt, metrics.jsonl and config.toml go")
    parser.add_argument("--epochs", type=int, metavar="N")
    parser.add_argument("--export-checkpoint", action="store_true", default=None,
                        help="write the teacher backbone as a stream-encoder payload when done")
    parser.add_argument("--output-path", metavar="FILE",
                        help="where --export-checkpoint writes (default <output-dir>/encoder_<stream>.pt)")
    parser.add_argument("--export-backbone", metavar="FILE",
                        help="also write a backbone file that 'file::FILE:ARCH' loads")
    parser.add_argument("--arch", help="backbone architecture from the registry, e.g. vit_tiny_test, dinov2_vits14")
    parser.add_argument("--backbone", metavar="SPEC", help="continue from existing weights, e.g. file::encoder.pt")
    parser.add_argument("--img-size", type=int, metavar="PX", help="global crop size in pixels")
    parser.add_argument("--batch-size", type=int, metavar="N")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue from <output-dir>/checkpoint.pt with identical results")
    parser.add_argument("--extend", action="store_true",
                        help="with --resume: allow more --epochs than the run was started with")
    parser.add_argument("--max-steps", type=int, metavar="N", help="stop after N steps (schedules unchanged)")
    parser.add_argument("--num-workers", type=int, metavar="N", help="data-loading worker processes")
    parser.add_argument("--seed", type=int, help="random seed ([run] seed)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto ([run] device)")
    parser.add_argument("--json", action="store_true", help="write a summary as JSON on stdout")
    parser.set_defaults(run=run)


def resolve_config(args: argparse.Namespace) -> Any:
    """The config file and ``--set`` overrides, then the flags on top."""
    import attrs

    from mska_core.config import load_config

    config = load_config(args.config, args.overrides)
    flags = {key: getattr(args, key) for key in _PRETRAIN_FLAGS if getattr(args, key) is not None}
    try:
        pretrain = attrs.evolve(config.pretrain, **flags)
        run_cfg = attrs.evolve(config.run, **{k: v for k, v in (("seed", args.seed), ("device", args.device))
                                              if v is not None})
    except ValueError as exc:  # a schema validator, e.g. a non-positive --epochs
        from mska_core.errors import ConfigError

        raise ConfigError(f"command line: {exc}") from None
    return attrs.evolve(config, pretrain=pretrain, run=run_cfg)


def run(args: argparse.Namespace) -> int:
    from mska_core.registry import get_registry
    from mska_core.training.dino import pretrain

    config = resolve_config(args)
    out = status_console()
    result = pretrain(config, registry=get_registry(), console=out, extend=args.extend)
    summary = {
        "stream": result.stream,
        "output_dir": str(result.output_dir),
        "checkpoint": str(result.checkpoint),
        "metrics": str(result.metrics),
        "epochs": result.epochs,
        "global_step": result.global_step,
        "min_loss": result.min_loss,
        "exported": [str(p) for p in result.exported],
        "skipped": len(result.skipped),
        "ignored": result.ignored,
    }
    if result.skipped:
        out.print(f"[yellow]skipped {len(result.skipped)} unreadable crop file(s)[/yellow] "
                  f"(listed in {result.output_dir / 'skipped.txt'})")
    if result.ignored:
        out.print(f"ignored {result.ignored} file(s) that are not png/jpg")
    for path in result.exported:
        out.print(f"[green]exported[/green] {path}")
    if args.json:
        emit_json(summary)
    return 0

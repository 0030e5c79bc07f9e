"""``mska summary [CONFIG] [--set k=v] [--vocab-size N] [--json]``: build the encoder a config
describes and print its parameters per stream and per head, with totals."""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import add_config_options, console, emit_json


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="build a config's encoder and print its parameters per stream and per head",
        description="Build the encoder of a TOML config (random weights) and count its parameters.",
    )
    parser.add_argument("file", nargs="?", help="TOML file (omit for the embedded default)")
    add_config_options(parser)
    parser.add_argument(
        "--vocab-size", type=int, default=None, metavar="N",
        help="gloss vocabulary size of the heads (default: model.vocab_size of the config)",
    )
    parser.add_argument("--json", action="store_true", help="write the table as JSON on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mska_core.config import load_config
    from mska_core.config.checks import check_against_registry
    from mska_core.errors import ConfigError
    from mska_core.registry import get_registry, registry_for

    config = load_config(args.file, args.overrides)
    registry = registry_for(config.plugins, get_registry())
    check_against_registry(config, args.file or "<defaults>", registry)
    if args.vocab_size is not None and args.vocab_size <= 0:
        raise ConfigError(f"--vocab-size must be positive, got {args.vocab_size}")
    if args.vocab_size is None and config.model.vocab_size is None:
        raise ConfigError(
            f"{args.file or '<defaults>'}: model.vocab_size is not set; pass --vocab-size N "
            "(the gloss vocabulary size, special tokens included)"
        )

    from mska_core.encoder import MSKAEncoder

    encoder = MSKAEncoder.from_config(config.model, vocab_size=args.vocab_size, registry=registry)
    table = encoder.parameter_table()
    table["attention"] = config.model.attention
    table["layout"] = config.model.layout
    if args.json:
        emit_json(table)
    else:
        _print(table, args.file or "<defaults>")
    return 0


def _print(table: dict[str, Any], source: str) -> None:
    from rich.table import Table

    out = console()
    streams = Table(title=f"{source}: streams ({table['layout']}, {table['attention']} attention)")
    for column in ("stream", "keypoint branch", "crop backbone", "crop projection", "features", "parameters"):
        streams.add_column(column, justify="left" if column == "stream" else "right")
    for name, row in table["streams"].items():
        streams.add_row(
            name, f"{row['keypoint']:,}", f"{row['crop_backbone']:,}", f"{row['crop_projection']:,}",
            str(row["features"]), f"{row['total']:,}",
        )
    streams.add_row("[b]encoder[/b]", "", "", "", "", f"[b]{table['encoder_total']:,}[/b]")
    out.print(streams)
    heads = Table(title=f"heads (vocabulary {table['vocab_size']:,})")
    for column in ("head", "streams", "input", "parameters"):
        heads.add_column(column, justify="left" if column in ("head", "streams") else "right")
    for name, row in table["heads"].items():
        heads.add_row(name, ", ".join(row["streams"]), str(row["input_dim"]), f"{row['total']:,}")
    heads.add_row("[b]heads[/b]", "", "", f"[b]{table['heads_total']:,}[/b]")
    out.print(heads)
    out.print(f"[b]total[/b] {table['total']:,} parameters")

"""``mska config show|validate F``: the resolved configuration, or its errors."""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import add_config_options, console, emit_json


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config", help="show the resolved config of a TOML file, or validate it",
        description="Show or validate a TOML configuration.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                    parser_class=type(parser))
    show = actions.add_parser("show", help="print the resolved config (defaults filled in)")
    show.add_argument("file", nargs="?", help="TOML file (omit for the embedded default)")
    add_config_options(show)
    show.add_argument("--json", action="store_true", help="write the resolved config as JSON on stdout")
    show.set_defaults(run=run_show)
    validate = actions.add_parser("validate", help="check a config file; exit 2 with the first error")
    validate.add_argument("file", help="TOML file")
    add_config_options(validate)
    validate.set_defaults(run=run_validate)


def _load(args: argparse.Namespace) -> Any:
    from mska_core.config import load_config
    from mska_core.config.checks import check_against_registry
    from mska_core.registry import get_registry

    config = load_config(args.file, args.overrides)
    check_against_registry(config, args.file or "<defaults>", get_registry())
    return config


def run_show(args: argparse.Namespace) -> int:
    from mska_core.config import dumps_toml, unstructure

    config = _load(args)
    if args.json:
        emit_json(unstructure(config))
    else:
        from rich.syntax import Syntax

        console().print(Syntax(dumps_toml(config), "toml", theme="ansi_dark", background_color="default"))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    _load(args)
    console().print(f"[green]ok[/green] {args.file} is a valid mska-core config")
    return 0

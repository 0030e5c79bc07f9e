"""Where the command line writes: rich human output on stderr, machine output (JSON) on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any


def console(record: bool = False) -> Any:
    """A rich console on stderr (``record=True`` keeps what it printed for export)."""
    from rich.console import Console

    return Console(stderr=True, record=record, highlight=False)


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def add_config_options(parser: Any) -> None:
    """Repeated ``--set dotted.key=VALUE`` overrides, collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=3 (VALUE is read as TOML, else a string)",
    )

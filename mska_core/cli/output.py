"""Where the command line writes (DESIGN §8).

- :func:`console`: a command's human result (tables, trees, a prediction) on stdout, at most
  80 columns wide, so that ``mska plugins | grep mouth`` works and tables fit a terminal;
- :func:`status_console`: progress bars, stage lines and warnings on stderr;
- :func:`emit_json`: ``--json`` output, alone on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: The widest a human table may be.
WIDTH = 80


def console() -> Any:
    """A rich console on stdout for a command's human result, at most :data:`WIDTH` columns wide."""
    import shutil

    from rich.console import Console

    width = min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def status_console() -> Any:
    """A rich console on stderr for progress, stage lines and warnings."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def add_config_options(parser: Any, what: str = "e.g. --set train.epochs=3") -> None:
    """Repeated ``--set dotted.key=VALUE`` overrides, collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, {what} (VALUE is read as TOML, else a string)",
    )


def add_stream_change_option(parser: Any) -> None:
    """``--allow-stream-change``: load a checkpoint although a stream's provider or joints changed."""
    parser.add_argument(
        "--allow-stream-change", action="store_true",
        help="load the checkpoint although another plugin supplies one of its streams now, or the stream "
             "reads other joints (refused by default: the model would read the wrong joints)",
    )

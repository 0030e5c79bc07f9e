"""The ``mska`` command line (also ``python -m mska_core``).

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
Modules here import only argparse-level things at the top; anything heavy is imported inside ``run``
so that ``mska --help`` and ``mska plugins`` stay fast.

Exit codes: 0 success, 1 a check found a problem, 2 bad usage or bad input (one line, no traceback
unless ``-v``), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Subcommand modules, in the order ``mska --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "mska_core.cli.plugins_cmd",
    "mska_core.cli.pretrain_cmd",
    "mska_core.cli.config_cmd",
    "mska_core.cli.summary_cmd",
    "mska_core.cli.inspect_cmd",
    "mska_core.cli.train_cmd",
    "mska_core.cli.evaluate_cmd",
    "mska_core.cli.predict_cmd",
    "mska_core.cli.extract_cmd",
    "mska_core.cli.plot_cmd",
    "mska_core.cli.demo_cmd",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, as for any bad input
        self.exit(EXIT_USAGE, f"mska: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from mska_core import __version__

    parser = _Parser(
        prog="mska",
        description="Multi-stream sign-language encoders: pretrain, inspect, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"mska-core {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mska`` with ``argv`` and return its exit code (the console script exits with it)."""
    from mska_core.errors import MskaError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args) or 0)
    except MskaError as exc:
        if args.verbose:
            raise
        sys.stderr.write(f"mska: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("mska: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mska ... --json | head`
        return EXIT_OK


def console_main() -> None:  # pragma: no cover - the console script entry
    sys.exit(main())

"""The ``mska`` command line (also ``python -m mska_core``).

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
Modules here import only argparse-level things at the top; anything heavy is imported inside ``run``
so that ``mska --help`` and ``mska plugins`` stay fast.

Exit codes: 0 success, 1 a check found a problem, 2 bad usage or bad input (one line, no traceback
unless ``-v``), 130 on Ctrl-C.

:func:`main` is the command boundary: an :class:`~mska_core.errors.MskaError`, and every file-system
or decoding error a command meets (a full disk, a read-only folder, a path through a file, a file that
is not UTF-8 or not JSON), becomes one line on stderr that names the path and what to do, and exit
code 2; ``-v`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
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
    "mska_core.cli.export_cmd",
    "mska_core.cli.embed_cmd",
    "mska_core.cli.extract_cmd",
    "mska_core.cli.pack_cmd",
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
    from mska_core.plugins import watch_interrupts

    watch_interrupts()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("mska: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mska ... --json | head`
        return EXIT_OK
    except (MskaError, OSError, UnicodeError, RecursionError) as exc:
        if args.verbose:
            raise
        sys.stderr.write(f"mska: error: {one_line(exc)}\n")
        return EXIT_USAGE


#: What to do about a file-system error, by errno.
_OS_ADVICE: dict[int, str] = {
    errno.ENOSPC: "the disk is full; free space or write elsewhere (files written before are intact)",
    errno.EDQUOT: "the disk quota is used up; free space or write elsewhere (files written before are intact)",
    errno.EFBIG: "the file is larger than this file system or the process's file-size limit allows",
    errno.EACCES: "permission denied; choose a folder you can write (e.g. --set run.output_dir=...)",
    errno.EPERM: "operation not permitted; choose a folder you can write (e.g. --set run.output_dir=...)",
    errno.EROFS: "the file system is read-only; choose a writable folder (e.g. --set run.output_dir=...)",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; give a file",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EIO: "the device reported an I/O error",
}


def one_line(exc: BaseException) -> str:
    """The one line the command boundary prints for ``exc``: what, where, and what to do."""
    from mska_core.errors import MskaError

    if isinstance(exc, MskaError):
        text = str(exc)
    elif isinstance(exc, OSError):
        where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p) or "a file"
        advice = _OS_ADVICE.get(exc.errno or 0, "check the path and its permissions")
        text = f"{where}: {exc.strerror or type(exc).__name__}: {advice}"
    elif isinstance(exc, UnicodeError):
        text = f"a file that should be UTF-8 text is not ({exc}); check that the path names the right file"
    elif isinstance(exc, RecursionError):
        text = "an input is nested too deeply to be read; check that the path names the right file"
    else:  # pragma: no cover
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def console_main() -> None:  # pragma: no cover - the console script entry
    sys.exit(main())

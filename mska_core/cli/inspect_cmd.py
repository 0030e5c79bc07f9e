"""``mska inspect``: what a checkpoint holds, whether it fits a model, how two differ, what a run left.

- ``mska inspect PATH [--tensors]``: format, metadata, provenance, a tree of module prefixes with
  parameters and buffers counted apart, dtypes and bytes, and the payload's claims checked.
- ``mska inspect PATH --against CONFIG``: part by part (streams, heads, decoder, vocabularies,
  layout, joints), whether the checkpoint fits the model CONFIG builds; exit code 1 when not.
- ``mska inspect A --diff B [--prefix P] [--map A_PREFIX=B_PREFIX]``: tensor by tensor.
- ``mska inspect RUN_DIR``: a run folder's config, best and last epochs, plugins, checkpoints.

Human output goes to stdout in 80 columns; ``--json`` writes only JSON on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.markup import escape

from mska_core.cli.output import WIDTH, add_config_options, console, emit_json

_STATUS_STYLE = {"same": "green", "different": "yellow", "missing": "bold red"}
_SHOWN = 10  # keys listed per kind in the human diff before "... N more"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="describe a checkpoint or run folder; check it against a config; diff two checkpoints",
        description=(
            "Describe a checkpoint file without loading its tensors into memory, check whether it fits "
            "the model a config builds (--against), compare two checkpoints tensor by tensor (--diff), "
            "or summarise a run folder."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="checkpoint file (.pt, .pth, .ckpt, .safetensors ...) or run folder")
    parser.add_argument("--json", action="store_true", help="write the result as JSON on stdout")
    parser.add_argument("--tensors", action="store_true", help="list every tensor (with --diff: every compared key)")
    parser.add_argument("--select", metavar="PART", help="part of a multi-part file (DINO: teacher or student)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--against", metavar="CONFIG",
                      help="check part by part whether PATH fits the model CONFIG builds (exit 1 if not)")
    mode.add_argument("--diff", metavar="B", help="compare PATH with checkpoint B tensor by tensor")
    add_config_options(parser)
    parser.add_argument("--prefix", metavar="P", help="with --diff: only keys (in PATH's naming) starting with P")
    parser.add_argument("--map", dest="maps", action="append", default=[], metavar="A_PREFIX=B_PREFIX",
                        help="with --diff: compare PATH's keys under A_PREFIX with B's under B_PREFIX (repeatable)")
    parser.add_argument("--depth", type=int, default=3, metavar="N",
                        help="with --diff: key components per summary row after the common prefix (default 3)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mska_core.errors import MskaError

    if (args.prefix or args.maps) and not args.diff:
        raise MskaError("--prefix and --map go with --diff B")
    if args.overrides and not args.against:
        raise MskaError("--set changes the config of --against CONFIG; give --against")
    if args.depth < 1:
        raise MskaError(f"--depth must be at least 1, got {args.depth}")
    with _one_line_errors(args.path):
        if Path(args.path).expanduser().is_dir():
            return _run_folder(args)
        if args.diff:
            return _diff(args)
        return _describe(args)


@contextlib.contextmanager
def _one_line_errors(path: str) -> Iterator[None]:
    """Failures below our own checks (a torch or OS error while reading) become one CheckpointError line."""
    from mska_core.errors import CheckpointError

    try:
        yield
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        text = str(exc).strip().splitlines()
        raise CheckpointError(f"{path}: cannot be inspected: {text[0] if text else type(exc).__name__}") from None


# -- describe ---------------------------------------------------------------------------------------


def _describe(args: argparse.Namespace) -> int:
    from mska_core.checkpoints.inspector import describe

    info = describe(args.path, select=args.select)
    report = None
    if args.against:
        from mska_core.training.fit import check_fit

        report = check_fit(args.path, args.against, select=args.select, overrides=args.overrides)
    if args.json:
        if report is not None:
            info["against"] = report.as_dict()
        if not args.tensors:
            info.pop("tensors")
        emit_json(info)
    else:
        out = console()
        render(info, tensors=args.tensors, out=out)
        if report is not None:
            render_fit(report, out=out)
    return 0 if report is None or report.ok else 1


def render(info: dict[str, Any], *, tensors: bool = False, out: Any = None) -> None:
    """Print ``info`` (from :func:`~mska_core.checkpoints.describe`) with rich."""
    from rich.table import Table
    from rich.tree import Tree

    out = out or console()
    totals = info["totals"]
    out.print(f"[bold]{escape(info['path'])}[/bold]", overflow="fold")
    out.print(f"format [cyan]{info['format']}[/cyan], {_bytes(info['size'])} on disk ({info['container']})")
    meta = Table(title="metadata", title_justify="left", show_header=False, width=WIDTH)
    meta.add_column("field", style="bold", no_wrap=True)
    meta.add_column("value", overflow="fold", ratio=1)
    for key, value in info["metadata"].items():
        if value is None:
            continue
        if key in ("plugins", "config", "vocabularies") and value:
            value = ", ".join(value) if key == "plugins" else _entries(key, value)
        meta.add_row(key, escape(_short(value)))
    if info["metadata"]:
        out.print(meta)
    if info["provenance"]:
        prov = Table(title="provenance", title_justify="left")
        for column in ("component", "recorded", "installed", "status"):
            prov.add_column(column, overflow="fold")
        for row in info["provenance"]:
            style = _STATUS_STYLE[row["status"]]
            prov.add_row(row["name"], row["recorded"], row["installed"] or "-", f"[{style}]{row['status']}[/]")
        out.print(prov)
    tree = Tree(
        f"[bold]state_dict[/bold]: {totals['tensors']} tensors, {totals['parameters']:,} parameters, "
        f"{totals['buffers']:,} buffer values, {_bytes(totals['bytes'])}"
    )
    for node in info["tree"]:
        _add_node(tree, node)
    out.print(tree)
    if len(totals["by_dtype"]) > 1:
        out.print("dtypes: " + ", ".join(
            f"{name} {row['tensors']} tensors {_bytes(row['bytes'])}" for name, row in totals["by_dtype"].items()))
    for claim in info.get("claims", []):
        if claim["ok"]:
            out.print(f"[green]claim holds[/green]: {claim['claim']} = {claim['claimed']}")
        else:
            out.print(f"[bold red]claim does not hold[/bold red]: {claim['claim']} = {claim['claimed']}, "
                      f"but {escape(claim['evidence'])} gives {claim['found']}", overflow="fold")
    if tensors:
        table = Table(title="tensors", title_justify="left", width=WIDTH)
        for column in ("key", "shape", "dtype", "bytes"):
            table.add_column(column, overflow="fold", ratio=3 if column == "key" else None)
        for t in info["tensors"]:
            key = t["key"] + (" (buffer)" if t["role"] == "buffer" else "")
            table.add_row(escape(key), str(t["shape"]), t["dtype"], _bytes(t["bytes"]))
        out.print(table)


def _add_node(parent: Any, node: dict[str, Any]) -> None:
    counts = f"{node['parameters']:,} params"
    if node["buffers"]:
        counts += f" + {node['buffers']:,} buf"
    label = f"{node['prefix'].rsplit('.', 1)[-1]}  [dim]{counts}, {_bytes(node['bytes'])}, {'/'.join(node['dtypes'])}[/dim]"
    branch = parent.add(label)
    for child in node["children"]:
        _add_node(branch, child)


# -- against ------------------------------------------------------------------------------------------


def render_fit(report: Any, *, out: Any = None) -> None:
    """Print a :class:`~mska_core.training.fit.FitReport`: parts, checks, and the verdict."""
    from rich.table import Table

    out = out or console()
    table = Table(title=f"against {report.config} ({report.holds})", title_justify="left", width=WIDTH)
    table.add_column("part", no_wrap=True)
    table.add_column("result", overflow="fold", ratio=1)
    for part in report.parts:
        if part.ok and part.status != "not in checkpoint":
            result = f"[green]{part.verdict}[/green]"
        elif part.ok:
            result = f"[dim]{part.verdict}[/dim]"
        else:
            result = f"[bold red]{part.verdict}[/bold red]"
        detail = part.detail() if not part.ok or part.resampled else ""
        table.add_row(part.part, result + (f": {escape(detail)}" if detail else ""))
    for check in report.checks:
        if check.ok is None:
            result = f"[yellow]not checked[/yellow]: checkpoint {check.checkpoint}; {escape(check.note)}"
        else:
            mark = "[green]same[/green]" if check.ok else "[bold red]differs[/bold red]"
            result = f"{mark}: checkpoint {check.checkpoint}, config {check.config}" + (
                f" ({escape(check.note)})" if check.note else "")
        table.add_row(check.name, result)
    out.print(table)
    if report.ok:
        out.print("[green]fits[/green]: every part the checkpoint offers loads into this config's model")
    else:
        out.print(f"[bold red]does not fit[/bold red]: {', '.join(report.failing)}", overflow="fold")


# -- diff ---------------------------------------------------------------------------------------------


def _diff(args: argparse.Namespace) -> int:
    from mska_core.checkpoints.inspector import diff_checkpoints, parse_map

    maps = [parse_map(text) for text in args.maps]
    report = diff_checkpoints(args.path, args.diff, prefix=args.prefix, maps=maps, select=args.select,
                              depth=args.depth)
    if args.json:
        data = report.as_dict()
        if not args.tensors:
            data["tensors"] = [t for t in data["tensors"] if t["status"] != "identical"]
        emit_json(data)
    else:
        render_diff(report, tensors=args.tensors)
    return 0


def render_diff(report: Any, *, tensors: bool = False, out: Any = None) -> None:
    """Print a :class:`~mska_core.checkpoints.inspector.DiffReport`: per prefix, then the keys that differ."""
    from rich.table import Table

    out = out or console()
    out.print(f"[bold]A[/bold] {escape(report.a)} ({report.format_a})", overflow="fold")
    out.print(f"[bold]B[/bold] {escape(report.b)} ({report.format_b})", overflow="fold")
    for a, b in report.maps:
        out.print(f"map: A {a or '(every key)'} = B {b or '(every key)'}", overflow="fold")
    if report.prefix:
        out.print(f"prefix: {report.prefix}", overflow="fold")
    table = Table(title="per module prefix", title_justify="left", width=WIDTH)
    table.add_column("prefix", overflow="fold", ratio=1)
    for column in ("same", "chg", "shape", "A", "B", "max abs", "max rel"):
        table.add_column(column, justify="right", no_wrap=True)
    for g in report.groups():
        table.add_row(g["prefix"], str(g["identical"]), str(g["changed"]), str(g["shape"]), str(g["only_a"]),
                      str(g["only_b"]), _float(g["max_abs"]) if g["changed"] else "-",
                      _float(g["max_rel"]) if g["changed"] else "-")
    out.print(table)
    out.print("[dim]same: identical; chg: changed; shape: reshaped; A, B: only in A, only in B[/dim]")
    for status, title in (("only in A", "only in A"), ("only in B", "only in B"), ("shape", "shape changes")):
        entries = [t for t in report.tensors if t.status == status]
        if not entries:
            continue
        out.print(f"[bold]{title}[/bold] ({len(entries)}):")
        for t in entries[:_SHOWN]:
            shapes = {"only in A": _shape(t.shape_a), "only in B": _shape(t.shape_b),
                      "shape": f"A {_shape(t.shape_a)}, B {_shape(t.shape_b)}"}[status]
            out.print(f"  {escape(t.key)}  {shapes}", overflow="fold")
        if len(entries) > _SHOWN:
            out.print(f"  ... {len(entries) - _SHOWN} more (see --json)")
    if tensors:
        listing = Table(title="tensors", title_justify="left", width=WIDTH)
        listing.add_column("key", overflow="fold", ratio=1)
        for column in ("result", "max abs", "max rel"):
            listing.add_column(column, justify="right", no_wrap=True)
        for t in report.tensors:
            listing.add_row(escape(t.key), t.status, _float(t.max_abs) if t.max_abs is not None else "-",
                            _float(t.max_rel) if t.max_rel is not None else "-")
        out.print(listing)
    totals = report.totals()
    verdict = "[green]identical[/green]" if report.identical else "[yellow]different[/yellow]"
    out.print(
        f"{verdict}: {totals['identical']} of {totals['shared']} shared tensors identical, {totals['changed']} "
        f"changed (max abs {_float(totals['max_abs'])}), {totals['shape']} reshaped, {totals['only_a']} only "
        f"in A, {totals['only_b']} only in B"
    )


# -- run folders --------------------------------------------------------------------------------------


def _run_folder(args: argparse.Namespace) -> int:
    from mska_core.checkpoints.inspector import describe_run
    from mska_core.errors import MskaError

    if args.against or args.diff or args.tensors:
        raise MskaError(f"{args.path}: is a folder; --against, --diff and --tensors take a checkpoint file "
                        "(such as best.pt in a run folder)")
    info = describe_run(args.path)
    if args.json:
        emit_json(info)
    else:
        render_run(info)
    return 0


def render_run(info: dict[str, Any], *, out: Any = None) -> None:
    """Print a run folder summary (from :func:`~mska_core.checkpoints.inspector.describe_run`)."""
    from rich.table import Table

    out = out or console()
    out.print(f"[bold]{escape(info['path'])}[/bold]" + (f"  ({info['run']} run)" if info["run"] else ""), overflow="fold")
    config = info["config"]
    if config is None:
        out.print("config: [yellow]no config.toml[/yellow]")
    elif "error" in config:
        out.print(f"config: [red]{config['file']} does not parse[/red]: {escape(config['error'])}", overflow="fold")
    else:
        out.print(f"config: name {config['name']}, seed {config['seed']}, data {config['data']}, "
                  f"layout {config['layout']}", overflow="fold")
        if config.get("pretrain"):
            p = config["pretrain"]
            out.print(f"  pretraining: stream {p['stream']}, arch {p['arch']}, {p['epochs']} epochs")
        else:
            heads = "; ".join(f"{h} = {'+'.join(s)}" for h, s in config["heads"].items()) or "default"
            losses = ", ".join(f"{n} {w if w is not None else 1.0:g}" for n, w in config["losses"].items())
            out.print(f"  streams: {', '.join(config['streams']) or 'default'}", overflow="fold")
            out.print(f"  heads: {heads}", overflow="fold")
            out.print(f"  losses: {losses or '-'}; epochs {config['epochs']}", overflow="fold")
    points = Table(title="epochs", title_justify="left", width=WIDTH)
    points.add_column("", no_wrap=True)
    points.add_column("epoch", justify="right")
    points.add_column("step", justify="right")
    points.add_column("metrics", overflow="fold", ratio=1)
    for name in ("best", "last"):
        point = info[name]
        if point is not None:
            metrics = _metrics(point["metrics"]) if point["metrics"] else (
                f"min loss {point['min_loss']:.4f}" if point["min_loss"] is not None else "-")
            if name == "best" and point.get("selection"):
                sel = point["selection"]
                metrics = f"chosen on dev {sel.get('metric')}; {metrics}"
            points.add_row(name, str(point["epoch"]), str(point["global_step"]), metrics)
    metrics = info["metrics"]
    if metrics and metrics["last_train"]:
        last = metrics["last_train"]
        shown = {k: v for k, v in last.items() if k in ("loss", "lr") or k.startswith("loss/") or k in ("dino", "koleo")}
        points.add_row("last log", str(last.get("epoch", "-")), str(last.get("step", "-")), _metrics(shown))
    if points.row_count:
        out.print(points)
    if metrics:
        out.print(f"metrics.jsonl: {metrics['train_records']} training records, {len(metrics['evals'])} evaluations")
    if info["provenance"]:
        prov = Table(title="plugins (newest checkpoint)", title_justify="left")
        for column in ("component", "recorded", "installed", "status"):
            prov.add_column(column, overflow="fold")
        for row in info["provenance"]:
            prov.add_row(row["name"], row["recorded"], row["installed"] or "-",
                         f"[{_STATUS_STYLE[row['status']]}]{row['status']}[/]")
        out.print(prov)
    files = Table(title="checkpoints", title_justify="left", width=WIDTH)
    for column in ("file", "reads", "format, kind", "epoch", "tensors"):
        files.add_column(column, overflow="fold", ratio=2 if column in ("file", "format, kind") else None)
    for c in info["checkpoints"]:
        if c["reads"]:
            files.add_row(escape(c["path"]), "[green]yes[/green]", f"{c['format']}, {c['kind'] or '-'}",
                          str(c["epoch"] if c["epoch"] is not None else "-"), str(c["tensors"]))
        else:
            files.add_row(escape(c["path"]), "[bold red]no[/bold red]", escape(c["error"]), "-", "-")
    if info["checkpoints"]:
        out.print(files)
    else:
        out.print("checkpoints: none")


# -- formatting ---------------------------------------------------------------------------------------


_METRIC_ORDER = ("wer", "bleu4", "rouge_l", "loss")


def _metrics(values: dict[str, Any]) -> str:
    shown = [k for k in _METRIC_ORDER if k in values] + [
        k for k in values if k not in _METRIC_ORDER and k.startswith(("wer/", "loss/", "lr", "dino", "koleo"))]
    return ", ".join(f"{k} {values[k]:.4g}" if isinstance(values[k], float) else f"{k} {values[k]}" for k in shown)


def _entries(key: str, value: Any) -> str:
    if key == "vocabularies" and isinstance(value, dict):
        sizes = []
        for name, vocab in value.items():
            size = vocab.get("size") if isinstance(vocab, dict) else None
            sizes.append(f"{name} {size} tokens" if isinstance(size, int) else name)
        return ", ".join(sizes)
    return f"({len(value)} entries; see --json)"


def _float(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _shape(shape: Any) -> str:
    return "[" + ", ".join(map(str, shape or ())) + "]"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"

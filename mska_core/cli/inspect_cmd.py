"""``mska inspect PATH [--json] [--tensors] [--against CONFIG]``: what a checkpoint holds.

Shows the detected format, the metadata, the plugins and versions that wrote it beside those
installed now, a tree of module prefixes with parameter counts, dtypes and bytes, and totals.
``--against CONFIG`` builds the config's encoder and says, per stream, whether the weights load.
"""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import console, emit_json

_STATUS_STYLE = {"same": "green", "different": "yellow", "missing": "bold red"}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show a checkpoint's format, metadata, provenance and parameters",
        description="Describe a checkpoint file without loading its tensors into memory.",
    )
    parser.add_argument("path", metavar="PATH", help="checkpoint file (.pt, .pth, .ckpt, .safetensors ...)")
    parser.add_argument("--json", action="store_true", help="write the description as JSON on stdout")
    parser.add_argument("--tensors", action="store_true", help="list every tensor with its shape and dtype")
    parser.add_argument("--against", metavar="CONFIG", help="check, per stream, whether it loads into CONFIG's encoder")
    parser.add_argument("--select", metavar="PART", help="part of a multi-part file (DINO: teacher or student)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mska_core.checkpoints.describe import describe
    from mska_core.errors import CheckpointError

    try:
        info = describe(args.path, select=args.select)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # a file that fails below our checks
        text = str(exc).strip().splitlines()
        raise CheckpointError(f"{args.path}: cannot be inspected: {text[0] if text else type(exc).__name__}") from None
    report = _against(args.path, args.against, args.select) if args.against else None
    if args.json:
        if report is not None:
            info["against"] = {"config": args.against, **report.as_dict()}
        if not args.tensors:
            info.pop("tensors")
        emit_json(info)
    else:
        render(info, tensors=args.tensors, report=report, against=args.against)
    return 0 if report is None or report.ok else 1


def _against(path: str, config_path: str, select: str | None) -> Any:
    from mska_core.checkpoints.encoder_state import check_mska_encoder_state
    from mska_core.checkpoints.loading import load_checkpoint
    from mska_core.config import load_config
    from mska_core.errors import MskaError

    config = load_config(config_path)
    try:
        from mska_core.encoder import MSKAEncoder
    except ImportError:
        raise MskaError(f"--against {config_path}: this installation has no MSKAEncoder to build") from None
    vocab = config.model.vocab_size or config.data.synthetic.vocab_size
    encoder = MSKAEncoder.from_config(config.model, vocab_size=vocab)
    checkpoint = load_checkpoint(path, select=select)
    targets = _target_streams(encoder, checkpoint)
    return check_mska_encoder_state(encoder, streams={s: checkpoint for s in targets})


def _target_streams(encoder: Any, checkpoint: Any) -> list[str]:
    """The streams a checkpoint is meant for: its ``stream`` (a name or weight group), else all."""
    names = list(encoder.stream_names)
    stream = checkpoint.metadata.get("stream")
    if stream:
        chosen = [s for s in names if s == stream or encoder.specs[s].weight_group == stream]
        if chosen:
            return chosen
    return names


def render(info: dict[str, Any], *, tensors: bool = False, report: Any = None, against: str | None = None,
           out: Any = None) -> None:
    """Print ``info`` (from :func:`~mska_core.checkpoints.describe`) with rich."""
    from rich.table import Table
    from rich.tree import Tree

    out = out or console()
    totals = info["totals"]
    out.print(
        f"[bold]{info['path']}[/bold]  format [cyan]{info['format']}[/cyan]  "
        f"{_bytes(info['size'])} on disk  ({info['container']})"
    )
    meta = Table(title="metadata", title_justify="left", show_header=False)
    meta.add_column("field", style="bold")
    meta.add_column("value", overflow="fold")
    for key, value in info["metadata"].items():
        if key in ("plugins", "config") and value:
            value = f"({len(value)} entries; see --json)" if key == "config" else ", ".join(value)
        meta.add_row(key, _short(value))
    if info["metadata"]:
        out.print(meta)
    if info["provenance"]:
        prov = Table(title="provenance", title_justify="left")
        for column in ("component", "recorded", "installed", "status"):
            prov.add_column(column)
        for row in info["provenance"]:
            style = _STATUS_STYLE[row["status"]]
            prov.add_row(row["name"], row["recorded"], row["installed"] or "-", f"[{style}]{row['status']}[/]")
        out.print(prov)
    tree = Tree(
        f"[bold]state_dict[/bold]: {totals['tensors']} tensors, {totals['parameters']:,} parameters, "
        f"{_bytes(totals['bytes'])}"
    )
    for node in info["tree"]:
        _add_node(tree, node)
    out.print(tree)
    if tensors:
        table = Table(title="tensors", title_justify="left")
        for column in ("key", "shape", "dtype", "bytes"):
            table.add_column(column, overflow="fold")
        for t in info["tensors"]:
            table.add_row(t["key"], str(t["shape"]), t["dtype"], _bytes(t["bytes"]))
        out.print(table)
    if report is not None:
        out.print(report.table(title=f"against {against}"))
        for entry in report.streams:
            if entry.error is None and not entry.mismatch.ok:
                out.print(entry.mismatch.table(title=f"{entry.stream}: keys that do not fit"))


def _add_node(parent: Any, node: dict[str, Any]) -> None:
    label = (
        f"{node['prefix'].rsplit('.', 1)[-1]}  [dim]{node['parameters']:,} params, {_bytes(node['bytes'])}, "
        f"{'/'.join(node['dtypes'])}[/dim]"
    )
    branch = parent.add(label)
    for child in node["children"]:
        _add_node(branch, child)


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

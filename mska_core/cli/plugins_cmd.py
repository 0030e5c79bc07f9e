"""``mska plugins [--json] [--all] [--check]``: the plugins, their status and what they provide."""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import console, emit_json
from mska_core.hookspecs import HOOKS_BY_NAME


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list plugins with distribution, version, status and what they provide",
        description="List the plugins mska-core loaded, with what each provides.",
    )
    parser.add_argument("--json", action="store_true", help="write machine-readable JSON on stdout")
    parser.add_argument(
        "--all", action="store_true", help="also list built-in plugins, disabled ones and those not loaded"
    )
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when any plugin failed or two plugins supply one name")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mska_core.registry import get_registry

    registry = get_registry()
    registry.collect_all()
    infos = list(registry.host.infos.values())
    shown = [i for i in infos if args.all or (not i.builtin and i.status in ("loaded", "failed"))]
    failed = [i for i in infos if i.status == "failed"]
    clashes = registry.clashes()
    if args.json:
        emit_json(
            {
                "plugins": [info.as_dict() for info in shown],
                "streams": [_stream_dict(s) for s in registry.streams],
                "failed": [info.name for info in failed],
                "clashes": clashes,
            }
        )
    else:
        _print_table(shown)
        for clash in (c for c in clashes if c["chosen"] is None):
            console().print(registry.catalog(clash["hook"]).clash_message(clash["name"]), markup=False)
    if args.check and (failed or clashes):
        return 1
    return 0


def _stream_dict(spec: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "weight_group": spec.weight_group,
        "crops": spec.crops,
        "joints": {layout: len(indices) for layout, indices in spec.joints.items()},
        "plugin": spec.provider.plugin if spec.provider else None,
        "distribution": spec.provider.distribution if spec.provider else None,
    }


def _print_table(infos: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="mska plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "status", "provides"):
        table.add_column(column, overflow="fold")
    styles = {"loaded": "green", "failed": "bold red", "disabled": "yellow", "not loaded": "dim"}
    for info in infos:
        provides = "; ".join(
            f"{HOOKS_BY_NAME[hook].attribute.replace('_', ' ')}: {', '.join(names)}"
            for hook, names in info.provides.items() if names
        )
        if info.error:
            provides = f"[red]{info.error}[/red]"
        status = f"[{styles.get(info.status, '')}]{info.status}[/]"
        table.add_row(info.name, info.distribution, info.version, status, provides or "-")
    console().print(table)

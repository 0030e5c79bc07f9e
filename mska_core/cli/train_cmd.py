"""``mska train --config F [--set k=v]... [--resume]``: fine-tune a multi-stream model.

The shorthands of the SLT fine-tuning guide are sugar for config keys, derived from what the plugins
register (no stream name is written here):

============================  ==================================================================
``--use-mska``                the MSKA paper's four streams and four heads, when the config names none
``--mska-GROUP-state F``      ``[model.init] GROUP = F`` for any weight group or stream
                              (``--mska-hand-state``: both hands, weight group ``hand``)
``--STREAM-backbone S``       ``[model.streams.STREAM] backbone = S`` for any registered stream
                              (and ``[data] crops = true``), e.g. ``--face-backbone``,
                              ``--hand-left-backbone``
============================  ==================================================================

In these options a ``_`` of a name is written ``-`` (``hand_left`` -> ``--hand-left-backbone``); the
form ``--OPTION=VALUE`` works too. An option that names no registered stream or weight group is an
error that lists the valid ones.

Torchrun: ``torchrun --nproc_per_node=N -m mska_core train ...`` trains with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from mska_core.cli.output import add_config_options, add_stream_change_option, emit_json, status_console

#: ``--STREAM-backbone`` and ``--mska-GROUP-state``: the per-stream and per-weight-group shorthands.
_BACKBONE = re.compile(r"^--(?!mska-)([A-Za-z][A-Za-z0-9.\-]*)-backbone$")
_STATE = re.compile(r"^--mska-([A-Za-z][A-Za-z0-9.\-]*)-state$")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune a multi-stream model from a TOML config",
        description="Fine-tune with CTC, self-distillation and translation losses; writes a run folder "
                    "with config.toml, metrics.jsonl, last.pt and best.pt.",
    )
    parser.add_argument("--config", "-c", dest="file", metavar="F", help="TOML config (omit for the defaults)")
    add_config_options(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    parser.add_argument("--extend", action="store_true",
                        help="with --resume: allow a larger train.epochs than the run was started with")
    add_stream_change_option(parser)
    parser.add_argument("--use-mska", action="store_true",
                        help="the MSKA paper's four streams and heads (when the config names none)")
    parser.add_argument_group(  # documented here; _with_stream_options collects them
        "stream shorthands (any registered stream or weight group; '_' written '-')",
        "--mska-GROUP-state F sets [model.init] GROUP (e.g. --mska-face-state F; --mska-hand-state F "
        "for both hands); --STREAM-backbone SPEC sets [model.streams.STREAM] backbone (e.g. "
        "--face-backbone file::backbone.pt:dinov2_vits14, --hand-left-backbone SPEC).",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="write the run's summary as JSON on stdout")
    parser.set_defaults(run=run, backbones={}, states={})
    parser.parse_known_args = _with_stream_options(parser)  # type: ignore[method-assign]


def _with_stream_options(parser: argparse.ArgumentParser) -> Callable[..., Any]:
    """``parser.parse_known_args`` that also collects ``--STREAM-backbone`` and ``--mska-GROUP-state`` into
    ``args.backbones`` and ``args.states`` ({name as written: value}); whatever else argparse did not
    recognise stays unrecognised (an error, as usual)."""

    parse_known_args = parser.parse_known_args

    def parse(args: Sequence[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        namespace, extras = parse_known_args(args, namespace)
        rest: list[str] = []
        backbones, states = dict(namespace.backbones), dict(namespace.states)
        items = iter(extras)
        for item in items:
            option, eq, value = item.partition("=")
            match_backbone, match_state = _BACKBONE.match(option), _STATE.match(option)
            if not (match_backbone or match_state):
                rest.append(item)
                continue
            if not eq:
                value = next(items, None)
                if value is None or value.startswith("--"):
                    parser.error(f"argument {option}: expected one argument")
            if match_backbone:
                backbones[match_backbone.group(1)] = value
            else:
                states[match_state.group(1)] = value  # type: ignore[union-attr]
        namespace.backbones, namespace.states = backbones, states
        return namespace, rest

    return parse


def _resolve_names(written: dict[str, str], valid: Sequence[str], option: str) -> dict[str, str]:
    """``{name: value}`` for options written with ``-`` for ``_``; an unknown name is a ConfigError."""
    from mska_core.errors import ConfigError

    by_option = {name.replace("_", "-"): name for name in valid}
    resolved = {}
    for name, value in written.items():
        key = name if name in valid else by_option.get(name)
        if key is None:
            shown = ", ".join(option.replace("NAME", n.replace("_", "-")) for n in valid)
            raise ConfigError(f"{option.replace('NAME', name)}: no registered stream or weight group "
                              f"{name!r}; valid: {shown or 'none'}")
        resolved[key] = value
    return resolved


def resolve_config(args: argparse.Namespace, registry: Any) -> tuple[Any, list[str]]:
    """The config of ``--config`` with ``--set`` overrides and the shorthands applied; and notes on
    what the shorthands did."""
    from mska_core.config.loader import apply_override, config_data, structure
    from mska_core.config.schema import PAPER_HEADS, PAPER_STREAMS, Config

    # Whether the file leaves its streams implicit (the paper's streams are then named for --use-mska,
    # whatever --set adds to them); --set is applied as by every command.
    implicit_streams = not config_data(args.file)[0].get("model", {}).get("streams")
    data, source = config_data(args.file, args.overrides)
    notes: list[str] = []
    model = data.setdefault("model", {})
    layout = model.get("layout", "coco_wholebody")
    stream_names = [spec.name for spec in registry.streams]
    groups = list(dict.fromkeys([spec.weight_group for spec in registry.streams] + stream_names))
    backbones = _resolve_names(getattr(args, "backbones", {}), stream_names, "--NAME-backbone")
    states = _resolve_names(getattr(args, "states", {}), groups, "--mska-NAME-state")
    touches_streams = bool(backbones)
    if (args.use_mska or touches_streams) and implicit_streams:
        # Naming one stream selects only the named ones: name every stream the config used implicitly.
        if args.use_mska:
            names = list(PAPER_STREAMS)
        else:
            names = [s.name for s in registry.streams_for_layout(layout)]
        streams = model.setdefault("streams", {})
        for name in names:
            streams.setdefault(name, {})
        if args.use_mska and not model.get("heads"):
            model["heads"] = {name: {"streams": list(streams)} for name, streams in PAPER_HEADS.items()}
        notes.append(f"streams: {', '.join(names)}")
    shorthands = {**{f"model.init.{group}": path for group, path in states.items()},
                  **{f"model.streams.{stream}.backbone": spec for stream, spec in backbones.items()}}
    for key, value in shorthands.items():
        apply_override(data, f"{key}={json.dumps(value)}")
        notes.append(f"{key} = {value}")
    if touches_streams and "crops" not in data.get("data", {}):
        apply_override(data, "data.crops=true")
        notes.append("data.crops = true (crop backbones read the streams' crops)")
    if args.no_progress:
        apply_override(data, "train.progress=false")
    config = structure(Config, data, source)
    return config, notes


def run(args: argparse.Namespace) -> int:
    from mska_core.registry import get_registry
    from mska_core.training.distributed import from_environment
    from mska_core.training.loop import FineTuning

    registry = get_registry()
    config, notes = resolve_config(args, registry)
    main_rank = from_environment().is_main
    out = status_console()
    for note in notes:
        if main_rank:
            out.print(f"[dim]shorthand:[/dim] {note}")
    tuning = FineTuning(config, resume=args.resume, registry=registry, out=out.print, console=out,
                        extend=args.extend, allow_stream_change=args.allow_stream_change)
    tuning.prepare()
    if main_rank:
        out.print(f"run folder: {tuning.run_dir}")
        out.print(f"data: {tuning.corpus.source} — {len(tuning.corpus.train)} train, {len(tuning.corpus.dev)} dev, "
                  f"{len(tuning.corpus.test)} test clips; {_vocabulary_line(tuning)}")
        params = sum(p.numel() for p in tuning.model.parameters())
        out.print(f"model: streams {', '.join(tuning.model.encoder.stream_names)}; heads "
                  f"{', '.join(tuning.model.encoder.heads)}; {params / 1e6:.2f} M parameters; losses "
                  f"{', '.join(f'{k} x{w:g}' for k, (_, w) in tuning.losses.items())}")
        if tuning.init_report is not None:
            report = tuning.init_report
            out.print(report.table("initial weights") if hasattr(report, "table") else str(report))
        if tuning.info.enabled:
            out.print(f"distributed: {tuning.info.world_size} processes ({tuning.info.backend})")
    try:
        result = tuning.run()
    finally:
        from mska_core.training.distributed import teardown

        teardown(tuning.info)
    if not main_rank:
        return 0
    summary = {
        "run_dir": str(result.run_dir), "best": str(result.best) if result.best else None,
        "last": str(result.last), "global_step": result.global_step, "epoch": result.epoch,
        "seconds": round(result.seconds, 1), "best_dev": result.best_metrics,
    }
    if args.json:
        emit_json(summary)
    else:
        best = result.best_metrics
        shown = ", ".join(f"{k} {best[k]:.2f}" for k in ("wer", "bleu4", "rouge_l") if k in best)
        if best and "wer" not in best:
            shown = f"wer n/a, {shown}" if shown else "wer n/a"
        out.print(f"[green]done[/green] in {result.seconds:.0f} s: best dev {shown or '-'} -> {result.best or result.last}")
    return 0


def _vocabulary_line(tuning: Any) -> str:
    """``"23 glosses, text vocabulary 412 (mska decoder)"``, or what a gloss-free corpus has."""
    glosses = (f"{len(tuning.vocabularies.gloss)} glosses" if tuning.vocabularies.has_glosses
               else "no glosses (gloss-free corpus)")
    decoder = tuning.model.decoder
    if decoder is None:
        return glosses
    return f"{glosses}, text vocabulary {len(decoder.tokenizer)} ({tuning.model.decoder_name} decoder)"

"""Checks of a config against what the plugins registered: layouts, streams, heads, losses.

The schema can only check shapes and types; these checks know the registry, so a misspelt stream or
loss name is caught with the list of valid names before any model is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mska_core.config.schema import PAPER_HEADS, PAPER_STREAMS, Config
from mska_core.errors import ConfigError, RegistryError


def selected_streams(model: Any, registry: Any) -> list[str]:
    """The streams a model config selects: those ``[model.streams]`` names; else those its heads name
    (a config that names streams only in ``[model.heads]`` gains no branch that no head reads when a
    stream plugin is installed); else every stream with joints in its layout."""
    if model.streams:
        return list(model.streams)
    if model.heads:
        return list(dict.fromkeys(stream for head in model.heads.values() for stream in head.streams))
    return [spec.name for spec in registry.streams_for_layout(model.layout)]


def check_against_registry(config: Config, source: str, registry: Any) -> None:
    """Raise :class:`ConfigError` for names in ``config`` that no plugin of ``registry`` (as the config's
    ``[plugins]`` table narrows it) supplies."""
    from mska_core.registry import registry_for

    registry = registry_for(config.plugins, registry)

    def look_up(catalog: Any, name: str, key: str) -> Any:
        try:
            return catalog.get(name)
        except RegistryError as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from None

    look_up(registry.layouts, config.model.layout, "model.layout")
    for name, stream_cfg in config.model.streams.items():
        spec = look_up(registry.streams, name, f"model.streams.{name}")
        if stream_cfg.keypoints and not spec.joints_for(config.model.layout) and not stream_cfg.backbone:
            raise ConfigError(
                f"{source}: model.streams.{name}: stream {name!r} has no joints in layout "
                f"{config.model.layout!r} and no backbone; set a backbone or choose another layout"
            )
    streams = selected_streams(config.model, registry)
    for head, head_cfg in config.model.heads.items():
        for name in head_cfg.streams:
            if name in streams and name not in config.model.streams:
                spec = look_up(registry.streams, name, f"model.heads.{head}.streams")
                if not spec.joints_for(config.model.layout):
                    raise ConfigError(
                        f"{source}: model.heads.{head}.streams: stream {name!r} has no joints in layout "
                        f"{config.model.layout!r}; give it a backbone under [model.streams.{name}] or choose "
                        "another layout"
                    )
    if not streams:
        raise ConfigError(
            f"{source}: model: no stream has joints in layout {config.model.layout!r}; "
            "install a stream plugin or name streams under [model.streams.<name>]"
        )
    for head, head_cfg in config.model.heads.items():
        if not head_cfg.streams:
            raise ConfigError(f"{source}: model.heads.{head}.streams: a head needs at least one stream")
        for stream in head_cfg.streams:
            if stream not in streams:
                raise ConfigError(
                    f"{source}: model.heads.{head}.streams: {stream!r} is not a selected stream; "
                    f"selected: {', '.join(streams)}"
                )
    for loss, loss_cfg in config.losses.items():
        if loss in registry.losses:
            look_up(registry.losses, loss, f"losses.{loss}")  # a contested name says how to choose
            continue
        if loss_cfg.weight == 0:  # switched off: its plugin need not be loaded
            continue
        raise ConfigError(f"{source}: losses.{loss}: {registry.losses.unknown_message(loss)}; "
                          f"{_missing_loss_remedy(loss, registry)}")
    data_source = look_up(registry.data_sources, config.data.source, "data.source")
    try:
        source_options(data_source, config.data.options)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    fmt = look_up(registry.checkpoint_formats, config.run.format, "run.format")
    if fmt.write is None or not fmt.suffixes:
        writable = ", ".join(f.name for f in registry.checkpoint_formats if f.write is not None and f.suffixes)
        raise ConfigError(f"{source}: run.format: checkpoint format {fmt.name!r} ({fmt.provider}) "
                          f"{'only reads files' if fmt.write is None else 'names no file suffix'}; formats that "
                          f"write run outputs: {writable}")
    for logger in config.run.loggers:
        look_up(registry.loggers, logger, "run.loggers")
    check_loss_options(config, source, registry)


def _missing_loss_remedy(loss: str, registry: Any) -> str:
    """What to do about a loss the config names and no loaded plugin supplies: naming the plugins that
    are disabled or failed (one of them may be the loss's), and the config table to remove."""
    host = getattr(registry, "host", None)
    off = [f"{info.name} ({info.status})" for info in (host.infos.values() if host is not None else ())
           if info.status in ("disabled", "failed")]
    table = f"remove the [losses.{loss}] table from the config (or --set losses.{loss}.weight=0)"
    if off:
        return (f"plugins not loaded: {', '.join(off)}; if the loss came from one of them, {table}, or enable "
                "and repair that plugin")
    return f"install the plugin that supplies it, or {table}"


def check_loss_options(config: Config, source: str, registry: Any) -> None:
    """Raise :class:`ConfigError` for a ``[losses.<name>]`` key that the loss's ``build`` does not take."""
    import inspect

    for name, loss_cfg in config.losses.items():
        if name not in registry.losses:
            continue
        spec = registry.losses.get(name)
        try:
            signature = inspect.signature(spec.build)
        except (TypeError, ValueError):  # a builtin without a signature: nothing to check
            continue
        parameters = signature.parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            _try_build(name, spec, loss_cfg.options, source)
            continue
        accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in loss_cfg.options:
            if key not in accepted:
                from mska_core.registry import suggest

                listing = ", ".join(["weight", *accepted])
                raise ConfigError(
                    f"{source}: unknown key 'losses.{name}.{key}'{suggest(key, accepted)}; loss {name!r} "
                    f"({spec.provider}) takes: {listing}"
                )


def source_options(spec: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[data.options]`` a data source ``spec`` receives: every key it declares
    (:attr:`~mska_core.records.DataSource.options`), the ``given`` value or the default.

    A key the source does not declare is a :class:`ConfigError` naming ``data.options.KEY``, the
    nearest declared key and what the source takes; a value whose type is not that of a non-``None``
    default (an integer where a number is declared passes) is one too.
    """
    from mska_core.registry import suggest

    declared = dict(spec.options)
    for key, value in given.items():
        if key not in declared:
            takes = ", ".join(declared) if declared else "no options"
            raise ConfigError(
                f"unknown key 'data.options.{key}'{suggest(key, list(declared))}; data source {spec.name!r} "
                f"({spec.provider}) takes: {takes}"
            )
        default = declared[key]
        if default is not None and not _same_kind(value, default):
            raise ConfigError(
                f"data.options.{key}: expected {_kind(default)} (data source {spec.name!r} declares "
                f"{default!r} as its default), got {value!r}"
            )
    return {**declared, **given}


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _kind(default: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             tuple: "an array", dict: "a table"}
    return names.get(type(default), type(default).__name__)


def resolve_model(config: Config, registry: Any) -> Config:
    """``config`` with ``[model.streams]`` and ``[model.heads]`` naming every stream and head it resolves to.

    A config that leaves its streams implicit selects every registered stream of its layout, so its
    meaning would change when a stream plugin is installed or removed. The resolved config stored
    with a run and in its checkpoints names them, so it means the same thing forever.
    """
    import attrs

    from mska_core.config.schema import HeadConfig, StreamConfig

    names = selected_streams(config.model, registry)
    streams = {name: config.model.streams.get(name, StreamConfig()) for name in names}
    heads = {name: HeadConfig(streams=tuple(members))
             for name, members in resolve_heads(config.model, names).items()}
    return attrs.evolve(config, model=attrs.evolve(config.model, streams=streams, heads=heads))


def providers_of(config: Config, registry: Any) -> dict[str, dict[str, dict[str, str]]]:
    """Which plugin supplied each stream, loss and the layout ``config`` uses, as plain data; each stream
    also with the fingerprint of its joints per layout (:func:`~mska_core.config.identity.stream_identity`).

    Stored in checkpoints so that loading one where a plugin is missing can say what to install, and
    loading one where another plugin supplies a stream, or its joints changed, is refused.
    """
    from mska_core.config.identity import stream_identity

    def entry(record: Any) -> dict[str, str]:
        provider = record.provider
        if provider is None:
            return {}
        return {"plugin": provider.plugin, "distribution": provider.distribution, "version": provider.version}

    out: dict[str, dict[str, dict[str, str]]] = {"streams": {}, "losses": {}, "layouts": {}}
    for name in selected_streams(config.model, registry):
        if name in registry.streams:
            out["streams"][name] = stream_identity(registry.streams.get(name))
    for name in config.losses:
        if name in registry.losses:
            out["losses"][name] = entry(registry.losses.get(name))
    if config.model.layout in registry.layouts:
        out["layouts"][config.model.layout] = entry(registry.layouts.get(config.model.layout))
    return out


def check_providers(config: Config, providers: Any, source: str, registry: Any) -> None:
    """Raise :class:`ConfigError` naming the plugin (and distribution) a stored config needs but that
    is not loaded; ``providers`` is what :func:`providers_of` stored (may be empty)."""
    providers = providers if isinstance(providers, dict) else {}
    wanted = [("streams", "stream", name, registry.streams) for name in config.model.streams]
    wanted += [("losses", "loss", name, registry.losses) for name in config.losses
               if config.losses[name].weight != 0]
    wanted.append(("layouts", "keypoint layout", config.model.layout, registry.layouts))
    for table, kind, name, catalog in wanted:
        if name in catalog:
            continue
        known = (providers.get(table) or {}).get(name) or {}
        if known.get("distribution"):
            raise ConfigError(
                f"{source}: needs {kind} {name!r}, supplied by plugin {known.get('plugin')!r} "
                f"({known['distribution']} {known.get('version', '?')}), which is not loaded; install "
                f"{known['distribution']} (or enable the plugin: MSKA_LOAD_PLUGINS, MSKA_DISABLE_PLUGINS, "
                "[plugins] disable)"
            )
        raise ConfigError(
            f"{source}: needs {kind} {name!r}, which no loaded plugin supplies; install the plugin that "
            f"supplies it (registered: {', '.join(catalog.names()) or 'none'})"
        )


def _try_build(name: str, spec: Any, options: dict[str, Any], source: str) -> None:
    """A factory that takes ``**options`` (a deferred import) is built once to learn whether it takes
    ``options``; an unexpected keyword is a ConfigError, anything else shows when the run builds it."""
    if not options:
        return
    import re

    from mska_core.errors import MskaError

    try:
        spec.build(**options)
    except TypeError as exc:
        match = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
        if match:
            raise ConfigError(
                f"{source}: unknown key 'losses.{name}.{match.group(1)}'; loss {name!r} ({spec.provider}) does "
                "not take it (see docs/training.md for each loss's options)"
            ) from None
    except MskaError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ConfigError(f"{source}: losses.{name}: {exc}") from None
    except Exception:  # noqa: BLE001 - other problems are reported when the run builds the loss
        pass


def resolve_heads(model_cfg: Any, stream_names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The heads of ``[model.heads]``, or the default scheme for the selected streams.

    Default: the paper's four heads when exactly the paper's four streams are selected; otherwise a
    ``fuse`` head over every stream plus one head per stream (only ``fuse`` for a single stream).
    """
    if model_cfg.heads:
        heads = {name: tuple(head.streams) for name, head in model_cfg.heads.items()}
        for name, streams in heads.items():
            if not streams:
                raise ConfigError(f"model.heads.{name}.streams: a head needs at least one stream")
            for stream in streams:
                if stream not in stream_names:
                    raise ConfigError(
                        f"model.heads.{name}.streams: {stream!r} is not a selected stream; "
                        f"selected: {', '.join(stream_names)}"
                    )
        return heads
    if sorted(stream_names) == sorted(PAPER_STREAMS):
        return dict(PAPER_HEADS)
    heads = {"fuse": tuple(stream_names)}
    if len(stream_names) > 1:
        heads.update({name: (name,) for name in stream_names})
    return heads

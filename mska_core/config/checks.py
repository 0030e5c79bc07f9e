"""Checks of a config against what the plugins registered: layouts, streams, heads, losses.

The schema can only check shapes and types; these checks know the registry, so a misspelt stream or
loss name is caught with the list of valid names before any model is built.
"""

from __future__ import annotations

from typing import Any

from mska_core.config.schema import Config
from mska_core.errors import ConfigError, RegistryError


def selected_streams(model: Any, registry: Any) -> list[str]:
    """The streams a model config selects: those it names, else every stream with joints in its layout."""
    if model.streams:
        return list(model.streams)
    return [spec.name for spec in registry.streams_for_layout(model.layout)]


def check_against_registry(config: Config, source: str, registry: Any = None) -> None:
    """Raise :class:`ConfigError` for names in ``config`` that no loaded plugin supplies."""
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()

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
    for loss in config.losses:
        look_up(registry.losses, loss, f"losses.{loss}")

"""Plugin loading: the built-ins, the ``mska`` entry points, isolation of failures, and listing.

Built-in plugins are ordinary plugin modules named in :data:`BUILTIN_PLUGINS`. Everything else,
including the first-party stream plugins that ship in the mska-core wheel, arrives through the
``mska`` entry-point group and is loaded by our own loop, one ``try`` per plugin: a plugin that fails
to import, implements a hook the core does not know, or implements one with a wrong signature is
skipped, reported once on stderr, and listed as ``failed``.

Environment:

- ``MSKA_STRICT_PLUGINS=1``: any plugin failure raises :class:`~mska_core.errors.PluginError`.
- ``MSKA_DISABLE_PLUGINS=a,b``: never load these plugins (built-ins and first-party ones too).
- ``MSKA_LOAD_PLUGINS``: unset loads every plugin; empty loads no external plugin; ``a,b`` loads only
  those external plugins. "External" means an entry point of a distribution other than mska-core;
  mska-core's own stream plugins always load unless disabled.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import pluggy

from mska_core import hookspecs
from mska_core.errors import PluginError

ENTRY_POINT_GROUP = "mska"
DISTRIBUTION = "mska-core"

#: Modules of mska-core that are registered as plugins before any entry point, in this order.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core-layouts", "mska_core.layouts"),
    ("core-backbones", "mska_core.backbones.plugin"),
    ("core-checkpoints", "mska_core.checkpoints.plugin"),
    ("core-losses", "mska_core.losses.plugin"),
)

LOADED, FAILED, DISABLED, SKIPPED = "loaded", "failed", "disabled", "not loaded"


@attrs.define
class PluginInfo:
    """What ``mska plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    status: str = LOADED
    error: str | None = None
    builtin: bool = False
    provides: dict[str, list[str]] = attrs.field(factory=dict)

    @property
    def first_party(self) -> bool:
        return self.distribution == DISTRIBUTION

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "builtin": self.builtin,
            "provides": {hook: list(names) for hook, names in self.provides.items()},
        }


def core_version() -> str:
    """The version of mska-core (its one home is ``mska_core.__version__``)."""
    from mska_core import __version__

    return __version__


def _names_from_env(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class PluginHost:
    """A pluggy manager together with what we know about every plugin it was offered."""

    def __init__(self, *, strict: bool = False, warn: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.strict = strict
        self._warn = warn

    # -- registration -------------------------------------------------------------------------

    def add(self, plugin: object, info: PluginInfo) -> bool:
        """Validate and register ``plugin``; on failure record it as failed. Returns success."""
        if info.name in self.infos and self.infos[info.name].status == LOADED:
            other = self.infos[info.name]
            return self.fail(
                info,
                f"the name is already taken by {other.distribution} {other.version} ({other.module})",
            )
        try:
            self._validate(plugin)
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001 - isolation of plugin failures is the point
            return self.fail(info, _describe(exc))
        self.infos[info.name] = info
        return True

    def fail(self, info: PluginInfo, error: str) -> bool:
        """Record ``info`` as failed, unregister it, and report it once (or raise when strict)."""
        info.status, info.error = FAILED, error
        self.infos[info.name] = info
        if self.pm.get_plugin(info.name) is not None:
            self.pm.unregister(name=info.name)
        message = (
            f"plugin {info.name!r} ({info.distribution} {info.version}) failed: {error}; "
            f"disable it with MSKA_DISABLE_PLUGINS={info.name} or uninstall {info.distribution}"
        )
        if self.strict:
            raise PluginError(message + " (MSKA_STRICT_PLUGINS is set)")
        if self._warn:
            sys.stderr.write(f"mska: warning: {message}\n")
        return False

    def _validate(self, plugin: object) -> None:
        known = set(hookspecs.HOOK_NAMES)
        for attr in dir(plugin):
            if self.pm.parse_hookimpl_opts(plugin, attr) is None:
                continue
            if attr not in known:
                raise PluginError(
                    f"implements unknown hook {attr!r}; known hooks: {', '.join(hookspecs.HOOK_NAMES)}"
                )
            expected = list(inspect.signature(getattr(hookspecs, attr)).parameters)
            asked = [
                name
                for name, parameter in inspect.signature(getattr(plugin, attr)).parameters.items()
                if parameter.default is inspect.Parameter.empty
                and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            ]
            unknown = [name for name in asked if name not in expected]
            if unknown:
                raise PluginError(
                    f"hook {attr}() takes {', '.join(expected) or 'no arguments'}, but the implementation "
                    f"asks for {', '.join(unknown)}"
                )

    # -- queries ------------------------------------------------------------------------------

    def info_for(self, plugin_name: str) -> PluginInfo:
        return self.infos[plugin_name]

    def loaded(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.status == LOADED]

    def failed(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.status == FAILED]

    def versions(self) -> dict[str, str]:
        """``{plugin: version}`` of every loaded plugin, as recorded in checkpoints."""
        return {info.name: info.version for info in self.loaded()}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_plugins(
    *,
    env: Mapping[str, str] | None = None,
    extra: Sequence[object] = (),
    disable: Iterable[str] = (),
    require: Iterable[str] = (),
    warn: bool = True,
) -> PluginHost:
    """Load the built-ins, then the ``mska`` entry points, then ``extra`` plugin objects.

    ``extra`` plugins (used by tests and by code that embeds mska-core) are registered under their
    ``__name__`` or class name with distribution ``<extra>``. ``disable`` adds to
    ``MSKA_DISABLE_PLUGINS``; ``require`` names plugins that must end up loaded.
    """
    env = os.environ if env is None else env
    host = PluginHost(strict=_truthy(env.get("MSKA_STRICT_PLUGINS")), warn=warn)
    disabled = set(_names_from_env(env.get("MSKA_DISABLE_PLUGINS")) or ()) | set(disable)
    only = _names_from_env(env.get("MSKA_LOAD_PLUGINS"))
    version = core_version()

    for name, module_name in BUILTIN_PLUGINS:
        info = PluginInfo(name, DISTRIBUTION, version, module_name, builtin=True)
        if name in disabled:
            info.status = DISABLED
            host.infos[name] = info
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            host.fail(info, _describe(exc))
            continue
        host.add(module, info)

    for ep in _entry_points():
        dist_name, dist_version = _distribution_of(ep)
        info = PluginInfo(ep.name, dist_name, dist_version, ep.value)
        if ep.name in disabled:
            info.status = DISABLED
            host.infos.setdefault(ep.name, info)
            continue
        if only is not None and not info.first_party and ep.name not in only:
            info.status = SKIPPED
            host.infos.setdefault(ep.name, info)
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001
            host.fail(info, _describe(exc))
            continue
        host.add(plugin, info)

    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name, "<extra>", "0", repr(plugin))
        if name in disabled:
            info.status = DISABLED
            host.infos[name] = info
            continue
        host.add(plugin, info)

    missing = [name for name in require if name not in host.infos or host.infos[name].status != LOADED]
    if missing:
        raise PluginError(
            f"required plugin(s) not loaded: {', '.join(sorted(missing))}; "
            f"loaded: {', '.join(info.name for info in host.loaded()) or 'none'} "
            "(install the plugin, or remove it from [plugins] required)"
        )
    return host


def _entry_points() -> list[Any]:
    from importlib import metadata

    seen: set[tuple[str, str]] = set()
    points = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key in seen:  # one distribution found twice on sys.path
            continue
        seen.add(key)
        points.append(ep)
    # mska-core's own plugins first, in the order its pyproject lists them; then the rest by name
    return sorted(points, key=lambda ep: (_distribution_of(ep)[0] != DISTRIBUTION, 0 if _distribution_of(ep)[0] == DISTRIBUTION else ep.name))


def _distribution_of(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown>", "?"
    name = dist.metadata["Name"] or "<unknown>"
    return name, dist.version or "?"

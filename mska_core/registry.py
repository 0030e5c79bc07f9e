"""Keyed look-ups over hook results.

The registry gathers each hook's results through pluggy (``pm.subset_hook_caller``), one plugin at a
time, checks what each returned, stamps every record with its :class:`~mska_core.records.Provider`,
and indexes the records by name. Two records with one name are a
:class:`~mska_core.errors.DuplicateNameError` naming both providers; a look-up of an unknown name is
an :class:`~mska_core.errors.UnknownNameError` listing valid names.

Which hooks exist, what their records are and what they are called all come from one table,
:data:`mska_core.hookspecs.HOOKS`: a registry has one :class:`Catalog` attribute per hook
(``registry.streams``, ``registry.losses``, ...), generated from it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

from mska_core.errors import DuplicateNameError, UnknownNameError
from mska_core.hookspecs import HOOKS, HOOKS_BY_NAME, Hook
from mska_core.plugins import (
    DISTRIBUTION,
    LOADED,
    PluginHost,
    check_required,
    guarded,
    load_plugins,
    plugin_output_to_stderr,
    user_interrupted,
)
from mska_core.records import Provider, StreamSpec

T = TypeVar("T")


def _stamp(record: Any, provider: Provider, hook: str) -> Any:
    """``record`` with its provider, and (for plugins outside mska-core) every callable field guarded."""
    changes: dict[str, Any] = {"provider": provider}
    if provider.distribution != DISTRIBUTION:
        # A config that names a loss keeps naming it once its plugin is disabled: say what else to change.
        remedy = (f" and remove the [losses.{record_name(record)}] table from the config (or --set "
                  f"losses.{record_name(record)}.weight=0)" if hook == "mska_losses" else "")
        for field in attrs.fields(type(record)):
            value = getattr(record, field.name)
            if field.name != "provider" and callable(value):
                what = f"{type(record).__name__} {record_name(record)!r}: {field.name}"
                changes[field.name] = guarded(value, provider, what, remedy=remedy)
    return attrs.evolve(record, **changes)


def record_name(record: object) -> str:
    return getattr(record, "scheme", None) or record.name  # type: ignore[attr-defined]


def suggest(name: str, valid: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Catalog(Generic[T]):
    """The records of one hook, by name, in registration order."""

    def __init__(self, kind: str, records: Sequence[T]) -> None:
        self.kind = kind
        self._by_name: dict[str, T] = {}
        for record in records:
            name = record_name(record)
            if name in self._by_name:
                first = self._by_name[name]
                raise DuplicateNameError(
                    f"{kind} {name!r} is supplied twice: by {first.provider} and by "  # type: ignore[attr-defined]
                    f"{record.provider}; disable one of them with MSKA_DISABLE_PLUGINS "  # type: ignore[attr-defined]
                    "or [plugins] disable"
                )
            self._by_name[name] = record

    def get(self, name: str) -> T:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        valid = self.names()
        listing = ", ".join(valid) if valid else "none (is a plugin disabled?)"
        return f"unknown {self.kind} {name!r}{suggest(name, valid)}; registered: {listing}"

    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[T]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def as_mapping(self) -> Mapping[str, T]:
        return dict(self._by_name)


class Registry:
    """Every record the loaded plugins supply, one :class:`Catalog` per hook.

    The catalogs are attributes named by :data:`mska_core.hookspecs.HOOKS` (``registry.streams``,
    ``registry.losses``, ...: each hook's ``attribute``), made on first use; ``catalog(hook_name)``
    is the same by hook name.
    """

    def __init__(self, host: PluginHost) -> None:
        self.host = host
        self._records: dict[str, list[object]] | None = None

    def records(self, hook: str) -> list[object]:
        """The checked, provider-stamped records of ``hook`` from every loaded plugin."""
        if self._records is None:
            self._records = self._collect()
        return self._records[hook]

    def _collect(self) -> dict[str, list[object]]:
        # Each plugin's implementations are called through pluggy on their own: pluggy's one call
        # over every plugin stops at the first exception without saying whose it was and drops
        # ``None`` results, while the contract needs every record attributed to its plugin and a
        # broken plugin isolated. A plugin whose hook raises or returns the wrong type is marked
        # failed and contributes nothing at all.
        pm = self.host.pm
        plugins = [(name, plugin) for name, plugin in pm.list_name_plugin() if plugin is not None]
        by_plugin: dict[str, dict[str, list[object]]] = {}
        for name, plugin in plugins:
            info = self.host.info_for(name)
            if info.status != LOADED:
                continue
            implemented = {caller.name for caller in pm.get_hookcallers(plugin) or ()}
            others = [other for _, other in plugins if other is not plugin]
            provider = Provider(info.name, info.distribution, info.version)
            supplied: dict[str, list[object]] = {}
            try:
                for hook in HOOKS:
                    if hook.name in implemented:
                        returned = self._call(pm.subset_hook_caller(hook.name, others), hook)
                        supplied[hook.name] = [_stamp(r, provider, hook.name) for r in returned]
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt) and user_interrupted():
                    raise
                self.host.fail(info, f"{hook.name}() failed: {type(exc).__name__}: {exc}")
                continue
            by_plugin[name] = supplied
        self._drop_clashes(by_plugin)
        records: dict[str, list[object]] = {hook.name: [] for hook in HOOKS}
        for plugin_name, hooks in by_plugin.items():
            info = self.host.info_for(plugin_name)
            for hook_name, stamped in hooks.items():
                info.provides[hook_name] = [record_name(r) for r in stamped]
                records[hook_name].extend(stamped)
        return records

    @staticmethod
    def _call(caller: Any, hook: Hook) -> list[object]:
        """The records one plugin's implementation of ``hook`` returns (``caller`` holds only it)."""
        with plugin_output_to_stderr():
            returned = [record for result in caller() for record in (result or ())]
        bad = [r for r in returned if not isinstance(r, hook.record)]
        if bad:
            raise TypeError(f"returned {type(bad[0]).__name__}, expected {hook.record.__name__} records")
        return returned

    def _drop_clashes(self, by_plugin: dict[str, dict[str, list[object]]]) -> None:
        """Mark failed every plugin that supplies a name an earlier plugin (or itself) already supplies.

        Plugins are judged in load order (built-ins, mska-core's own, then the others by name), so
        the later of two providers is the one that fails; its records are all dropped, and every
        command that does not need it keeps working.
        """
        taken: dict[tuple[str, str], Provider] = {}
        for plugin_name in list(by_plugin):
            hooks = by_plugin[plugin_name]
            clash = None
            own: set[tuple[str, str]] = set()
            for hook, stamped in hooks.items():
                for record in stamped:
                    key = (hook, record_name(record))
                    if key in taken or key in own:
                        first = taken.get(key, record.provider)  # type: ignore[attr-defined]
                        clash = (hook, key[1], first)
                        break
                    own.add(key)
                if clash:
                    break
            if clash is None:
                for key in own:
                    taken[key] = next(r.provider for r in hooks[key[0]] if record_name(r) == key[1])  # type: ignore[attr-defined]
                continue
            hook, name, first = clash
            info = self.host.info_for(plugin_name)
            del by_plugin[plugin_name]
            self.host.fail(
                info,
                f"{HOOKS_BY_NAME[hook].kind} {name!r} is already supplied by {first}"
                + (" (twice by this plugin)" if first.plugin == plugin_name else ""),
            )

    def catalog(self, hook: str) -> Catalog:
        """The :class:`Catalog` of ``hook`` (also the registry attribute the hook's table names)."""
        return Catalog(HOOKS_BY_NAME[hook].kind, self.records(hook))

    def streams_for_layout(self, layout: str) -> list[StreamSpec]:
        """Every registered stream with joints in ``layout``, in registration order."""
        self.layouts.get(layout)
        return [spec for spec in self.streams if spec.joints_for(layout)]

    def collect_all(self) -> None:
        """Call every hook once so that ``provides`` and failures are known (for listing)."""
        self.records("mska_streams")


class _CatalogAttribute:
    """``registry.<attribute>``: the :class:`Catalog` of one hook, made on first use and kept."""

    def __init__(self, hook: Hook) -> None:
        self.hook = hook
        self.__doc__ = f"The {hook.record.__name__} records of ``{hook.name}()``, by name."

    def __get__(self, registry: Registry | None, owner: type | None = None) -> Any:
        if registry is None:
            return self
        catalog = registry.catalog(self.hook.name)
        vars(registry)[self.hook.attribute] = catalog  # later look-ups find the instance attribute
        return catalog


for _hook in HOOKS:
    setattr(Registry, _hook.attribute, _CatalogAttribute(_hook))


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry over the plugins the environment selects (loaded on first use)."""
    global _default
    if _default is None:
        _default = Registry(load_plugins())
    return _default


def set_registry(registry: Registry | None) -> None:
    """Replace (or with ``None``, forget) the process-wide registry; the next use reloads."""
    global _default
    _default = registry


def registry_for(plugins_cfg: Any, registry: Registry) -> Registry:
    """The registry a config's ``[plugins]`` table asks for, starting from ``registry``.

    ``registry`` itself when the table disables no loaded plugin; otherwise plugins are loaded again
    with ``disable`` added to ``MSKA_DISABLE_PLUGINS`` (beside ``registry``'s extra plugins). A
    ``required`` plugin that is not loaded is a :class:`~mska_core.errors.PluginError`. A fresh
    registry replaces the process-wide one when ``registry`` was that one.
    """
    base = registry
    disable = tuple(getattr(plugins_cfg, "disable", ()) or ())
    required = tuple(getattr(plugins_cfg, "required", ()) or ())
    if any(base.host.infos.get(name) is not None and base.host.infos[name].status == LOADED
           for name in disable):
        fresh = Registry(load_plugins(extra=base.host.extra, disable=disable, warn=base.host.warns))
        if base is _default:
            set_registry(fresh)
        base = fresh
    base.collect_all()  # clashes mark plugins failed before `required` is judged
    check_required(base.host, required)
    return base


def make_registry(*extra: object, **kwargs: object) -> Registry:
    """A fresh registry over the environment's plugins plus ``extra`` plugin objects."""
    return Registry(load_plugins(extra=extra, **kwargs))  # type: ignore[arg-type]

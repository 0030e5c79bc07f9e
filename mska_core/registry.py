"""Keyed look-ups over hook results.

The registry gathers each hook's results through pluggy (``pm.subset_hook_caller``), one plugin at a
time, checks what each returned, stamps every record with its :class:`~mska_core.records.Provider`,
and indexes the records by name. Two plugins supplying one name is a *clash*: the name is contested, and neither record is
used until the user chooses its provider (``[plugins.providers] NAME = "PLUGIN"``, the registry's
``choices``) or disables one plugin; a look-up of a contested name is a
:class:`~mska_core.errors.DuplicateNameError` naming both providers and the choice to make. Load order
never decides. A look-up of an unknown name is an :class:`~mska_core.errors.UnknownNameError` listing
valid names.

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
    """The records of one hook, by name, in registration order.

    A name that several plugins supply is *contested*: it resolves to the record of the plugin that
    ``choices`` names for it, and otherwise a look-up raises :class:`DuplicateNameError` naming every
    provider and how to choose. Iteration yields the resolved records only.
    """

    def __init__(self, kind: str, records: Sequence[T], choices: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.choices = dict(choices or {})
        suppliers: dict[str, list[T]] = {}
        for record in records:
            suppliers.setdefault(record_name(record), []).append(record)
        self._by_name: dict[str, T] = {}
        self._contested: dict[str, list[T]] = {}
        for name, found in suppliers.items():
            chosen = [r for r in found if r.provider is not None  # type: ignore[attr-defined]
                      and r.provider.plugin == self.choices.get(name)]  # type: ignore[attr-defined]
            if len(found) == 1 or chosen:
                self._by_name[name] = (chosen or found)[0]
            else:
                self._contested[name] = found

    def get(self, name: str) -> T:
        if name in self._contested:
            raise DuplicateNameError(self.clash_message(name))
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def clash_message(self, name: str) -> str:
        """One line: who supplies the contested ``name`` and how the user chooses."""
        found = self._contested[name]
        providers = " and ".join(str(r.provider) for r in found)  # type: ignore[attr-defined]
        first = found[0].provider.plugin  # type: ignore[attr-defined]
        return (
            f"{self.kind} {name!r} is supplied by {providers}; choose one in the config "
            f"([plugins.providers] {name} = {first!r}, or --set plugins.providers.{name}={first}) or disable "
            "one (MSKA_DISABLE_PLUGINS, [plugins] disable)"
        )

    def contested(self) -> dict[str, list[T]]:
        """The names several plugins supply and no choice resolves, with their records."""
        return {name: list(found) for name, found in self._contested.items()}

    def suppliers(self, name: str) -> list[T]:
        """Every record of ``name``: the chosen or only one, or all the contested ones."""
        if name in self._contested:
            return list(self._contested[name])
        return [self._by_name[name]] if name in self._by_name else []

    def unknown_message(self, name: str) -> str:
        valid = self.names()
        listing = ", ".join(valid) if valid else "none (is a plugin disabled?)"
        return f"unknown {self.kind} {name!r}{suggest(name, valid)}; registered: {listing}"

    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name in self._contested

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
    is the same by hook name. ``choices`` (``[plugins.providers]``: name -> plugin) says which plugin
    supplies a name that several plugins supply.
    """

    def __init__(self, host: PluginHost, choices: Mapping[str, str] | None = None) -> None:
        self.host = host
        self.choices: dict[str, str] = dict(choices or {})
        self._records: dict[str, list[object]] | None = None

    def with_choices(self, choices: Mapping[str, str]) -> Registry:
        """A registry over the same plugins and records whose clashes ``choices`` resolve."""
        view = Registry(self.host, choices)
        view._records = self._records
        return view

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
        self._drop_repeats(by_plugin)
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

    def _drop_repeats(self, by_plugin: dict[str, dict[str, list[object]]]) -> None:
        """Mark failed every plugin that supplies one name twice itself (a bug in the plugin).

        Two plugins supplying one name are not a failure of either: the name is contested (see
        :class:`Catalog`) and the user chooses.
        """
        for plugin_name in list(by_plugin):
            for hook, stamped in by_plugin[plugin_name].items():
                names = [record_name(r) for r in stamped]
                repeated = next((n for n in names if names.count(n) > 1), None)
                if repeated is not None:
                    del by_plugin[plugin_name]
                    self.host.fail(self.host.info_for(plugin_name),
                                   f"{HOOKS_BY_NAME[hook].kind} {repeated!r} is supplied twice by this plugin")
                    break

    def clashes(self) -> list[dict[str, Any]]:
        """Every name several plugins supply, as plain data: hook kind, name, providers, the choice."""
        out = []
        for hook in HOOKS:
            suppliers: dict[str, list[Any]] = {}
            for record in self.records(hook.name):
                suppliers.setdefault(record_name(record), []).append(record.provider)  # type: ignore[attr-defined]
            for name, providers in suppliers.items():
                if len(providers) > 1:
                    chosen = self.choices.get(name)
                    out.append({
                        "hook": hook.name, "kind": hook.kind, "name": name,
                        "providers": [{"plugin": p.plugin, "distribution": p.distribution, "version": p.version}
                                      for p in providers],
                        "chosen": chosen if chosen in {p.plugin for p in providers} else None,
                    })
        return out

    def catalog(self, hook: str) -> Catalog:
        """The :class:`Catalog` of ``hook`` (also the registry attribute the hook's table names)."""
        return Catalog(HOOKS_BY_NAME[hook].kind, self.records(hook), self.choices)

    def streams_for_layout(self, layout: str) -> list[StreamSpec]:
        """Every registered stream with joints in ``layout``, in registration order; a contested stream
        with joints there is a :class:`DuplicateNameError` (it is never silently left out)."""
        self.layouts.get(layout)
        for name, found in self.streams.contested().items():
            if any(spec.joints_for(layout) for spec in found):
                raise DuplicateNameError(self.streams.clash_message(name))
        return [spec for spec in self.streams if spec.joints_for(layout)]

    def collect_all(self) -> None:
        """Call every hook once so that ``provides``, failures and clashes are known (for listing).

        Under ``MSKA_STRICT_PLUGINS`` a clash that ``choices`` does not resolve is a
        :class:`~mska_core.errors.PluginError`.
        """
        self.records("mska_streams")
        if self.host.strict:
            from mska_core.errors import PluginError

            for clash in self.clashes():
                if clash["chosen"] is None:
                    catalog = self.catalog(clash["hook"])
                    raise PluginError(catalog.clash_message(clash["name"]) + " (MSKA_STRICT_PLUGINS is set)")


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

    ``registry`` itself when the table disables no loaded plugin and chooses no provider; otherwise
    plugins are loaded again with ``disable`` added to ``MSKA_DISABLE_PLUGINS`` (beside ``registry``'s
    extra plugins), and ``providers`` (name -> plugin) resolves the names several plugins supply. A
    ``required`` plugin that is not loaded is a :class:`~mska_core.errors.PluginError`; a provider
    choice naming a plugin that does not supply the name is a :class:`~mska_core.errors.ConfigError`.
    A fresh registry (or the view with the choices) replaces the process-wide one when ``registry``
    was that one, so that the rest of a command sees the same choices.
    """
    base = registry
    disable = tuple(getattr(plugins_cfg, "disable", ()) or ())
    required = tuple(getattr(plugins_cfg, "required", ()) or ())
    choices = dict(getattr(plugins_cfg, "providers", None) or {})
    if any(base.host.infos.get(name) is not None and base.host.infos[name].status == LOADED
           for name in disable):
        fresh = Registry(load_plugins(extra=base.host.extra, disable=disable, warn=base.host.warns),
                         base.choices)
        if base is _default:
            set_registry(fresh)
        base = fresh
    if choices and choices != base.choices:
        base.records("mska_streams")  # collected once, shared with the view
        view = base.with_choices({**base.choices, **choices})
        check_choices(view, choices)
        if base is _default:
            set_registry(view)
        base = view
    base.collect_all()
    check_required(base.host, required)
    return base


def check_choices(registry: Registry, choices: Mapping[str, str]) -> None:
    """Raise :class:`~mska_core.errors.ConfigError` for a ``[plugins.providers]`` entry whose plugin
    supplies no record of that name."""
    from mska_core.errors import ConfigError

    for name, plugin in choices.items():
        suppliers = [record.provider.plugin for hook in HOOKS  # type: ignore[attr-defined]
                     for record in registry.records(hook.name) if record_name(record) == name]
        if plugin not in suppliers:
            listing = ", ".join(dict.fromkeys(suppliers)) or "no loaded plugin"
            raise ConfigError(
                f"plugins.providers.{name}: plugin {plugin!r} does not supply {name!r} (supplied by: {listing}); "
                "name one of those plugins or remove the entry"
            )


def make_registry(*extra: object, **kwargs: object) -> Registry:
    """A fresh registry over the environment's plugins plus ``extra`` plugin objects."""
    return Registry(load_plugins(extra=extra, **kwargs))  # type: ignore[arg-type]

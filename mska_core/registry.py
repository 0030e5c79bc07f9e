"""Keyed look-ups over hook results.

The registry calls every plugin's implementation of a hook on its own, checks what it returned,
stamps each record with its :class:`~mska_core.records.Provider`, and indexes the records by name.
Two records with one name are a :class:`~mska_core.errors.DuplicateNameError` naming both providers;
a look-up of an unknown name is an :class:`~mska_core.errors.UnknownNameError` listing valid names.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

from mska_core.errors import DuplicateNameError, UnknownNameError
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
from mska_core.records import (
    RECORD_TYPES,
    BackboneArch,
    BackboneLoader,
    CheckpointFormat,
    DataSource,
    KeypointEstimator,
    KeypointLayout,
    LossSpec,
    Provider,
    StreamSpec,
)

T = TypeVar("T")

#: How each hook's records are called in messages.
KINDS: dict[str, str] = {
    "mska_keypoint_layouts": "keypoint layout",
    "mska_streams": "stream",
    "mska_backbone_loaders": "backbone scheme",
    "mska_backbone_archs": "backbone architecture",
    "mska_checkpoint_formats": "checkpoint format",
    "mska_losses": "loss",
    "mska_data_sources": "data source",
    "mska_keypoint_estimators": "keypoint estimator",
}


def _stamp(record: Any, provider: Provider, hook: str) -> Any:
    """``record`` with its provider, and (for plugins outside mska-core) every callable field guarded."""
    changes: dict[str, Any] = {"provider": provider}
    if provider.distribution != DISTRIBUTION:
        for field in attrs.fields(type(record)):
            value = getattr(record, field.name)
            if field.name != "provider" and callable(value) and not isinstance(value, type(None)):
                what = f"{type(record).__name__} {record_name(record)!r}: {field.name}"
                changes[field.name] = guarded(value, provider, what)
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
    """Every record the loaded plugins supply, one :class:`Catalog` per hook."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host
        self._records: dict[str, list[object]] | None = None

    def records(self, hook: str) -> list[object]:
        """The checked, provider-stamped records of ``hook`` from every loaded plugin."""
        if self._records is None:
            self._records = self._collect()
        return self._records[hook]

    def _collect(self) -> dict[str, list[object]]:
        # Every hook is called once, plugin by plugin; a plugin whose hook raises or returns the
        # wrong type is marked failed and contributes nothing at all.
        by_plugin: dict[str, dict[str, list[object]]] = {}
        for hook, record_type in RECORD_TYPES.items():
            for impl in getattr(self.host.pm.hook, hook).get_hookimpls():
                info = self.host.info_for(impl.plugin_name)
                if info.status != LOADED:
                    continue
                try:
                    with plugin_output_to_stderr():
                        returned = list(impl.function() or ())
                    bad = [r for r in returned if not isinstance(r, record_type)]
                    if bad:
                        raise TypeError(
                            f"returned {type(bad[0]).__name__}, expected {record_type.__name__} records"
                        )
                except BaseException as exc:  # noqa: BLE001 - a broken hook must not break the others
                    if isinstance(exc, KeyboardInterrupt) and user_interrupted():
                        raise
                    self.host.fail(info, f"{hook}() failed: {type(exc).__name__}: {exc}")
                    by_plugin.pop(info.name, None)
                    continue
                provider = Provider(info.name, info.distribution, info.version)
                stamped = [_stamp(r, provider, hook) for r in returned]
                by_plugin.setdefault(info.name, {})[hook] = stamped
        self._drop_clashes(by_plugin)
        records: dict[str, list[object]] = {hook: [] for hook in RECORD_TYPES}
        for plugin_name, hooks in by_plugin.items():
            info = self.host.info_for(plugin_name)
            for hook, stamped in hooks.items():
                info.provides[hook] = [record_name(r) for r in stamped]
                records[hook].extend(stamped)
        return records

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
                f"{KINDS.get(hook, hook)} {name!r} is already supplied by {first}"
                + (" (twice by this plugin)" if first.plugin == plugin_name else ""),
            )

    def catalog(self, hook: str) -> Catalog:
        return Catalog(KINDS[hook], self.records(hook))

    @functools.cached_property
    def layouts(self) -> Catalog[KeypointLayout]:
        return self.catalog("mska_keypoint_layouts")

    @functools.cached_property
    def streams(self) -> Catalog[StreamSpec]:
        return self.catalog("mska_streams")

    @functools.cached_property
    def backbone_loaders(self) -> Catalog[BackboneLoader]:
        return self.catalog("mska_backbone_loaders")

    @functools.cached_property
    def backbone_archs(self) -> Catalog[BackboneArch]:
        return self.catalog("mska_backbone_archs")

    @functools.cached_property
    def checkpoint_formats(self) -> Catalog[CheckpointFormat]:
        return self.catalog("mska_checkpoint_formats")

    @functools.cached_property
    def losses(self) -> Catalog[LossSpec]:
        return self.catalog("mska_losses")

    @functools.cached_property
    def data_sources(self) -> Catalog[DataSource]:
        return self.catalog("mska_data_sources")

    @functools.cached_property
    def keypoint_estimators(self) -> Catalog[KeypointEstimator]:
        return self.catalog("mska_keypoint_estimators")

    def streams_for_layout(self, layout: str) -> list[StreamSpec]:
        """Every registered stream with joints in ``layout``, in registration order."""
        self.layouts.get(layout)
        return [spec for spec in self.streams if spec.joints_for(layout)]

    def collect_all(self) -> None:
        """Call every hook once so that ``provides`` and failures are known (for listing)."""
        self.records("mska_streams")


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


def registry_for(plugins_cfg: Any, registry: Registry | None = None) -> Registry:
    """The registry a config's ``[plugins]`` table asks for.

    ``registry`` (default: the process-wide one) when the table neither disables a loaded plugin nor
    requires one; otherwise plugins are loaded again with ``disable`` added to
    ``MSKA_DISABLE_PLUGINS``, and a ``required`` plugin that is not loaded is a
    :class:`~mska_core.errors.PluginError`. A fresh registry replaces the process-wide one when
    ``registry`` was that one.
    """
    base = registry if registry is not None else get_registry()
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

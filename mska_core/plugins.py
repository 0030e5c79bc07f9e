"""Plugin loading: the built-ins, the ``mska`` entry points, isolation of failures, and listing.

Built-in plugins are ordinary plugin modules named in :data:`BUILTIN_PLUGINS`. Everything else,
including the first-party stream plugins that ship in the mska-core wheel, arrives through the
``mska`` entry-point group and is loaded by our own loop, one ``try`` per plugin, then registered
through pluggy (``register`` checks each implementation's arguments against its spec,
``check_pending`` finds implementations of hooks with no spec): a plugin that fails to import,
implements a hook the core does not know, or implements one with a wrong signature is skipped,
reported once on stderr, and listed as ``failed``.

Isolation covers every :class:`BaseException` a plugin raises (``SystemExit`` and a
``KeyboardInterrupt`` it raises itself included; the user's own Ctrl-C still stops the command), and
while plugin code runs, what it prints goes to stderr so that ``--json`` output stays valid
(:func:`plugin_code`). A module-level ``mska_*`` function without ``@hookimpl`` marks its plugin
failed rather than being ignored. :func:`guarded` wraps the factories that records carry, so a
failure inside them later names the plugin, its distribution and version.

Environment:

- ``MSKA_STRICT_PLUGINS=1``: any plugin failure raises :class:`~mska_core.errors.PluginError`.
- ``MSKA_DISABLE_PLUGINS=a,b``: never load these plugins (built-ins and first-party ones too).
- ``MSKA_LOAD_PLUGINS``: unset loads every plugin; empty loads no external plugin; ``a,b`` loads only
  those external plugins. "External" means an entry point of a distribution other than mska-core;
  mska-core's own stream plugins always load unless disabled.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import pluggy

from mska_core import hookspecs
from mska_core.errors import MskaError, PluginError

ENTRY_POINT_GROUP = "mska"
DISTRIBUTION = "mska-core"

#: Modules of mska-core that are registered as plugins before any entry point, in this order.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core-layouts", "mska_core.layouts"),
    ("core-backbones", "mska_core.backbones.plugin"),
    ("core-checkpoints", "mska_core.checkpoints.plugin"),
    ("core-losses", "mska_core.losses.plugin"),
    ("core-text", "mska_core.text.plugin"),
    ("core-synthetic", "mska_core.synthetic.source"),
    ("core-data", "mska_core.data.sources"),
    ("core-loggers", "mska_core.training.tensorboard"),
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


# -- running plugin code --------------------------------------------------------------------------

_interrupted_by_user = False


def _mark_interrupt(signum: int, frame: Any) -> None:
    global _interrupted_by_user
    _interrupted_by_user = True
    signal.default_int_handler(signum, frame)


def watch_interrupts() -> None:
    """Tell the user's Ctrl-C apart from a ``KeyboardInterrupt`` that plugin code raises itself.

    Installs a SIGINT handler that records the signal and then behaves like Python's default one.
    Only in the main thread, and only while Python's default handler is in place.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError, TypeError):
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _mark_interrupt)


def user_interrupted() -> bool:
    """Whether the user pressed Ctrl-C (SIGINT) since :func:`watch_interrupts`."""
    return _interrupted_by_user


_redirect_lock = threading.Lock()
_redirect_depth = 0  # redirections in progress, in every thread
_redirect_saved: tuple[int | None, Any] = (None, None)  # descriptor 1 and sys.stdout before the first


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """While plugin code runs, send what it prints (``print`` and writes to file descriptor 1) to stderr.

    Used where plugin code is imported or builds something (its module, its hook calls, the callables
    of its records), never around what those build (a loss's ``forward`` runs without it): re-pointing
    a descriptor costs system calls. Redirections nest and overlap across threads: the first to begin
    re-points descriptor 1 and ``sys.stdout``, the last to end restores them, so no thread ever
    restores what another one saved.
    """
    global _redirect_depth, _redirect_saved
    with _redirect_lock:
        if _redirect_depth == 0:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            saved = None
            with contextlib.suppress(OSError, ValueError):
                saved = os.dup(1)
                os.dup2(2, 1)
            _redirect_saved = (saved, sys.stdout)
            sys.stdout = sys.stderr
        _redirect_depth += 1
    try:
        yield
    finally:
        with _redirect_lock:
            _redirect_depth -= 1
            if _redirect_depth == 0:
                saved, sys.stdout = _redirect_saved
                _redirect_saved = (None, None)
                if saved is not None:
                    with contextlib.suppress(OSError):
                        os.dup2(saved, 1)
                        os.close(saved)


def _is_user_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt) and _interrupted_by_user


def guarded(function: Callable[..., Any], provider: Any, what: str, *, redirect: bool = True,
            remedy: str = "") -> Callable[..., Any]:
    """``function`` (plugin code) wrapped so that a failure is one :class:`PluginError` naming ``provider``.

    Errors of mska-core's own hierarchy (:class:`~mska_core.errors.MskaError`) pass through: a plugin
    raises those on purpose for bad input. Anything else, ``SystemExit`` and a self-raised
    ``KeyboardInterrupt`` included, becomes "``what`` of plugin ... failed: ...". The signature is kept
    (``inspect.signature`` follows ``__wrapped__``). With ``redirect`` (factories, loaders, formats:
    called once per build or file) what the call prints goes to stderr
    (:func:`plugin_output_to_stderr`); calls made every step (a built loss's ``forward``) go without.
    ``remedy`` completes the advice to disable the plugin (what else to change so that the command
    then works, e.g. the config table that names the plugin's loss).
    """
    if isinstance(function, _Guarded):
        return function
    return _Guarded(function, provider, what, redirect, remedy)


class _Guarded:
    """A plugin callable with failures attributed (see :func:`guarded`); picklable when the callable
    is, so records can cross to worker processes."""

    def __init__(self, function: Callable[..., Any], provider: Any, what: str, redirect: bool = True,
                 remedy: str = "") -> None:
        self.function, self.provider, self.what, self.redirect = function, provider, what, redirect
        self.remedy = remedy
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self.redirect:
                with plugin_output_to_stderr():
                    result = self.function(*args, **kwargs)
            else:
                result = self.function(*args, **kwargs)
        except MskaError:
            raise
        except BaseException as exc:
            if _is_user_interrupt(exc) or isinstance(exc, (GeneratorExit, MemoryError)):
                raise
            raise PluginError(
                f"{self.what} of {self.provider} failed: {_describe(exc)}; report it to the plugin's authors, "
                f"or disable the plugin with MSKA_DISABLE_PLUGINS={getattr(self.provider, 'plugin', '?')}"
                f"{self.remedy}"
            ) from exc
        return _guard_module(result, self.provider, self.what, self.remedy)

    def __reduce__(self) -> Any:
        return (_Guarded, (self.function, self.provider, self.what, self.redirect, self.remedy))

    def __get__(self, instance: Any, owner: Any = None) -> Any:  # stays a plain callable on classes
        return self


def _guard_module(result: Any, provider: Any, what: str, remedy: str = "") -> Any:
    """A torch module a plugin factory built gets its ``forward`` guarded too (loss forwards)."""
    forward = getattr(type(result), "forward", None)
    if forward is None or not callable(forward) or "torch" not in sys.modules:
        return result
    import torch

    if isinstance(result, torch.nn.Module) and "forward" not in vars(result):
        with contextlib.suppress(AttributeError, TypeError):
            result.forward = guarded(result.forward, provider, f"{what}(...).forward", redirect=False,
                                     remedy=remedy)
    return result


class PluginHost:
    """A pluggy manager together with what we know about every plugin it was offered."""

    def __init__(self, *, strict: bool = False, warn: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.strict = strict
        self._warn = warn
        self.extra: tuple[object, ...] = ()  # plugin objects given to load_plugins(extra=...)

    @property
    def warns(self) -> bool:
        return self._warn

    # -- registration -------------------------------------------------------------------------

    def add(self, plugin: object, info: PluginInfo) -> bool:
        """Register ``plugin`` through pluggy; on failure record it as failed. Returns success.

        pluggy's ``register`` checks every implementation's signature against its spec and
        ``check_pending`` finds implementations of hooks with no spec; what pluggy does not check, a
        module-level ``mska_*`` function left undecorated, is checked here first.
        """
        if info.name in self.infos and self.infos[info.name].status == LOADED:
            other = self.infos[info.name]
            return self.fail(
                info,
                f"the name is already taken by {other.distribution} {other.version} ({other.module})",
            )
        try:
            _refuse_undecorated(self.pm, plugin)
            self.pm.register(plugin, name=info.name)
            self.pm.check_pending()  # every plugin before this one passed, so a failure is this one's
        except BaseException as exc:
            if _is_user_interrupt(exc):
                raise
            return self.fail(info, self._explain(exc, plugin))
        self.infos[info.name] = info
        return True

    def fail(self, info: PluginInfo, error: str) -> bool:
        """Record ``info`` as failed, unregister it, and report it once (or raise when strict).

        A plugin whose name another loaded plugin holds is reported but leaves that one alone.
        """
        info.status, info.error = FAILED, error
        holder = self.infos.get(info.name)
        if holder is None or holder is info or holder.status != LOADED:
            self.infos[info.name] = info
            if self.pm.get_plugin(info.name) is not None:
                self.pm.unregister(name=info.name)
        message = (
            f"plugin {info.name!r} ({info.distribution} {info.version}) failed: {error}; "
            f"disable it with MSKA_DISABLE_PLUGINS={info.name} (or [plugins] disable) or uninstall "
            f"{info.distribution}"
        )
        if self.strict:
            raise PluginError(message + " (MSKA_STRICT_PLUGINS is set)")
        if self._warn:
            sys.stderr.write(f"mska: warning: {message}\n")
        return False

    def _explain(self, exc: BaseException, plugin: object) -> str:
        """One line for a registration failure; pluggy's own messages span several lines."""
        if not isinstance(exc, pluggy.PluginValidationError):
            return _describe(exc)
        unknown = [caller.name for caller in self.pm.get_hookcallers(plugin) or () if not caller.has_spec()]
        if unknown:
            return (f"implements unknown hook {unknown[0]!r}; known hooks: "
                    f"{', '.join(hook.name for hook in hookspecs.HOOKS)}")
        return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())

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


def _refuse_undecorated(pm: pluggy.PluginManager, plugin: object) -> None:
    """A ``mska_*`` function without ``@hookimpl`` would never be called: pluggy skips it silently."""
    for attr in dir(plugin):
        if attr.startswith(hookspecs.PROJECT + "_") and pm.parse_hookimpl_opts(plugin, attr) is None \
                and inspect.isroutine(getattr(plugin, attr, None)):
            raise PluginError(
                f"function {attr}() is not decorated with @hookimpl, so it would never be called; "
                "decorate it (from mska_core import hookimpl) or rename it"
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return str(exc)
    text = str(exc).strip().splitlines()
    described = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        described += " (raised by the plugin itself)"
    return described


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
    watch_interrupts()
    host = PluginHost(strict=_truthy(env.get("MSKA_STRICT_PLUGINS")), warn=warn)
    host.extra = tuple(extra)
    for name in set(_names_from_env(env.get("MSKA_DISABLE_PLUGINS")) or ()) | set(disable):
        host.pm.set_blocked(name)  # pluggy refuses a blocked name; we do not even import it
    only = _names_from_env(env.get("MSKA_LOAD_PLUGINS"))
    version = core_version()

    for name, module_name in BUILTIN_PLUGINS:
        info = PluginInfo(name, DISTRIBUTION, version, module_name, builtin=True)
        if host.pm.is_blocked(name):
            info.status = DISABLED
            host.infos[name] = info
            continue
        try:
            with plugin_output_to_stderr():
                module = importlib.import_module(module_name)
        except BaseException as exc:
            if _is_user_interrupt(exc):
                raise
            host.fail(info, _describe(exc))
            continue
        host.add(module, info)

    for ep in _entry_points():
        dist_name, dist_version = _distribution_of(ep)
        info = PluginInfo(ep.name, dist_name, dist_version, ep.value)
        if host.pm.is_blocked(ep.name):
            info.status = DISABLED
            host.infos.setdefault(ep.name, info)
            continue
        if only is not None and not info.first_party and ep.name not in only:
            info.status = SKIPPED
            host.infos.setdefault(ep.name, info)
            continue
        try:
            with plugin_output_to_stderr():
                plugin = ep.load()
        except BaseException as exc:
            if _is_user_interrupt(exc):
                raise
            host.fail(info, _describe(exc))
            continue
        host.add(plugin, info)

    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name, "<extra>", "0", repr(plugin))
        if host.pm.is_blocked(name):
            info.status = DISABLED
            host.infos[name] = info
            continue
        host.add(plugin, info)

    check_required(host, require)
    return host


def check_required(host: PluginHost, require: Iterable[str]) -> None:
    """Raise :class:`PluginError` when a plugin of ``require`` (``[plugins] required``) is not loaded."""
    missing = [name for name in require if name not in host.infos or host.infos[name].status != LOADED]
    if missing:
        why = "; ".join(
            f"{name} is {host.infos[name].status}" + (f" ({host.infos[name].error})" if host.infos[name].error else "")
            for name in sorted(missing) if name in host.infos
        )
        raise PluginError(
            f"required plugin(s) not loaded: {', '.join(sorted(missing))}"
            + (f" ({why})" if why else "")
            + f"; loaded: {', '.join(info.name for info in host.loaded()) or 'none'} "
            "(install the plugin, or remove it from [plugins] required)"
        )


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

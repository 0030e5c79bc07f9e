"""Reading TOML into the schema, ``--set`` overrides, and writing the resolved config back.

Errors are :class:`~mska_core.errors.ConfigError` with one line naming the file, the dotted key, what
was expected and, for unknown keys, the nearest valid key.

:func:`structure` is written here rather than taken from cattrs (attrs' own structuring library) on
measurement (``python -m bench.kept_libraries``, figures in bench/RESULTS.md): cattrs builds the same
``Config`` from every preset, 2-3x faster, but both take under a millisecond; of ten bad inputs it
accepts five silently (``epochs = "3"``, ``true``, ``2.5``; ``name = 5``; ``lr = inf``) and refuses two
without naming the key, where this loader refuses all ten with the dotted key and a suggestion.
"""

from __future__ import annotations

import difflib
import functools
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from mska_core.config.schema import Config, FieldValueError
from mska_core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)"}


def load_config(path: str | Path | Config | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read ``path`` (the defaults when ``None``; a :class:`Config` as it is, e.g. a checkpoint's), apply
    ``--set`` overrides, and validate."""
    data, source = config_data(path, overrides)
    return structure(Config, data, source)


def config_data(path: str | Path | Config | None = None, overrides: Sequence[str] = ()) -> tuple[dict[str, Any], str]:
    """The plain data of a config with ``--set`` overrides applied, and where it came from.

    The one way every command applies ``--set``: a file (or the defaults, or a stored config) first,
    then each ``dotted.key=VALUE`` in order; :func:`load_config` validates the result.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if isinstance(path, Config):
        data, source = unstructure(path), "<stored config>"
    elif path is not None:
        data, source = read_toml(path), str(path)
    for override in overrides:
        apply_override(data, override)
    if overrides:
        source = f"{source} with --set"
    return data, source


#: A config file larger than this is refused before it is read (configs are a few KB).
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML of ``path``; a missing, unreadable or oversized file, a path that is not a
    regular file (a directory, a named pipe, a device such as ``/dev/zero``: refused without being
    opened, so nothing waits on a pipe), a syntax error or absurd nesting is a one-line ConfigError. At
    most :data:`MAX_CONFIG_BYTES` are read."""
    import stat

    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found (looked at {path.resolve()})") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"config path {str(path)!r} is a directory; give a .toml file")
    if not stat.S_ISREG(info.st_mode):
        from mska_core.io import file_kind

        raise ConfigError(f"config path {str(path)!r} is a {file_kind(info.st_mode)}, not a regular file; save "
                          "the config to a .toml file and give its path")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {info.st_size} bytes is too large for a config file (at most {MAX_CONFIG_BYTES}); "
            "is it the right file?"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:  # the file grew after the check
        raise ConfigError(
            f"{path}: more than {MAX_CONFIG_BYTES} bytes without an end; a config file is a few KB of TOML — "
            "is it the right file?"
        )
    try:
        return tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a usable config: its tables or arrays are nested too deeply") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: parsed as a TOML value when it is one (``3``, ``true``, ``[1, 2]``,
    ``"x"``), otherwise taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``dotted.key=VALUE`` to the raw TOML mapping ``data`` in place."""
    key, sep, value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected dotted.key=VALUE, e.g. --set train.epochs=3")
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {override!r}: {key!r} is not a dotted key")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {'.'.join(parts[: i + 1])} is a value, not a table")
        node = child
    node[parts[-1]] = parse_value(value.strip())


def structure(cls: type, data: Any, source: str, where: str = "") -> Any:
    """Build attrs class ``cls`` from the TOML mapping ``data``; ``where`` is the dotted prefix."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {where or 'the file'}: expected a table, got {_describe(data)}")
    hints = _hints(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    open_table = getattr(cls, "__mska_open_table__", None)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else key
        if key not in fields or key == open_table:
            if open_table:
                extra[key] = value
                continue
            raise ConfigError(f"{source}: unknown key {dotted!r}{_nearest(key, fields, where)}")
        kwargs[key] = _convert(hints[key], value, source, dotted)
    if open_table:
        kwargs[open_table] = extra
    try:
        return cls(**kwargs)
    except FieldValueError as exc:
        dotted = f"{where}.{exc.field}" if where else exc.field
        raise ConfigError(f"{source}: {dotted}: {exc.message}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {where or 'config'}: {exc}") from None


def _nearest(key: str, fields: Mapping[str, Any], where: str) -> str:
    match = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
    if match:
        full = f"{where}.{match[0]}" if where else match[0]
        return f"; did you mean {full!r}?"
    return f"; valid keys here: {', '.join(fields)}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any, source: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, source, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: {where}: expected one of {choices}, got {value!r}")
        return value
    if attrs.has(tp):
        return structure(tp, value, source, where)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {where}: expected a table, got {_describe(value)}")
        value_type = args[1] if args else Any
        return {str(k): _convert(value_type, v, source, f"{where}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {where}: expected an array, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: {where}: expected an array of {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, source, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item_type = args[0] if args else Any
        items = [_convert(item_type, v, source, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {where}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{source}: {where}: expected {_TYPE_WORDS[tp]}, got {_describe(value)}")
        return value
    raise ConfigError(f"{source}: {where}: unsupported schema type {tp!r}")  # pragma: no cover


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def unstructure(obj: Any) -> Any:
    """Plain data (dicts, lists, str, int, float, bool) for a config, as stored in checkpoints.

    ``None`` values are left out, since TOML has no null.
    """
    if attrs.has(type(obj)):
        out: dict[str, Any] = {}
        open_table = getattr(type(obj), "__mska_open_table__", None)
        for field in attrs.fields(type(obj)):
            value = getattr(obj, field.name)
            if value is None:
                continue
            if field.name == open_table:
                out.update(unstructure(value))
            else:
                out[field.name] = unstructure(value)
        return out
    if isinstance(obj, Mapping):
        return {str(k): unstructure(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [unstructure(v) for v in obj]
    return obj


def config_from_dict(data: Mapping[str, Any], source: str = "<checkpoint>") -> Config:
    """Rebuild a :class:`Config` from plain data (e.g. the ``config`` stored in a checkpoint)."""
    return structure(Config, dict(data), source)


def dumps_toml(config: Config) -> str:
    """The config as TOML text."""
    import tomli_w

    return tomli_w.dumps(unstructure(config))


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved config as TOML, atomically."""
    from mska_core.io import atomic_write_bytes

    return atomic_write_bytes(Path(path), dumps_toml(config).encode())

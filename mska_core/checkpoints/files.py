"""Files on disk: what a file is (:class:`FileProbe`) and reading torch and safetensors files safely.

:meth:`FileProbe.open` takes a cheap first look at a file, once, shared by every format's ``sniff``:
it reads the first bytes, the zip directory or the safetensors header, and notes what is wrong with
the file (truncated, a zip that is not a torch file ...) without failing, so that a plugin format may
still claim it. The torch object is loaded at most once, on demand, through :func:`safe_torch_load`
(memory-mapped for zip files) with the formats' allow-list.

Everything goes through ``torch.load(..., weights_only=True)``: its unpickler builds tensors and
plain containers and refuses to import anything else. Known formats that need one more type get it
through an explicit allow-list (:data:`ALLOWED_GLOBAL_NAMES`: DINO v1 stores its ``argparse.Namespace``).
When torch refuses a file we scan its pickle (without executing it) to name what it would have
imported, so the message says exactly why. That scan (:func:`imported_globals`) is ours rather than
``torch.serialization.get_unsafe_globals_in_checkpoint`` on measurement (``python -m
bench.kept_libraries``, figures in bench/RESULTS.md): torch's names the same globals in zip files and
is 2.3x faster, but refuses legacy (non-zip) torch files, which ours reads; and ours runs only after
torch has refused a file, so its speed costs nothing on a normal load.

Before torch reads a file, :func:`check_pickle_bounds` bounds what unpickling it may cost: the pickle
is at most :data:`MAX_PICKLE_BYTES` long and :data:`MAX_PICKLE_OPS` instructions, every tensor storage
it declares fits in the bytes the file holds for it, and nothing it calls may allocate more than the
file's size (``bytearray(10**12)``). The check reads the pickle's instructions with
:mod:`pickletools` and follows its stack symbolically; it never executes anything. torch has nothing
that bounds unpickling; this check costs about a tenth of the load it guards (``python -m
bench.unpickle_bounds``).

A safetensors header is checked by :func:`safetensors_header_problem` before the library maps it.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import CheckpointError, UnsafeCheckpointError

# -- safe loading ----------------------------------------------------------------------------------


#: Globals that known checkpoint formats need beyond tensors and plain data, and why.
ALLOWED_GLOBAL_NAMES: dict[str, str] = {
    "argparse.Namespace": "DINO v1 checkpoint.pth stores its command-line arguments as a Namespace",
}

# Imports the weights_only unpickler resolves itself (tensor rebuilding, dtypes, containers).
_TORCH_OWN = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset", "builtins.bytearray")


def allowed_globals() -> list[Any]:
    """The objects of :data:`ALLOWED_GLOBAL_NAMES` (imported here, on use)."""
    import argparse

    return [argparse.Namespace]


#: The longest pickle (``data.pkl``, or the pickles at the start of a legacy file) we unpickle. A
#: checkpoint's pickle describes its tensors (a few hundred bytes each); the tensors live beside it.
MAX_PICKLE_BYTES = 64 * 1024 * 1024
#: The most pickle instructions we scan and unpickle.
MAX_PICKLE_OPS = 20_000_000

#: Bytes per element of the storage types a torch pickle names.
_STORAGE_BYTES = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
    "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "QInt8": 1, "QUInt8": 1, "QInt32": 4,
    "Untyped": 1,
}

# Callables that the weights_only unpickler permits and that allocate as much as an integer argument asks.
_ALLOCATING = ("builtins.bytearray", "builtins.bytes")


class _Global:
    def __init__(self, name: str) -> None:
        self.name = _python3_name(name)


def _python3_name(name: str) -> str:
    """``module.name`` as the unpickler resolves it: protocol-2 pickles name ``builtins`` by its
    Python 2 name ``__builtin__`` (pickle's ``fix_imports``), and torch's unpickler accepts both."""
    module, _, attr = name.partition(".")
    return f"builtins.{attr}" if module == "__builtin__" else name


class _Call:
    def __init__(self, name: str, args: Any) -> None:
        self.name, self.args = name, args


_MARK = object()
_UNKNOWN = object()


def _storage_bytes(pid: Any) -> tuple[str, int] | None:
    """``(key, bytes)`` of a storage persistent id ``('storage', type, key, location, numel, ...)``."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        return None
    kind, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(numel, int) or isinstance(numel, bool):
        return None
    name = kind.name.rsplit(".", 1)[-1] if isinstance(kind, _Global) else ""
    per = _STORAGE_BYTES.get(name.removesuffix("Storage"), 16) if name else 1
    return str(key), numel * per


def _scan(stream: Any, budget: list[int]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Follow one pickle's stack symbolically: the storages it declares and the sizes that allocating
    calls ask for. ``budget`` holds the instructions still allowed (shared across a file's pickles)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    storages: list[tuple[str, int]] = []
    allocations: list[tuple[str, int]] = []

    def pop_mark() -> list[Any]:
        items = []
        while stack:
            item = stack.pop()
            if item is _MARK:
                break
            items.append(item)
        return items[::-1]

    for op, arg, _pos in pickletools.genops(stream):
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooLarge(f"more than {MAX_PICKLE_OPS} pickle instructions")
        name = op.name
        if name == "MARK":
            stack.append(_MARK)
        elif name in ("GLOBAL", "INST"):
            module, attr = str(arg).split(" ", 1)
            stack.append(_Global(f"{module}.{attr}"))
        elif name == "STACK_GLOBAL":
            attr, module = (stack.pop() if stack else ""), (stack.pop() if stack else "")
            stack.append(_Global(f"{module}.{attr}"))
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
            items = pop_mark()
            stack.append(tuple(items) if name == "TUPLE" else _UNKNOWN)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items, stack[-n:] = stack[-n:], []
            stack.append(tuple(items))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            pop_mark()
        elif name in ("APPEND", "POP"):
            if stack:
                stack.pop()
        elif name == "SETITEM":
            del stack[-2:]
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(stack[-1] if stack else _UNKNOWN)
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop() if stack else ()
            func = stack.pop() if stack else None
            called = func.name if isinstance(func, _Global) else "?"
            if called in _ALLOCATING and isinstance(args, tuple) and args and isinstance(args[0], int) \
                    and not isinstance(args[0], bool):
                allocations.append((called, args[0]))
            stack.append(_Call(called, args))
        elif name == "NEWOBJ_EX":
            del stack[-3:]
            stack.append(_UNKNOWN)
        elif name == "BUILD":
            if stack:
                stack.pop()
        elif name in ("BINPERSID", "PERSID"):
            pid = stack.pop() if name == "BINPERSID" and stack else arg
            storage = _storage_bytes(pid)
            if storage is not None:
                storages.append(storage)
            stack.append(_UNKNOWN)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = stack[-1] if stack else _UNKNOWN
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else _UNKNOWN
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg), _UNKNOWN))
        elif name in ("PROTO", "FRAME", "STOP"):
            pass
        elif op.stack_after:  # constants (ints, strings, bytes, None, booleans) and empty containers
            stack.append(arg if arg is not None or name == "NONE" else _UNKNOWN)
    return storages, allocations


class _TooLarge(Exception):
    pass


def check_pickle_bounds(path: str | Path) -> None:
    """Refuse a torch file whose unpickling could take unbounded time or memory; see the module docstring.

    Raises :class:`~mska_core.errors.UnsafeCheckpointError`; reads only the pickle, never executes it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if zipfile.is_zipfile(path):
            _check_zip(path, size)
        else:
            _check_legacy(path, size)
    except _TooLarge as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused before reading: {exc}; nothing from the file was run (a checkpoint's pickle "
            "only describes its tensors — re-save the weights from code you trust)"
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, IndexError, TypeError,
            pickle.UnpicklingError):
        return  # not a pickle we can follow: torch's own reader gives the precise error


class _PlainUnpickler(pickle.Unpickler):
    """Reads containers, strings and numbers; a class or function is refused, never imported."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeCheckpointError(f"its pickle would import {module}.{name}; only plain data is read")


def read_plain_pickle(path: str | Path) -> Any:
    """A pickle of plain data (dicts, lists, strings, numbers), such as the tables the MSKA reference
    keeps beside its models (``gloss2ids.pkl``, ``map_ids.pkl``); nothing in it is run."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            return _PlainUnpickler(stream).load()
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"{path}: refused: {exc}; nothing from the file was run") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a pickle ({exc})") from None


def _check_zip(path: Path, size: int) -> None:
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in infos if name == "data.pkl" or name.endswith("/data.pkl")]
        if not pickles:
            return
        info = infos[pickles[0]]
        if info.file_size > MAX_PICKLE_BYTES:
            raise _TooLarge(f"its pickle is {info.file_size} bytes (at most {MAX_PICKLE_BYTES})")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > 100 * max(info.compress_size, 1):
            raise _TooLarge(f"its pickle is compressed {info.file_size // max(info.compress_size, 1)}-fold")
        prefix = pickles[0][: -len("data.pkl")]
        with archive.open(info) as stream:  # at most MAX_PICKLE_BYTES, checked above
            storages, allocations = _scan(io.BytesIO(stream.read(MAX_PICKLE_BYTES + 1)), [MAX_PICKLE_OPS])
        for key, wanted in storages:
            record = infos.get(f"{prefix}data/{key}")
            held = record.file_size if record is not None else 0
            if wanted > held:
                raise _TooLarge(
                    f"its pickle declares a tensor storage {key!r} of {wanted} bytes, but the file holds {held} "
                    "bytes for it"
                )
        _check_allocations(allocations, size)


def _check_legacy(path: Path, size: int) -> None:
    with open(path, "rb") as handle:
        if handle.read(1) != b"\x80":
            return
        handle.seek(0)
        budget = [MAX_PICKLE_OPS]
        storages: list[tuple[str, int]] = []
        allocations: list[tuple[str, int]] = []
        # magic number, protocol version, system info, the object itself (then storage keys and data)
        for _ in range(4):
            start = handle.tell()
            found, asked = _scan(handle, budget)
            storages += found
            allocations += asked
            if handle.tell() - 0 > MAX_PICKLE_BYTES:
                raise _TooLarge(f"its pickle is more than {MAX_PICKLE_BYTES} bytes")
            if handle.tell() in (start, size):  # a file that ends early is torch's to refuse, after this check
                break
    total = sum(wanted for _, wanted in storages)
    if total > size:
        raise _TooLarge(f"its pickle declares {total} bytes of tensor storage, but the file has {size} bytes")
    _check_allocations(allocations, size)


def _check_allocations(allocations: list[tuple[str, int]], size: int) -> None:
    for called, amount in allocations:
        if amount > max(size, 1 << 20):
            raise _TooLarge(f"its pickle calls {called}({amount}), asking for more memory than the file's size")


def safe_torch_load(path: str | Path, *, allow: Sequence[Any] = (), mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with an optional explicit allow-list of globals.

    ``mmap=True`` maps the tensors' storage instead of reading it (zip files only). A file whose
    pickle would import anything else raises :class:`~mska_core.errors.UnsafeCheckpointError`
    naming it; nothing from the file is executed. Any other failure (truncated, not a torch file)
    raises :class:`~mska_core.errors.CheckpointError` with one line.
    """
    import torch

    path = Path(path)
    check_pickle_bounds(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol-version chatter of the weights_only unpickler
            with torch.serialization.safe_globals(list(allow)):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc, allow) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot be read as a torch file: {_first_line(exc)}") from None


def imported_globals(data: bytes) -> list[str]:
    """``module.name`` of every global a pickle stream imports, found without executing it.

    ``data`` may hold pickles one after another, as a legacy torch file does (magic number, protocol,
    system information, then the object): the first four are read.
    """
    names: list[str] = []
    stream = io.BytesIO(data)
    with contextlib.suppress(Exception):  # a damaged stream: report what was found before it
        for _ in range(4):
            start = stream.tell()
            names += _pickle_globals(stream)
            if stream.tell() in (start, len(data)):
                break
    return names


def _pickle_globals(stream: Any) -> list[str]:
    names: list[str] = []
    strings: list[str | None] = []  # what each push left on top, as far as strings matter
    memo: dict[int, str | None] = {}
    try:
        for op, arg, _pos in pickletools.genops(stream):
            top = strings[-1] if strings else None
            if op.name in ("GLOBAL", "INST"):
                module, name = str(arg).split(" ", 1)
                names.append(_python3_name(f"{module}.{name}"))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2 and None not in strings[-2:]:
                names.append(_python3_name(f"{strings[-2]}.{strings[-1]}"))
            if isinstance(arg, str) and ("UNICODE" in op.name or "STRING" in op.name):
                strings.append(arg)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = top
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = top
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                strings.append(memo.get(int(arg)))
            elif op.stack_after and op.name not in ("MEMOIZE", "FRAME", "PROTO"):
                strings.append(None)
    except Exception:
        if names:  # a damaged stream: report what was found before it
            return names
        raise
    return names


def unsafe_globals(names: Iterable[str], allow: Sequence[Any] = ()) -> list[str]:
    """The names in ``names`` that neither torch's own unpickler nor ``allow`` accepts."""
    allowed = {f"{getattr(o, '__module__', '')}.{getattr(o, '__qualname__', '')}" for o in allow}
    seen: list[str] = []
    for name in names:
        if name.startswith(_TORCH_OWN) or name in allowed or name in seen:
            continue
        seen.append(name)
    return seen


def pickle_bytes(path: Path) -> bytes:
    """The main pickle of a torch file: ``*/data.pkl`` of a zip file, else the file's start."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith("data.pkl"):
                    return archive.read(name)
        return b""
    with open(path, "rb") as handle:
        return handle.read(1 << 20)


def _refusal(path: Path, exc: Exception, allow: Sequence[Any]) -> CheckpointError:
    try:
        bad = unsafe_globals(imported_globals(pickle_bytes(path)), allow)
    except OSError:
        bad = []
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        return UnsafeCheckpointError(
            f"{path}: refused: its pickle would import {shown}, which is not a tensor or plain data; "
            "nothing from the file was run (re-save the weights as a plain state dict or safetensors "
            "from code you trust)"
        )
    return CheckpointError(f"{path}: not a torch file that can be read safely ({_torch_reason(exc)})")


def _torch_reason(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("Unsupported operand", "Trying to", "Unsupported", "Can only", "Unpickler")):
            return line.rstrip(".")
    return lines[-1][:160] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    line = line.replace("[enforce fail at inline_container.cc:", "[").strip()
    return line[:200]


#: The largest safetensors JSON header we parse (the safetensors library's own limit).
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024

#: safetensors dtype names -> (torch dtype name, bytes per element).
SAFETENSORS_DTYPES = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1), "I16": ("int16", 2), "U16": ("uint16", 2), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "I32": ("int32", 4), "U32": ("uint32", 4), "F32": ("float32", 4),
    "I64": ("int64", 8), "U64": ("uint64", 8), "F64": ("float64", 8), "C64": ("complex64", 8),
}


def safetensors_header_problem(header: Any, data_size: int) -> str | None:
    """What is wrong with a parsed safetensors header whose file holds ``data_size`` bytes of tensor
    data, or ``None``: every entry needs a known dtype, a shape of non-negative integers and
    ``data_offsets`` inside the data that match the shape; ``__metadata__`` maps strings to strings."""
    if not isinstance(header, dict):
        return f"its header is a JSON {type(header).__name__}, not an object"
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in entry.items()):
                return "its __metadata__ is not a table of strings"
            continue
        if not isinstance(entry, dict):
            return f"its header entry {name!r} is not an object"
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            return f"tensor {name!r} has an unknown dtype {dtype!r}"
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            return f"tensor {name!r} has a shape that is not a list of non-negative integers"
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name!r} has data_offsets that are not two ascending integers"
        if offsets[1] > data_size:
            return (f"a safetensors file cut short: tensor {name!r} ends at byte {offsets[1]} of the data, the "
                    f"file holds {data_size}")
        count = 1
        for dim in shape:
            count *= dim
        if count * SAFETENSORS_DTYPES[dtype][1] != offsets[1] - offsets[0]:
            return (f"tensor {name!r}: shape {shape} of {dtype} needs {count * SAFETENSORS_DTYPES[dtype][1]} "
                    f"bytes, its data_offsets give {offsets[1] - offsets[0]}")
    return None


# -- a first look at a file ------------------------------------------------------------------------


HEAD_BYTES = 64
_MISSING = object()


@attrs.define
class FileProbe:
    """What a format's ``sniff`` may look at.

    - ``container``: ``"zip"`` (torch's default format), ``"pickle"`` (legacy torch or plain
      pickle), ``"safetensors"`` or ``"unknown"``;
    - ``members``: the names inside a zip file; ``header``: the safetensors JSON header;
    - ``problem``: why the built-in formats cannot read it (``None`` when nothing is wrong);
    - ``select``: which part a multi-part format should read (``"student"`` of a DINO file).
    """

    path: Path
    size: int
    head: bytes
    container: str = "unknown"
    members: tuple[str, ...] = ()
    header: dict[str, Any] | None = None
    problem: str | None = None
    select: str | None = None
    _object: Any = attrs.field(default=_MISSING, repr=False, alias="_object")

    @classmethod
    def open(cls, path: str | Path, *, select: str | None = None) -> FileProbe:
        """Look at ``path``; raise :class:`CheckpointError` only when it is not a readable file."""
        path = Path(path).expanduser()
        if not path.exists():
            raise CheckpointError(f"{path}: no such file")
        if path.is_dir():
            inside = sorted(p.name for p in path.iterdir())[:5]
            raise CheckpointError(
                f"{path}: is a directory; give a checkpoint file" + (f" (it holds {', '.join(inside)})" if inside else "")
            )
        size = path.stat().st_size
        if size == 0:
            raise CheckpointError(f"{path}: is empty (0 bytes); was it written completely?")
        try:
            with open(path, "rb") as handle:
                head = handle.read(HEAD_BYTES)
                probe = cls(path=path, size=size, head=head, select=select)
                probe._classify(handle)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        return probe

    def _classify(self, handle: Any) -> None:
        if self.head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            self.container = "zip"
            try:
                handle.seek(0)
                with zipfile.ZipFile(handle) as archive:
                    self.members = tuple(archive.namelist())
            except (zipfile.BadZipFile, OSError, EOFError):
                self.problem = (
                    f"a zip archive without its central directory ({self.size} bytes): truncated or "
                    "still being written"
                )
                return
            if not any(m == "data.pkl" or m.endswith("/data.pkl") for m in self.members):
                shown = ", ".join(self.members[:4]) + (" ..." if len(self.members) > 4 else "")
                self.problem = f"a zip archive but not a torch checkpoint (no data.pkl; it holds {shown or 'nothing'})"
            return
        if self._classify_safetensors(handle):
            return
        if self.head[:1] == b"\x80":
            self.container = "pickle"

    def _classify_safetensors(self, handle: Any) -> bool:
        if self.size < 10 or self.head[8:9] != b"{":
            return False
        length = int.from_bytes(self.head[:8], "little")
        if length > self.size - 8:
            self.container = "safetensors"
            self.problem = f"a safetensors file cut short: its header alone needs {length} bytes, the file has {self.size}"
            return True
        if length > MAX_SAFETENSORS_HEADER:
            self.container = "safetensors"
            self.problem = f"a safetensors header of {length} bytes (at most {MAX_SAFETENSORS_HEADER} are read)"
            return True
        handle.seek(8)
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False
        if not isinstance(header, dict):
            return False
        self.container, self.header = "safetensors", header
        problem = safetensors_header_problem(header, self.size - 8 - length)
        if problem is not None:
            self.problem = problem if problem.startswith("a safetensors") else f"a damaged safetensors file: {problem}"
        return True

    @property
    def is_torch(self) -> bool:
        """A zip or pickle file that the built-in torch formats may read."""
        return self.container in ("zip", "pickle") and self.problem is None

    def load(self) -> Any:
        """The torch object in the file, loaded once (``weights_only``; mmap for zip files)."""
        if self._object is _MISSING:
            self._object = safe_torch_load(self.path, allow=allowed_globals(), mmap=self.container == "zip")
        return self._object

    def torch_dict(self) -> dict[str, Any] | None:
        """The loaded object when the file is a torch file holding a dict, else ``None``."""
        if not self.is_torch:
            return None
        obj = self.load()
        return obj if isinstance(obj, dict) else None

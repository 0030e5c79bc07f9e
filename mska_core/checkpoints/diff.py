"""Two checkpoints compared tensor by tensor (``mska inspect A --diff B``).

Both files are read through the registered checkpoint formats, so any two formats compare (an
export against a trained model, a reference checkpoint against ours). Torch zip files are
memory-mapped and safetensors files mapped straight from their header's offsets; each pair of
tensors is compared in chunks and its pages are unmapped afterwards (:class:`Releaser`), so a pair
of large files never sits in the process's memory whole (on Linux; elsewhere the kernel pages them
out as it needs).

Keys are compared in A's naming. ``maps`` (``--map A_PREFIX=B_PREFIX``) line up two layouts: B's keys
under ``B_PREFIX`` are renamed to ``A_PREFIX`` + the rest, and only keys under the mapped prefixes
take part. ``prefix`` (``--prefix P``) then keeps the keys (in A's naming) that start with ``P``.

For each key the result is one of ``identical`` (same shape, dtype and every bit), ``changed``
(with the largest absolute difference and that difference relative to the largest magnitude in
either tensor), ``shape`` (another shape: not compared), ``only in A``, ``only in B``.
"""

from __future__ import annotations

import math
import mmap
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.checkpoints.keys import common_prefix
from mska_core.errors import CheckpointError, MskaError

IDENTICAL, CHANGED, SHAPE, ONLY_A, ONLY_B = "identical", "changed", "shape", "only in A", "only in B"
#: Elements compared at a time: bounds the temporaries of one comparison whatever a tensor's size.
CHUNK = 1 << 20
_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4  # Linux: unmap these pages; a file's clean pages are mapped again from the page cache


@attrs.frozen
class TensorDiff:
    """How one key compares."""

    key: str  # in A's naming
    status: str
    shape_a: tuple[int, ...] | None = None
    shape_b: tuple[int, ...] | None = None
    dtype_a: str | None = None
    dtype_b: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    key_b: str | None = None  # B's own name, when --map renamed it

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "key_b": self.key_b or self.key, "status": self.status,
            "shape_a": list(self.shape_a) if self.shape_a is not None else None,
            "shape_b": list(self.shape_b) if self.shape_b is not None else None,
            "dtype_a": self.dtype_a, "dtype_b": self.dtype_b, "max_abs": self.max_abs, "max_rel": self.max_rel,
        }


@attrs.frozen
class DiffReport:
    """Every key of a comparison, and a summary per module prefix."""

    a: str
    b: str
    format_a: str
    format_b: str
    maps: tuple[tuple[str, str], ...] = ()
    prefix: str | None = None
    tensors: tuple[TensorDiff, ...] = ()
    depth: int = 3

    def count(self, status: str) -> int:
        return sum(1 for t in self.tensors if t.status == status)

    @property
    def identical(self) -> bool:
        """Every key on both sides, every tensor equal."""
        return all(t.status == IDENTICAL for t in self.tensors)

    def __getitem__(self, key: str) -> TensorDiff:
        for entry in self.tensors:
            if entry.key == key:
                return entry
        raise KeyError(key)

    def totals(self) -> dict[str, Any]:
        changed = [t for t in self.tensors if t.status == CHANGED]
        return {
            "keys": len(self.tensors), "shared": self.count(IDENTICAL) + self.count(CHANGED),
            "identical": self.count(IDENTICAL), "changed": self.count(CHANGED), "shape": self.count(SHAPE),
            "only_a": self.count(ONLY_A), "only_b": self.count(ONLY_B),
            "max_abs": max((t.max_abs for t in changed), default=0.0),
            "max_rel": max((t.max_rel for t in changed), default=0.0),
        }

    def groups(self) -> list[dict[str, Any]]:
        """The same counts per module prefix: ``depth`` key components after the keys' common prefix."""
        shared = common_prefix([t.key for t in self.tensors])
        rows: dict[str, dict[str, Any]] = {}
        for t in self.tensors:
            rest = t.key[len(shared):].split(".")[:-1][: self.depth]
            name = shared + ".".join(rest) if rest else (shared.rstrip(".") or "(top level)")
            row = rows.setdefault(name, {"prefix": name, "tensors": 0, IDENTICAL: 0, CHANGED: 0, SHAPE: 0,
                                         ONLY_A: 0, ONLY_B: 0, "max_abs": 0.0, "max_rel": 0.0})
            row["tensors"] += 1
            row[t.status] += 1
            if t.status == CHANGED:
                row["max_abs"] = max(row["max_abs"], t.max_abs or 0.0)
                row["max_rel"] = max(row["max_rel"], t.max_rel or 0.0)
        return [
            {"prefix": r["prefix"], "tensors": r["tensors"], "identical": r[IDENTICAL], "changed": r[CHANGED],
             "shape": r[SHAPE], "only_a": r[ONLY_A], "only_b": r[ONLY_B], "max_abs": r["max_abs"],
             "max_rel": r["max_rel"]}
            for r in rows.values()
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "format_a": self.format_a, "format_b": self.format_b,
            "map": [{"a": a, "b": b} for a, b in self.maps], "prefix": self.prefix,
            "totals": self.totals(), "groups": self.groups(), "tensors": [t.as_dict() for t in self.tensors],
        }


def parse_map(text: str) -> tuple[str, str]:
    """``"A_PREFIX=B_PREFIX"`` as a pair; either side may be empty (the whole key space), not both."""
    if text.count("=") != 1:
        raise MskaError(f"--map {text!r}: expected A_PREFIX=B_PREFIX (one '='), e.g. "
                        "--map blocks.=encoder.branches.face.crop.backbone.blocks.")
    a, b = text.split("=")
    if not a and not b:
        raise MskaError("--map '=': give at least one prefix, e.g. --map =encoder.branches.face.crop.backbone.")
    return a, b


def diff_checkpoints(a: str | Path, b: str | Path, *, prefix: str | None = None,
                     maps: Sequence[tuple[str, str]] = (), select: str | None = None, depth: int = 3,
                     registry: Any = None) -> DiffReport:
    """Compare the checkpoints at ``a`` and ``b`` tensor by tensor; see the module docstring."""
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    format_a, tensors_a = _open(a, select, registry)
    format_b, tensors_b = _open(b, select, registry)
    release = Releaser([a, b])
    keys_a = {k: k for k in tensors_a if _under(k, [m[0] for m in maps])}
    keys_b = {}  # A-space name -> B's own key
    for key in tensors_b:
        renamed = _rename(key, maps)
        if renamed is not None:
            keys_b[renamed] = key
    if prefix:
        keys_a = {k: v for k, v in keys_a.items() if k.startswith(prefix)}
        keys_b = {k: v for k, v in keys_b.items() if k.startswith(prefix)}
    entries = []
    for key in [*keys_a, *(k for k in keys_b if k not in keys_a)]:
        in_b = keys_b.get(key)
        if key not in keys_a:
            entries.append(_one_side(ONLY_B, key, tensors_b[in_b], b_key=in_b))
        elif in_b is None:
            entries.append(_one_side(ONLY_A, key, tensors_a[key]))
        else:
            entries.append(compare_tensors(key, tensors_a[key], tensors_b[in_b],
                                           key_b=in_b if in_b != key else None, release=release))
    return DiffReport(str(a), str(b), format_a, format_b, tuple(maps), prefix, tuple(entries), depth)


def compare_tensors(key: str, x: Any, y: Any, *, key_b: str | None = None,
                    release: Callable[[Any], None] | None = None) -> TensorDiff:
    """One key: shapes, then every element in chunks; ``release`` is called on both tensors after."""
    import torch

    shape_a, shape_b = tuple(x.shape), tuple(y.shape)
    dtype_a, dtype_b = _dtype(x), _dtype(y)
    base = {"key": key, "shape_a": shape_a, "shape_b": shape_b, "dtype_a": dtype_a, "dtype_b": dtype_b,
            "key_b": key_b}
    if shape_a != shape_b:
        return TensorDiff(status=SHAPE, **base)
    same = dtype_a == dtype_b
    wide = not same or x.dtype == torch.float64 or not x.is_floating_point()
    work = torch.float64 if wide else torch.float32
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    max_abs = scale = 0.0
    equal = same
    skipped = []  # equal chunks before the first difference: their magnitude matters only if one follows
    try:
        for start in range(0, flat_x.numel(), CHUNK):
            cx, cy = flat_x[start:start + CHUNK], flat_y[start:start + CHUNK]
            if equal and torch.equal(cx, cy):
                skipped.append(start)
                continue
            equal = False
            fx, fy = cx.to(work), cy.to(work)
            max_abs = max(max_abs, float(torch.sub(fx, fy).abs_().max()))
            scale = max(scale, _magnitude(fx), _magnitude(fy))
        if not equal:
            for start in skipped:
                scale = max(scale, _magnitude(flat_x[start:start + CHUNK].to(work)))
    finally:
        if release is not None:
            release(x)
            release(y)
    if equal:
        return TensorDiff(status=IDENTICAL, max_abs=0.0, max_rel=0.0, **base)
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return TensorDiff(status=CHANGED, max_abs=max_abs, max_rel=max_rel, **base)


def _magnitude(values: Any) -> float:
    """The largest absolute value, without a copy."""
    import torch

    low, high = torch.aminmax(values)
    return max(-float(low), float(high))


class Releaser:
    """Hands the pages of a compared tensor back to the kernel when they map one of ``files``.

    On Linux the file-backed mappings of ``files`` are read from ``/proc/self/maps``; a tensor whose
    storage lies in one is unmapped with ``MADV_DONTNEED`` after its comparison, which drops it
    from the process's memory but not from the page cache (a later read maps it again from there).
    Tensors in ordinary memory (what a format's conversion produced) are left to Python. Elsewhere
    this does nothing and the kernel pages the files out as it needs.
    """

    def __init__(self, files: Sequence[str | Path]) -> None:
        self.ranges: list[tuple[int, int]] = []
        if not sys.platform.startswith("linux"):
            return
        names = {str(Path(f).expanduser().resolve()) for f in files}
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    fields = line.split(None, 5)
                    if len(fields) == 6 and fields[5].strip() in names:
                        low, high = (int(x, 16) for x in fields[0].split("-"))
                        self.ranges.append((low, high))
        except OSError:
            self.ranges = []

    def __call__(self, tensor: Any) -> None:
        if not self.ranges:
            return
        try:
            storage = tensor.untyped_storage()
            pointer, size = storage.data_ptr(), storage.nbytes()
        except (AttributeError, RuntimeError):
            return
        for low, high in self.ranges:
            if low <= pointer and pointer + size <= high:
                start = max(low, pointer - pointer % _PAGE)
                end = min(high, -(-(pointer + size) // _PAGE) * _PAGE)
                _madvise(start, end - start)
                return


def _madvise(start: int, length: int) -> None:
    global _LIBC
    import ctypes

    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
            _LIBC.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC and length > 0:
        _LIBC.madvise(start, length, _MADV_DONTNEED)


_LIBC: Any = None


# -- reading ----------------------------------------------------------------------------------------


def _open(path: str | Path, select: str | None, registry: Any) -> tuple[str, Mapping[str, Any]]:
    """``(format name, tensors by key)`` of ``path``, read lazily where the format allows."""
    from mska_core.checkpoints.loading import detect_format
    from mska_core.checkpoints.probe import FileProbe

    probe = FileProbe.open(path, select=select)
    fmt = detect_format(probe, registry=registry)
    if fmt.name == "safetensors" and probe.header is not None and fmt.read.__module__.startswith("mska_core."):
        return fmt.name, _SafetensorsMap(probe)
    checkpoint = fmt.read(probe)
    return fmt.name, checkpoint.state_dict


#: safetensors dtype names -> torch dtype names.
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


class _SafetensorsMap(Mapping):
    """A safetensors file's tensors as a mapping; each tensor a view into one read-only mmap."""

    def __init__(self, probe: Any) -> None:
        from mska_core.checkpoints.keys import WRAPPER_COMPONENTS

        self._path = probe.path
        self._start = 8 + int.from_bytes(probe.head[:8], "little")
        self._info: dict[str, dict[str, Any]] = {}
        for key, info in probe.header.items():
            if key == "__metadata__" or not isinstance(info, Mapping):
                continue
            name = ".".join(p for p in key.split(".") if p not in WRAPPER_COMPONENTS)
            self._info[name] = dict(info)
        self._map: mmap.mmap | None = None

    def __getitem__(self, key: str) -> Any:
        import torch

        info = self._info[key]
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(
                f"{self._path}: tensor {key!r} has dtype {info['dtype']}, which this comparison cannot read")
        if self._map is None:
            with open(self._path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        begin, end = (int(v) for v in info["data_offsets"])
        torch_dtype = getattr(torch, dtype)
        count = (end - begin) // torch_dtype.itemsize
        if count == 0:
            return torch.empty(info["shape"], dtype=torch_dtype)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that the buffer is read-only; it is never written
            flat = torch.frombuffer(self._map, dtype=torch_dtype, count=count, offset=self._start + begin)
        return flat.reshape(info["shape"])

    def __iter__(self) -> Iterator[str]:
        return iter(self._info)

    def __len__(self) -> int:
        return len(self._info)


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return not prefixes or any(key.startswith(p) for p in prefixes)


def _rename(key: str, maps: Sequence[tuple[str, str]]) -> str | None:
    """B's ``key`` in A's naming, or ``None`` when maps are given and none covers it."""
    if not maps:
        return key
    for a_prefix, b_prefix in sorted(maps, key=lambda m: -len(m[1])):
        if key.startswith(b_prefix):
            return a_prefix + key[len(b_prefix):]
    return None


def _one_side(status: str, key: str, tensor: Any, *, b_key: str | None = None) -> TensorDiff:
    shape, dtype = tuple(tensor.shape), _dtype(tensor)
    if status == ONLY_A:
        return TensorDiff(key, status, shape_a=shape, dtype_a=dtype)
    return TensorDiff(key, status, shape_b=shape, dtype_b=dtype, key_b=b_key if b_key != key else None)


def _dtype(tensor: Any) -> str:
    return str(tensor.dtype).replace("torch.", "")

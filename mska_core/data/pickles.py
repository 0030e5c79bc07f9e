"""MSKA / TwoStream keypoint pickles, read without running pickled code.

The reference (sutwangyan/MSKA) keeps one plain ``pickle.dump`` per split:
``{name: {"name", "gloss", "text", "num_frames", "keypoint"}}`` where ``keypoint`` is a float tensor
``[T, 133, 3]`` in pixels (x, y, confidence). A real ``pickle.dump`` of such a dict names exactly these
globals: ``torch._utils._rebuild_tensor_v2`` (a tensor), ``torch.storage._load_from_bytes`` (its
storage, as the bytes of a ``torch.save``), ``collections.OrderedDict`` (the tensor's empty hook table)
and, at protocol 2, ``_codecs.encode`` (how bytes are written). Files written with numpy arrays name
``numpy.ndarray``, ``numpy.dtype`` and numpy's ``_reconstruct``, ``scalar`` and (protocol 5)
``_frombuffer``.

:class:`RestrictedUnpickler` admits those and nothing else. The tensor storage is read back with
``torch.load(..., weights_only=True)`` instead of torch's own ``_load_from_bytes`` (which would unpickle
anything), so a file whose pickle would import or call anything else is refused with a
:class:`~mska_core.errors.UnsafeCheckpointError` before any of it runs.

Coordinates are normalised as the reference does: x / width, y flipped (height - y) / height, both mapped
to [-1, 1]; the confidence is kept.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mska_core.data.contract import normalize_pixels
from mska_core.data.samples import Sample
from mska_core.errors import DataError, UnsafeCheckpointError

__all__ = ["RestrictedUnpickler", "load_split", "normalize_pixels", "read_pickle"]  # normalize_pixels: data.contract


def _load_storage_bytes(data: bytes) -> Any:
    """A tensor storage pickled inside a plain pickle: read with ``weights_only=True``."""
    import torch

    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(
            f"a tensor storage in the pickle holds more than tensor data ({first}); refusing to load it"
        ) from None


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, requires_grad: bool = False,
                    backward_hooks: Any = None, metadata: Any = None) -> Any:
    """``torch._utils._rebuild_tensor_v2`` without hooks or extra metadata."""
    import torch

    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise UnsafeCheckpointError(f"a tensor in the pickle is built from {type(storage).__name__}, not a storage")
    tensor = torch._utils._rebuild_tensor(storage, storage_offset, size, stride)
    return tensor.requires_grad_(False)


def _codecs_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode(encoding)


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any] | type]:
    import collections

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("_codecs", "encode"): _codecs_encode,
    }
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is a dependency
        return allowed
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric
    allowed[("numpy", "ndarray")] = numpy.ndarray
    allowed[("numpy", "dtype")] = numpy.dtype
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):  # arrays at protocol 5
        allowed[(module, "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a keypoint pickle holds (see the module docs)."""

    def __init__(self, file: Any, *, source: str = "<pickle>") -> None:
        super().__init__(file)
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.source}: the pickle asks for {module}.{name}, which a keypoint pickle never holds; "
                "refusing to load it (nothing was run). Re-export the split as plain tensors or numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"{self.source}: a persistent reference in a plain pickle; is this a torch.save file? "
            "keypoint pickles are written with pickle.dump"
        )


def read_pickle(path: str | Path) -> Any:
    """The object in the pickle at ``path``, through :class:`RestrictedUnpickler`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"keypoint pickle {str(path)!r} not found")
    with path.open("rb") as handle:
        try:
            return RestrictedUnpickler(handle, source=str(path)).load()
        except UnsafeCheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, RuntimeError) as exc:
            raise DataError(f"{path}: not a readable keypoint pickle: {exc}") from None


def load_split(path: str | Path, *, width: int, height: int, num_joints: int = 133) -> list[Sample]:
    """The samples of one MSKA split pickle, normalised."""
    import torch

    data = read_pickle(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict of clips (name -> entry), got {type(data).__name__}")
    samples = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "keypoint" not in entry or "gloss" not in entry:
            raise DataError(f"{path}: entry {key!r} lacks 'keypoint' or 'gloss' (expected name, gloss, text, "
                            "num_frames, keypoint)")
        keypoints = torch.as_tensor(entry["keypoint"]).float()
        if keypoints.ndim != 3 or keypoints.shape[1] != num_joints or keypoints.shape[2] < 3:
            raise DataError(f"{path}: entry {key!r}: keypoint has shape {tuple(keypoints.shape)}, expected "
                            f"[T, {num_joints}, 3]")
        samples.append(
            Sample(
                name=_text(entry.get("name", key)),
                keypoints=normalize_pixels(keypoints[..., :3], width, height),
                gloss=_text(entry["gloss"]),
                text=_text(entry.get("text") or ""),
                path=str(path),
            )
        )
    return samples


def _text(value: Any) -> str:
    """A pickled string; bytes are decoded as UTF-8, keeping bad bytes for validation to report."""
    from mska_core.data.validate import decode_text

    return decode_text(value) if isinstance(value, bytes) else str(value)

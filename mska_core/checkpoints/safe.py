"""Loading torch files without running pickled code.

Everything goes through ``torch.load(..., weights_only=True)``: its unpickler builds tensors and
plain containers and refuses to import anything else. Known formats that need one more type get it
through an explicit allow-list (:data:`ALLOWED_GLOBALS`: DINO v1 stores its ``argparse.Namespace``).
When torch refuses a file we scan its pickle (without executing it) to name what it would have
imported, so the message says exactly why.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mska_core.errors import CheckpointError, UnsafeCheckpointError

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


def safe_torch_load(path: str | Path, *, allow: Sequence[Any] = (), mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with an optional explicit allow-list of globals.

    ``mmap=True`` maps the tensors' storage instead of reading it (zip files only). A file whose
    pickle would import anything else raises :class:`~mska_core.errors.UnsafeCheckpointError`
    naming it; nothing from the file is executed. Any other failure (truncated, not a torch file)
    raises :class:`~mska_core.errors.CheckpointError` with one line.
    """
    import torch

    path = Path(path)
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
    """``module.name`` of every global a pickle stream imports, found without executing it."""
    names: list[str] = []
    strings: list[str | None] = []  # what each push left on top, as far as strings matter
    memo: dict[int, str | None] = {}
    with contextlib.suppress(Exception):  # a damaged stream: report what was found before it
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            top = strings[-1] if strings else None
            if op.name in ("GLOBAL", "INST"):
                module, name = str(arg).split(" ", 1)
                names.append(f"{module}.{name}")
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2 and None not in strings[-2:]:
                names.append(f"{strings[-2]}.{strings[-1]}")
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

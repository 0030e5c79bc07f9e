"""A cheap description of a checkpoint file: format, metadata, provenance, tensors, a prefix tree.

Reads lazily: safetensors from the JSON header alone (torch is not even imported), torch zip
files memory-mapped with ``weights_only=True`` (tensor data is never read). ``mska inspect`` prints
this; other commands can reuse it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mska_core.checkpoints.probe import FileProbe

#: Metadata fields shown first, in this order.
METADATA_FIELDS = (
    "kind", "stream", "arch", "arch_config", "min_loss", "epoch", "global_step", "created", "mska_core_version",
)
_SAFETENSORS_DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
    "BOOL": ("bool", 1), "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
}


def describe(path: str | Path, *, registry: Any = None, select: str | None = None) -> dict[str, Any]:
    """Describe the checkpoint at ``path`` as plain data (what ``mska inspect --json`` prints).

    Keys: ``path``, ``size``, ``format``, ``container``, ``metadata``, ``provenance`` (plugins
    and versions recorded beside those installed now), ``tensors`` (key, shape, dtype, bytes),
    ``tree`` (module prefixes with parameter counts, dtypes and bytes) and ``totals``.
    """
    from mska_core.checkpoints.loading import detect_format

    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    probe = FileProbe.open(path, select=select)
    fmt = detect_format(probe, registry=registry)
    if fmt.name == "safetensors" and probe.header is not None:
        from mska_core.checkpoints.formats import decode_metadata

        metadata = decode_metadata(probe.header.get("__metadata__"))
        tensors = _safetensors_tensors(probe.header)
    else:
        checkpoint = fmt.read(probe)
        metadata = dict(checkpoint.metadata)
        tensors = [_tensor_row(k, v) for k, v in checkpoint.state_dict.items()]
    return {
        "path": str(probe.path),
        "size": probe.size,
        "format": fmt.name,
        "format_provider": str(fmt.provider) if fmt.provider else None,
        "container": probe.container,
        "metadata": _ordered({k: _summarise(v) for k, v in metadata.items()}),
        "provenance": provenance(metadata, registry),
        "tensors": tensors,
        "tree": prefix_tree(tensors),
        "totals": {
            "tensors": len(tensors),
            "parameters": sum(t["numel"] for t in tensors),
            "bytes": sum(t["bytes"] for t in tensors),
            "dtypes": sorted({t["dtype"] for t in tensors}),
        },
    }


def provenance(metadata: Mapping[str, Any], registry: Any) -> list[dict[str, Any]]:
    """The recorded mska-core and plugin versions beside the installed ones, each with a status."""
    from mska_core import __version__

    installed = dict(registry.host.versions())
    rows = []
    recorded_core = metadata.get("mska_core_version")
    if recorded_core is not None:
        rows.append(_row("mska-core", recorded_core, __version__))
    recorded = metadata.get("plugins") or {}
    if isinstance(recorded, Mapping):
        for name, version in recorded.items():
            rows.append(_row(str(name), str(version), installed.get(str(name))))
    return rows


def _row(name: str, recorded: str, installed: str | None) -> dict[str, Any]:
    status = "missing" if installed is None else "same" if installed == recorded else "different"
    return {"name": name, "recorded": recorded, "installed": installed, "status": status}


def prefix_tree(tensors: list[dict[str, Any]], depth: int = 2) -> list[dict[str, Any]]:
    """Module prefixes up to ``depth`` components, each with parameters, bytes, dtypes and children."""
    root: dict[str, Any] = {"children": {}}
    for tensor in tensors:
        parts = tensor["key"].split(".")[:-1][:depth]
        node = root
        for part in parts:
            node = node["children"].setdefault(part, {"children": {}, "numel": 0, "bytes": 0, "dtypes": set(), "tensors": 0})
            node["numel"] += tensor["numel"]
            node["bytes"] += tensor["bytes"]
            node["dtypes"].add(tensor["dtype"])
            node["tensors"] += 1
    if tensors and any("." not in t["key"] for t in tensors):
        top = [t for t in tensors if "." not in t["key"]]
        root["children"]["(top level)"] = {
            "children": {}, "numel": sum(t["numel"] for t in top), "bytes": sum(t["bytes"] for t in top),
            "dtypes": {t["dtype"] for t in top}, "tensors": len(top),
        }

    def plain(name: str, node: dict[str, Any]) -> dict[str, Any]:
        return {
            "prefix": name, "tensors": node["tensors"], "parameters": node["numel"], "bytes": node["bytes"],
            "dtypes": sorted(node["dtypes"]),
            "children": [plain(f"{name}.{k}", v) for k, v in node["children"].items()],
        }

    return [plain(k, v) for k, v in root["children"].items()]


def _tensor_row(key: str, value: Any) -> dict[str, Any]:
    shape = list(getattr(value, "shape", ()))
    numel = math.prod(shape) if shape else (1 if hasattr(value, "shape") else 0)
    dtype = str(getattr(value, "dtype", type(value).__name__)).replace("torch.", "")
    itemsize = getattr(value, "itemsize", None) or getattr(getattr(value, "dtype", None), "itemsize", 0) or 0
    return {"key": key, "shape": shape, "dtype": dtype, "numel": numel, "bytes": numel * itemsize}


def _safetensors_tensors(header: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, Mapping):
            continue
        shape = list(info.get("shape", []))
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"), (str(info.get("dtype")).lower(), 0))[0]
        start, end = info.get("data_offsets", (0, 0))
        rows.append({"key": key, "shape": shape, "dtype": dtype, "numel": math.prod(shape), "bytes": int(end) - int(start)})
    return rows


def _ordered(metadata: Mapping[str, Any]) -> dict[str, Any]:
    first = {k: metadata[k] for k in METADATA_FIELDS if k in metadata}
    rest = {k: v for k, v in metadata.items() if k not in first}
    return {**first, **rest}


def _summarise(value: Any, depth: int = 0) -> Any:
    """Metadata as JSON-able data: tensors become a short description, long lists are cut."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"tensor {list(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, Mapping):
        if depth > 6:
            return f"{{{len(value)} entries}}"
        return {str(k): _summarise(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_summarise(v, depth + 1) for v in value[:20]]
        return items + ([f"... {len(value) - 20} more"] if len(value) > 20 else [])
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)

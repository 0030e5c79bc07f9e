"""The built-in checkpoint formats: how each is recognised (``sniff``), read and written.

Each ``sniff_*`` takes a :class:`~mska_core.checkpoints.files.FileProbe` and must be exclusive of
the others: one file, one format. Every ``read_*`` returns a
:class:`~mska_core.checkpoints.schema.Checkpoint` whose state dict has ``module.`` and
``_orig_mod.`` removed from its keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mska_core.checkpoints.files import FileProbe
from mska_core.checkpoints.schema import (
    FORMAT,
    Checkpoint,
    check_plain,
    is_state_dict,
    is_tensor,
    strip_wrappers,
)
from mska_core.errors import CheckpointError
from mska_core.io import atomic_write_bytes, atomic_write_with

LIGHTNING_VERSION_KEYS = ("pytorch-lightning_version", "lightning_version")
DINO_PARTS = ("teacher", "student")
#: Top-level keys under which plain ``{"model": state_dict, ...}`` files keep their weights.
STATE_DICT_WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net", "network", "weights")


def _plain(value: Any) -> Any:
    """``value`` with anything that is not plain data turned into its ``repr``."""
    try:
        check_plain(value)
        return value
    except CheckpointError:
        if isinstance(value, Mapping):
            return {str(k): _plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_plain(v) for v in value]
        if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":
            return _plain(vars(value))
        return repr(value)


# -- mska (our payload) ---------------------------------------------------------------------------


def sniff_mska(probe: FileProbe) -> bool:
    obj = probe.torch_dict()
    return obj is not None and obj.get("format") == FORMAT and "state_dict" in obj


def read_mska(probe: FileProbe) -> Checkpoint:
    obj = probe.load()
    state_dict = obj["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{probe.path}: 'state_dict' is a {type(state_dict).__name__}, expected a mapping")
    metadata = {k: v for k, v in obj.items() if k != "state_dict"}
    return Checkpoint("mska", metadata, strip_wrappers(state_dict), probe.path)


def write_mska(checkpoint: Checkpoint | Mapping[str, Any], path: str | Path) -> Path:
    """Write our payload with ``torch.save`` atomically (temporary file, fsync, ``os.replace``)."""
    import torch

    payload = _as_payload(checkpoint)
    check_plain(payload)
    return atomic_write_with(path, lambda handle: torch.save(payload, handle))


def _as_payload(checkpoint: Checkpoint | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(checkpoint, Checkpoint):
        return {**checkpoint.metadata, "state_dict": checkpoint.state_dict}
    return dict(checkpoint)


# -- safetensors ----------------------------------------------------------------------------------


def sniff_safetensors(probe: FileProbe) -> bool:
    return probe.container == "safetensors" and probe.problem is None


def decode_metadata(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """safetensors ``__metadata__`` (strings) to values: JSON where it parses, else the string."""
    out: dict[str, Any] = {}
    for key, text in (raw or {}).items():
        try:
            out[key] = json.loads(text)
        except (TypeError, ValueError):
            out[key] = text
    return out


def read_safetensors(probe: FileProbe) -> Checkpoint:
    from safetensors.torch import load_file

    try:
        state_dict = load_file(str(probe.path))
    except Exception as exc:  # noqa: BLE001 - the library's own error types vary by version
        raise CheckpointError(f"{probe.path}: cannot read safetensors: {str(exc).splitlines()[0]}") from None
    metadata = decode_metadata((probe.header or {}).get("__metadata__"))
    held = {k: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(HELD_PREFIX)]}
    metadata = {key: _restore_tensors(value, held) for key, value in metadata.items()}
    return Checkpoint("safetensors", metadata, strip_wrappers(state_dict), probe.path)


#: Tensors a payload holds outside its state dict (an optimizer's moments, RNG states) are stored
#: beside the weights under ``__payload__.N``; the metadata holds ``{"__tensor__": "__payload__.N"}``
#: in their place, so a training state round-trips through safetensors.
HELD_PREFIX = "__payload__."


def _hold_tensors(value: Any, held: dict[str, Any]) -> Any:
    if is_tensor(value):
        name = f"{HELD_PREFIX}{len(held)}"
        held[name] = value
        return {"__tensor__": name}
    if isinstance(value, Mapping):
        if any(isinstance(k, int) for k in value):  # JSON keys are strings: keep an optimizer's int keys
            return {"__items__": [[k, _hold_tensors(v, held)] for k, v in value.items()]}
        return {str(k): _hold_tensors(v, held) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hold_tensors(v, held) for v in value]
    return value


def _restore_tensors(value: Any, held: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"__tensor__"} and value["__tensor__"] in held:
            return held[value["__tensor__"]]
        if set(value) == {"__items__"} and isinstance(value["__items__"], list):
            return {k: _restore_tensors(v, held) for k, v in value["__items__"]}
        return {k: _restore_tensors(v, held) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_tensors(v, held) for v in value]
    return value


def write_safetensors(checkpoint: Checkpoint | Mapping[str, Any], path: str | Path) -> Path:
    """Write the tensors with safetensors; every other payload key goes to ``__metadata__`` as JSON
    (tensors held outside the state dict are stored beside it, see :data:`HELD_PREFIX`; a mapping with
    integer keys, such as an optimizer's ``state``, as ``{"__items__": [[key, value], ...]}``), so a
    training state reads back equal.
    """
    from safetensors.torch import save

    payload = _as_payload(checkpoint)
    check_plain(payload)
    state_dict = payload.pop("state_dict", {})
    metadata: dict[str, str] = {}
    held: dict[str, Any] = {}
    for key, value in payload.items():
        metadata[str(key)] = json.dumps(_hold_tensors(value, held))
    tensors, seen = {}, set()
    for key, tensor in {**state_dict, **held}.items():
        tensor = tensor.detach().cpu().contiguous()
        pointer = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if pointer in seen:  # safetensors refuses shared storage: give tied weights their own copy
            tensor = tensor.clone()
        seen.add((tensor.untyped_storage().data_ptr(), tensor.storage_offset()))
        tensors[key] = tensor
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


# -- lightning ------------------------------------------------------------------------------------


def sniff_lightning(probe: FileProbe) -> bool:
    obj = probe.torch_dict()
    return (
        obj is not None
        and obj.get("format") != FORMAT
        and any(k in obj for k in LIGHTNING_VERSION_KEYS)
        and isinstance(obj.get("state_dict"), Mapping)
    )


def read_lightning(probe: FileProbe) -> Checkpoint:
    obj = probe.load()
    metadata = {
        "lightning_version": next((obj[k] for k in LIGHTNING_VERSION_KEYS if k in obj), None),
        "epoch": obj.get("epoch"),
        "global_step": obj.get("global_step"),
        "hyper_parameters": _plain(obj.get("hyper_parameters")),
    }
    return Checkpoint("lightning", metadata, strip_wrappers(obj["state_dict"]), probe.path)


# -- dino (DINO v1 checkpoint.pth) ----------------------------------------------------------------


def sniff_dino(probe: FileProbe) -> bool:
    obj = probe.torch_dict()
    return (
        obj is not None
        and "format" not in obj
        and not any(k in obj for k in LIGHTNING_VERSION_KEYS)
        and any(is_state_dict(obj.get(part)) for part in DINO_PARTS)
    )


def read_dino(probe: FileProbe) -> Checkpoint:
    obj = probe.load()
    parts = [p for p in DINO_PARTS if is_state_dict(obj.get(p))]
    part = probe.select or parts[0]
    if part not in parts:
        raise CheckpointError(f"{probe.path}: a DINO checkpoint without {part!r}; it holds {', '.join(parts)}")
    args = obj.get("args")
    metadata = {
        "source": part,
        "parts": parts,
        "epoch": obj.get("epoch"),
        "args": _plain(vars(args)) if hasattr(args, "__dict__") else _plain(args),
        "other_keys": sorted(k for k in obj if k not in (*DINO_PARTS, "args", "epoch")),
    }
    if isinstance(metadata["args"], Mapping) and metadata["args"].get("arch"):
        metadata["dino_arch"] = metadata["args"]["arch"]
    return Checkpoint("dino", metadata, strip_wrappers(obj[part]), probe.path)


# -- mska-paper (sutwangyan/MSKA checkpoints) -----------------------------------------------------


def _reference_model(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if obj is None or "format" in obj or not is_state_dict(obj.get("model")):
        return None
    try:
        from mska_core.checkpoints.paper import is_reference_state_dict
    except ImportError:
        return None
    keys = list(strip_wrappers(obj["model"]))
    return obj["model"] if is_reference_state_dict(keys) else None


def sniff_mska_paper(probe: FileProbe) -> bool:
    return _reference_model(probe.torch_dict()) is not None


def read_mska_paper(probe: FileProbe) -> Checkpoint:
    from mska_core.checkpoints.paper import convert_reference_state_dict

    obj = probe.load()
    state_dict = convert_reference_state_dict(strip_wrappers(obj["model"]))
    metadata = {
        "kind": "model",
        "source": "sutwangyan/MSKA reference checkpoint, keys converted to mska-core's",
        "epoch": obj.get("epoch"),
        "other_keys": sorted(k for k in obj if k != "model"),
    }
    return Checkpoint("mska-paper", metadata, dict(state_dict), probe.path)


# -- state_dict (a bare state dict, or one under a single wrapper key) ----------------------------


def _state_dict_wrapper(obj: Mapping[str, Any]) -> str | None:
    """``""`` for a bare state dict, the wrapper key for ``{"model": sd, ...}``, else ``None``."""
    if is_state_dict(obj):
        return ""
    if "format" in obj or any(k in obj for k in LIGHTNING_VERSION_KEYS):
        return None
    if any(is_state_dict(obj.get(p)) for p in DINO_PARTS):
        return None
    wrapped = [k for k in STATE_DICT_WRAPPERS if is_state_dict(obj.get(k))]
    return wrapped[0] if len(wrapped) == 1 else None


def sniff_state_dict(probe: FileProbe) -> bool:
    obj = probe.torch_dict()
    if obj is None or _state_dict_wrapper(obj) is None:
        return False
    return _reference_model(obj) is None


def read_state_dict(probe: FileProbe) -> Checkpoint:
    obj = probe.load()
    wrapper = _state_dict_wrapper(obj)
    state_dict = obj if wrapper == "" else obj[wrapper]
    metadata: dict[str, Any] = {"wrapper": wrapper or None}
    if wrapper:
        scalars = (str, int, float, bool, type(None))
        metadata.update({k: v for k, v in obj.items() if k != wrapper and isinstance(v, scalars)})
        metadata["other_keys"] = sorted(k for k, v in obj.items() if k != wrapper and not isinstance(v, scalars))
    return Checkpoint("state_dict", metadata, strip_wrappers(state_dict), probe.path)

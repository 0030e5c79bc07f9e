"""A cheap description of a checkpoint file: format, metadata, provenance, tensors, a prefix tree.

Reads lazily: safetensors from the JSON header alone (torch is not even imported), torch zip
files memory-mapped with ``weights_only=True`` (tensor data is never read). ``mska inspect`` prints
this; other commands can reuse it.

Parameters and buffers are counted apart. A state dict does not say which is which, so a tensor
counts as a buffer when its name ends in a normalisation layer's running statistics
(:data:`BUFFER_LEAVES`) or when it is not floating point (a parameter always is); everything else is
a parameter. The payload's own claims (a ViT's ``arch_config``, the stored vocabularies) are
checked against the tensors' shapes (:func:`check_claims`).
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
#: Last key components of buffers: batch-norm (and instance-norm) running statistics.
BUFFER_LEAVES = ("running_mean", "running_var", "num_batches_tracked")
_FLOATING = ("float", "bfloat", "complex")  # dtype name prefixes of tensors that can be parameters


def describe(path: str | Path, *, registry: Any = None, select: str | None = None) -> dict[str, Any]:
    """Describe the checkpoint at ``path`` as plain data (what ``mska inspect --json`` prints).

    Keys: ``path``, ``size``, ``format``, ``container``, ``metadata``, ``provenance`` (plugins
    and versions recorded beside those installed now), ``tensors`` (key, shape, dtype, numel,
    bytes, role ``parameter`` or ``buffer``), ``tree`` (module prefixes with parameter and buffer
    counts, dtypes and bytes), ``totals`` (tensors, parameters, buffers, bytes, dtypes and a
    ``by_dtype`` breakdown) and ``claims`` (see :func:`check_claims`).
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
        "metadata": _ordered({k: _vocabulary_summary(v) if k == "vocabularies" else _summarise(v)
                              for k, v in metadata.items()}),
        "provenance": provenance(metadata, registry),
        "tensors": tensors,
        "tree": prefix_tree(tensors),
        "totals": totals(tensors),
        "claims": check_claims(metadata, tensors),
    }


def totals(tensors: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over ``tensors`` rows: parameters and buffers apart (elements and tensors), bytes, dtypes."""
    by_dtype: dict[str, dict[str, int]] = {}
    for t in tensors:
        entry = by_dtype.setdefault(t["dtype"], {"tensors": 0, "elements": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["elements"] += t["numel"]
        entry["bytes"] += t["bytes"]
    params = [t for t in tensors if t["role"] == "parameter"]
    buffers = [t for t in tensors if t["role"] == "buffer"]
    return {
        "tensors": len(tensors),
        "parameters": sum(t["numel"] for t in params),
        "parameter_tensors": len(params),
        "buffers": sum(t["numel"] for t in buffers),
        "buffer_tensors": len(buffers),
        "bytes": sum(t["bytes"] for t in tensors),
        "dtypes": sorted(by_dtype),
        "by_dtype": dict(sorted(by_dtype.items())),
    }


def role(key: str, dtype: str) -> str:
    """``"buffer"`` for running statistics and non-floating tensors, else ``"parameter"``."""
    if key.rsplit(".", 1)[-1] in BUFFER_LEAVES or not dtype.startswith(_FLOATING):
        return "buffer"
    return "parameter"


# -- claims ---------------------------------------------------------------------------------------


def check_claims(metadata: Mapping[str, Any], tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The payload's claims about its tensors, each checked against their shapes.

    - ``arch_config`` of a ViT: ``embed_dim`` (width of ``patch_embed.proj.weight``), ``depth``
      (number of ``blocks.N``), ``patch_size`` (kernel of the patch projection), ``mlp_ratio``
      (``blocks.0.mlp.fc1`` width over ``embed_dim``);
    - ``vocabularies``: the gloss vocabulary against each head's classifier rows, the text
      vocabulary against the decoder's embedding rows.

    Each entry: ``claim``, ``claimed``, ``found``, ``ok`` and ``evidence`` (the tensor it was read from).
    """
    shapes = {t["key"]: t["shape"] for t in tensors}
    claims: list[dict[str, Any]] = []
    arch_config = metadata.get("arch_config")
    if isinstance(arch_config, Mapping):
        claims += _vit_claims(arch_config, shapes)
    vocabularies = metadata.get("vocabularies")
    if isinstance(vocabularies, Mapping):
        claims += _vocabulary_claims(vocabularies, shapes)
    return claims


def _claim(claim: str, claimed: Any, found: Any, evidence: str) -> dict[str, Any]:
    ok = found == claimed if not isinstance(claimed, float) else abs(float(found) - claimed) < 1e-6
    return {"claim": claim, "claimed": claimed, "found": found, "ok": ok, "evidence": evidence}


def _vit_claims(arch_config: Mapping[str, Any], shapes: Mapping[str, list[int]]) -> list[dict[str, Any]]:
    proj = next((k for k in shapes if k.endswith("patch_embed.proj.weight")), None)
    if proj is None:
        return []
    base = proj[: -len("patch_embed.proj.weight")]
    weight = shapes[proj]
    out = []
    embed_dim = arch_config.get("embed_dim")
    if isinstance(embed_dim, int) and weight:
        out.append(_claim("arch_config.embed_dim", embed_dim, weight[0], f"{proj} {weight}"))
    depth = arch_config.get("depth")
    blocks = {k[len(base) + 7:].split(".", 1)[0] for k in shapes if k.startswith(f"{base}blocks.")}
    if isinstance(depth, int) and blocks:
        found = len({b for b in blocks if b.isdigit()})
        out.append(_claim("arch_config.depth", depth, found, f"{base}blocks.0 ... blocks.{found - 1}"))
    patch = arch_config.get("patch_size")
    if isinstance(patch, int) and len(weight) == 4:
        out.append(_claim("arch_config.patch_size", patch, weight[-1], f"{proj} {weight}"))
    ratio, fc1 = arch_config.get("mlp_ratio"), shapes.get(f"{base}blocks.0.mlp.fc1.weight")
    if isinstance(ratio, (int, float)) and fc1 and weight and arch_config.get("ffn", "mlp") == "mlp":
        out.append(_claim("arch_config.mlp_ratio", float(ratio), fc1[0] / weight[0],
                          f"{base}blocks.0.mlp.fc1.weight {fc1}"))
    return out


def _vocabulary_claims(vocabularies: Mapping[str, Any], shapes: Mapping[str, list[int]]) -> list[dict[str, Any]]:
    out = []
    gloss, text = vocabulary_size(vocabularies, "gloss"), vocabulary_size(vocabularies, "text")
    if gloss is not None:
        for key, shape in shapes.items():
            if key.endswith(".classifier.weight") and ".heads." in f".{key}" and shape:
                head = key.split("heads.", 1)[1].split(".", 1)[0]
                out.append(_claim(f"vocabularies.gloss (head {head})", gloss, shape[0], f"{key} {shape}"))
    embed = next((k for k in shapes if k.endswith("decoder.embed.weight") or k == "embed.weight"), None)
    if text is not None and embed is not None and shapes[embed]:
        out.append(_claim("vocabularies.text", text, shapes[embed][0], f"{embed} {shapes[embed]}"))
    return out


def vocabulary_size(vocabularies: Any, which: str) -> int | None:
    """The size of the ``gloss`` or ``text`` vocabulary stored as plain data in a payload."""
    entry = vocabularies.get(which) if isinstance(vocabularies, Mapping) else None
    tokens = entry.get("tokens") if isinstance(entry, Mapping) else None
    return len(tokens) if isinstance(tokens, (list, tuple)) else None


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
            node = node["children"].setdefault(part, _node())
            _count(node, tensor)
    top = [t for t in tensors if "." not in t["key"]]
    if top:
        node = root["children"]["(top level)"] = _node()
        for tensor in top:
            _count(node, tensor)

    def plain(name: str, node: dict[str, Any]) -> dict[str, Any]:
        return {
            "prefix": name, "tensors": node["tensors"], "parameters": node["parameter"],
            "buffers": node["buffer"], "bytes": node["bytes"], "dtypes": sorted(node["dtypes"]),
            "children": [plain(f"{name}.{k}", v) for k, v in node["children"].items()],
        }

    return [plain(k, v) for k, v in root["children"].items()]


def _node() -> dict[str, Any]:
    return {"children": {}, "parameter": 0, "buffer": 0, "bytes": 0, "dtypes": set(), "tensors": 0}


def _count(node: dict[str, Any], tensor: dict[str, Any]) -> None:
    node[tensor["role"]] += tensor["numel"]
    node["bytes"] += tensor["bytes"]
    node["dtypes"].add(tensor["dtype"])
    node["tensors"] += 1


def _tensor_row(key: str, value: Any) -> dict[str, Any]:
    shape = list(getattr(value, "shape", ()))
    numel = math.prod(shape) if shape else (1 if hasattr(value, "shape") else 0)
    dtype = str(getattr(value, "dtype", type(value).__name__)).replace("torch.", "")
    itemsize = getattr(value, "itemsize", None) or getattr(getattr(value, "dtype", None), "itemsize", 0) or 0
    return {"key": key, "shape": shape, "dtype": dtype, "numel": numel, "bytes": numel * itemsize,
            "role": role(key, dtype)}


def _safetensors_tensors(header: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, Mapping):
            continue
        shape = list(info.get("shape", []))
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"), (str(info.get("dtype")).lower(), 0))[0]
        start, end = info.get("data_offsets", (0, 0))
        rows.append({"key": key, "shape": shape, "dtype": dtype, "numel": math.prod(shape),
                     "bytes": int(end) - int(start), "role": role(key, dtype)})
    return rows


def _vocabulary_summary(vocabularies: Any) -> Any:
    """Stored vocabularies as their sizes and first tokens (a vocabulary may hold thousands)."""
    if not isinstance(vocabularies, Mapping):
        return _summarise(vocabularies)
    out = {}
    for name, entry in vocabularies.items():
        tokens = entry.get("tokens") if isinstance(entry, Mapping) else None
        if isinstance(tokens, (list, tuple)):
            out[str(name)] = {"size": len(tokens), "first": [str(t) for t in tokens[:8]]}
        else:
            out[str(name)] = _summarise(entry)
    return out


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


# -- run folders ----------------------------------------------------------------------------------

#: Files of a run folder (``mska train`` and ``mska pretrain`` write them; see docs/training.md).
RUN_CONFIG, RUN_METRICS, RUN_BEST, RUN_LAST = "config.toml", "metrics.jsonl", "best.pt", "last.pt"


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a run's config, metrics or checkpoints."""
    from mska_core.checkpoints.loading import CHECKPOINT_SUFFIXES

    folder = Path(path)
    if not folder.is_dir():
        return False
    return any((folder / name).is_file() for name in (RUN_CONFIG, RUN_METRICS)) or any(
        p.suffix in CHECKPOINT_SUFFIXES for p in folder.iterdir() if p.is_file()
    )


def describe_run(path: str | Path, *, registry: Any = None) -> dict[str, Any]:
    """Summarise a run folder as plain data (what ``mska inspect RUN_DIR --json`` prints).

    Keys: ``path``; ``run`` (``"fine-tuning"``, ``"pretraining"`` or ``None``); ``config`` (the
    resolved ``config.toml``: run name, data source, layout, streams, heads, losses, epochs, and the
    ``[pretrain]`` settings of a pretraining run; ``None`` when absent); ``metrics`` (how many training records,
    the last one, and every evaluation record); ``best`` and ``last`` (epoch, step and metrics of
    ``best.pt`` and ``last.pt``); ``provenance`` (mska-core and plugin versions recorded in the newest
    checkpoint, beside those installed now); ``checkpoints`` (every checkpoint file in the folder and
    one level below, with its format, kind, epoch, tensors, or why it does not read).
    """
    from mska_core.checkpoints.loading import CHECKPOINT_SUFFIXES, TEMPORARY_SUFFIX
    from mska_core.errors import CheckpointError

    folder = Path(path)
    if not is_run_folder(folder):
        inside = sorted(p.name for p in folder.iterdir())[:5] if folder.is_dir() else []
        raise CheckpointError(
            f"{folder}: is a directory but not a run folder (no {RUN_CONFIG}, {RUN_METRICS} or checkpoint"
            + (f"; it holds {', '.join(inside)}" if inside else "") + "); give a checkpoint file or a run folder"
        )
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    files = sorted(
        (p for p in [*folder.iterdir(), *(q for d in folder.iterdir() if d.is_dir() for q in d.iterdir())]
         if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES and not p.name.startswith(".")
         and not p.name.endswith(TEMPORARY_SUFFIX)),
        key=lambda p: (p.parent != folder, p.stat().st_mtime, str(p)),
    )
    checkpoints, metadata_by_name = [], {}
    for file in files:
        entry: dict[str, Any] = {"path": str(file.relative_to(folder)), "size": file.stat().st_size}
        try:
            info = describe(file, registry=registry)
        except Exception as exc:  # noqa: BLE001 - one line per file that does not read, whatever the cause
            text = str(exc).strip().splitlines()
            entry.update(reads=False, error=text[0] if text else type(exc).__name__)
        else:
            meta = info["metadata"]
            entry.update(reads=True, format=info["format"], kind=meta.get("kind"), epoch=meta.get("epoch"),
                         global_step=meta.get("global_step"), tensors=info["totals"]["tensors"],
                         parameters=info["totals"]["parameters"])
            metadata_by_name[entry["path"]] = meta
        checkpoints.append(entry)
    newest = next((metadata_by_name[c["path"]] for c in reversed(checkpoints) if c["path"] in metadata_by_name), {})
    metrics = _run_metrics(folder / RUN_METRICS)
    fine_tuning = RUN_BEST in metadata_by_name or RUN_LAST in metadata_by_name or bool(metrics and metrics["kinds"])
    pretraining = not fine_tuning and (bool(metrics and metrics["records"]) or any(
        m.get("kind") == "stream-encoder" or "teacher" in m.get("parts", ()) for m in metadata_by_name.values()))
    config = _run_config(folder / RUN_CONFIG)
    if config is not None and not pretraining:
        config.pop("pretrain", None)
    return {
        "path": str(folder),
        "run": "fine-tuning" if fine_tuning else "pretraining" if pretraining else None,
        "config": config,
        "metrics": metrics,
        "best": _run_point(metadata_by_name.get(RUN_BEST)),
        "last": _run_point(metadata_by_name.get(RUN_LAST), evals=metrics["evals"] if metrics else []),
        "provenance": provenance(newest, registry) if newest else [],
        "checkpoints": checkpoints,
    }


def _run_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {"file": path.name, "error": str(exc).splitlines()[0]}
    model = data.get("model", {})
    pretrain = data.get("pretrain", {})
    return {
        "file": path.name,
        "name": data.get("run", {}).get("name"),
        "seed": data.get("run", {}).get("seed"),
        "data": data.get("data", {}).get("source"),
        "layout": model.get("layout"),
        "streams": list(model.get("streams", {})),
        "heads": {name: list(head.get("streams", [])) for name, head in model.get("heads", {}).items()},
        "losses": {name: loss.get("weight") for name, loss in data.get("losses", {}).items()},
        "epochs": data.get("train", {}).get("epochs"),
        "pretrain": {"stream": pretrain.get("stream"), "arch": pretrain.get("arch"), "epochs": pretrain.get("epochs")}
        if pretrain else None,
    }


def _run_metrics(path: Path) -> dict[str, Any] | None:
    import json

    if not path.is_file():
        return None
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run
        if isinstance(record, dict):
            records.append(record)
    evals = [r for r in records if r.get("kind") == "eval"]
    steps = [r for r in records if r.get("kind", "train") == "train" and not r.get("summary")]
    return {"records": len(records), "train_records": len(steps), "last_train": steps[-1] if steps else None,
            "evals": evals, "kinds": sorted({str(r["kind"]) for r in records if "kind" in r})}


def _run_point(metadata: Mapping[str, Any] | None, evals: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Epoch, step and metrics of a checkpoint. With ``evals`` (a ``last.pt``, which keeps the best
    score, not its own) the metrics are those of the latest evaluation up to its epoch."""
    if metadata is None:
        return None
    metrics = metadata.get("metrics")
    dev = metrics.get("dev") if isinstance(metrics, Mapping) else None
    if evals is not None:
        epoch = metadata.get("epoch")
        done = [r for r in evals if epoch is None or (r.get("epoch") or 0) <= epoch]
        dev = {k: v for k, v in done[-1].items() if k not in ("kind", "split", "epoch", "step")} if done else None
    return {"kind": metadata.get("kind"), "epoch": metadata.get("epoch"), "global_step": metadata.get("global_step"),
            "min_loss": metadata.get("min_loss"), "selection": metadata.get("selection"),
            "metrics": dict(dev) if isinstance(dev, Mapping) else None}

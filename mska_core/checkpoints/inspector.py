"""What ``mska inspect`` shows: one checkpoint described, a run folder summarised, two checkpoints compared.

A description (:func:`describe`) gives a file's format, metadata, provenance, tensors and a prefix
tree. It reads lazily: safetensors from the JSON header alone (torch is not even imported), torch zip
files memory-mapped with ``weights_only=True`` (tensor data is never read). ``mska inspect`` prints
this; other commands can reuse it.

Parameters and buffers are counted apart. A state dict does not say which is which, so a tensor
counts as a buffer when its name ends in a normalisation layer's running statistics
(:data:`BUFFER_LEAVES`) or when it is not floating point (a parameter always is); everything else is
a parameter. The payload's own claims (a ViT's ``arch_config``, the stored vocabularies) are
checked against the tensors' shapes (:func:`check_claims`).

Two checkpoints compared tensor by tensor (``mska inspect A --diff B``, :func:`diff_checkpoints`):
both files are read through the registered checkpoint formats, so any two formats compare (an
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

from mska_core.checkpoints.files import SAFETENSORS_DTYPES, FileProbe
from mska_core.checkpoints.payload import (
    CHECKPOINT_SUFFIXES,
    common_prefix,
    detect_format,
    list_checkpoints,
)
from mska_core.checkpoints.schema import strip_wrapper_key
from mska_core.errors import CheckpointError, MskaError
from mska_core.run_files import BEST as RUN_BEST
from mska_core.run_files import CONFIG as RUN_CONFIG
from mska_core.run_files import LAST as RUN_LAST
from mska_core.run_files import METRICS as RUN_METRICS

# -- one checkpoint, one run folder ----------------------------------------------------------------


#: Metadata fields shown first, in this order.
METADATA_FIELDS = (
    "kind", "stream", "arch", "arch_config", "min_loss", "epoch", "global_step", "created", "mska_core_version",
)
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
        "metadata": _ordered({k: _vocabulary_summary(v) if k == "vocabularies" else
                              _decoder_summary(v) if k == "text_decoder" else _summarise(v)
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
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype"), (str(info.get("dtype")).lower(), 0))[0]
        start, end = info.get("data_offsets", (0, 0))
        rows.append({"key": key, "shape": shape, "dtype": dtype, "numel": math.prod(shape),
                     "bytes": int(end) - int(start), "role": role(key, dtype)})
    return rows


def _decoder_summary(entry: Any) -> Any:
    """The stored text decoder as its name, head, memory and what its artifacts hold (a tokenizer's
    JSON runs to many kilobytes)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("artifacts"), Mapping):
        return _summarise(entry)
    artifacts = entry["artifacts"]
    tokenizer = artifacts.get("tokenizer")
    kind = tokenizer.get("kind") if isinstance(tokenizer, Mapping) else None
    return {"name": entry.get("name"), "head": entry.get("head"), "memory": entry.get("memory"),
            "artifacts": sorted(str(k) for k in artifacts), **({"tokenizer": kind} if kind else {})}


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


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a run's config, metrics or checkpoints."""
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
    suffixes = (*CHECKPOINT_SUFFIXES, *(x for f in registry.checkpoint_formats for x in f.suffixes))
    below = (p for d in folder.iterdir() if d.is_dir() for p in list_checkpoints(d, suffixes=suffixes))
    files = list_checkpoints(folder, suffixes=suffixes) + sorted(below, key=lambda p: (p.stat().st_mtime, str(p)))
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
    # best and last in the run's [run] format: best.pt, best.safetensors, a plugin's suffix
    by_stem = {Path(name).stem: meta for name, meta in metadata_by_name.items() if len(Path(name).parts) == 1}
    best, last = by_stem.get(Path(RUN_BEST).stem), by_stem.get(Path(RUN_LAST).stem)
    fine_tuning = best is not None or last is not None or bool(metrics and metrics["kinds"])
    pretraining = not fine_tuning and (bool(metrics and metrics["records"]) or any(
        m.get("kind") == "stream-encoder" or "teacher" in m.get("parts", ()) for m in metadata_by_name.values()))
    config = _run_config(folder / RUN_CONFIG)
    if config is not None and not pretraining:
        config.pop("pretrain", None)
    elif config is not None and config.get("pretrain"):  # DINO reads crops, never [data]: name its crops
        dirs = config["pretrain"].get("train_dirs") or []
        config["data"] = f"crops under {', '.join(dirs)}" if dirs else "synthetic crops"
    return {
        "path": str(folder),
        "run": "fine-tuning" if fine_tuning else "pretraining" if pretraining else None,
        "config": config,
        "metrics": metrics,
        "best": _run_point(best),
        "last": _run_point(last, evals=metrics["evals"] if metrics else []),
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
        "pretrain": {"stream": pretrain.get("stream"), "arch": pretrain.get("arch"), "epochs": pretrain.get("epochs"),
                     "train_dirs": list(pretrain.get("train_dirs", []))}
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


# -- two checkpoints compared ----------------------------------------------------------------------


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
    probe = FileProbe.open(path, select=select)
    fmt = detect_format(probe, registry=registry)
    if fmt.name == "safetensors" and probe.header is not None and fmt.read.__module__.startswith("mska_core."):
        return fmt.name, _SafetensorsMap(probe)
    checkpoint = fmt.read(probe)
    return fmt.name, checkpoint.state_dict


class _SafetensorsMap(Mapping):
    """A safetensors file's tensors as a mapping; each tensor a view into one read-only mmap."""

    def __init__(self, probe: Any) -> None:
        self._path = probe.path
        self._start = 8 + int.from_bytes(probe.head[:8], "little")
        self._info: dict[str, dict[str, Any]] = {}
        for key, info in probe.header.items():
            if key == "__metadata__" or not isinstance(info, Mapping):
                continue
            name = strip_wrapper_key(key)
            self._info[name] = dict(info)
        self._map: mmap.mmap | None = None

    def __getitem__(self, key: str) -> Any:
        import torch

        info = self._info[key]
        dtype = SAFETENSORS_DTYPES.get(info["dtype"], (None, 0))[0]
        if dtype is None or dtype.startswith("complex"):
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

"""The built-in spec loaders (``file``, ``hub``, ``timm``) and :func:`load_backbone`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mska_core.backbones.spec import BackboneOptions, parse_spec, split_file_payload
from mska_core.checkpoints.encoder_state import load_strict
from mska_core.errors import BackboneError


def load_backbone(spec: str, *, img_size: int | None = None, registry: Any = None) -> Any:
    """Build the backbone a spec names, with its weights loaded strictly.

    The module maps ``[N, 3, H, W]`` to ``[N, D]`` and has ``feature_dim``, ``arch`` and
    ``arch_config``. ``img_size`` overrides the image size the weights carry (or the architecture's
    default). Every failure is a :class:`~mska_core.errors.BackboneError` or
    :class:`~mska_core.errors.CheckpointError` with one line. Schemes, archs and checkpoint formats
    are looked up in ``registry`` (the process-wide one when none is given).
    """
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    scheme, payload = parse_spec(spec, registry=registry)
    loader = registry.backbone_loaders.get(scheme)
    model = loader.load(payload, BackboneOptions(img_size=img_size, spec=spec, registry=registry))
    if not isinstance(getattr(model, "feature_dim", None), int):
        raise BackboneError(
            f"backbone spec {spec!r}: loader {scheme!r} ({loader.provider}) returned a module without an "
            "integer feature_dim"
        )
    for name, default in (("arch", None), ("arch_config", {})):
        if not hasattr(model, name):
            setattr(model, name, default)
    return model


def build_arch(name: str, *, registry: Any = None, **arch_config: Any) -> Any:
    """Build the architecture ``name`` of ``registry`` (the process-wide one when none is given) with
    random weights (``arch_config`` overrides)."""
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    record = registry.backbone_archs.get(name)
    model = record.build(**{**dict(record.default_config), **arch_config})
    for attribute, value in (("feature_dim", record.feature_dim), ("arch", name), ("arch_config", dict(arch_config))):
        if not hasattr(model, attribute):
            setattr(model, attribute, value)
    return model


def _arch_record(registry: Any, name: str, spec: str) -> Any:
    catalog = registry.backbone_archs
    if name not in catalog:
        raise BackboneError(f"backbone spec {spec!r}: {catalog.unknown_message(name)}")
    return catalog.get(name)


def load_weights_into_arch(
    state_dict: dict[str, Any], arch: str, *, registry: Any, arch_config: dict[str, Any] | None = None,
    img_size: int | None = None, what: str,
) -> Any:
    """Build ``arch`` and load ``state_dict`` (any layout it accepts) strictly."""
    record = _arch_record(registry, arch, what)
    config = {**dict(record.default_config), **(arch_config or {})}
    if img_size is not None:
        config["img_size"] = img_size
    model = record.build(**config)
    converted = record.convert_state_dict(state_dict, img_size=config.get("img_size"))
    load_strict(model, converted, what=f"{what} into {arch}")
    return model


# -- file::PATH[:ARCH] ----------------------------------------------------------------------------


def load_file(payload: str, options: BackboneOptions) -> Any:
    """``file::PATH[:ARCH]``: weights read through the checkpoint formats, loaded into ARCH."""
    from mska_core.checkpoints.payload import load_checkpoint

    registry = options.registry
    path_text, arch = split_file_payload(payload)
    path = Path(path_text).expanduser()
    if arch is not None:
        _arch_record(registry, arch, options.spec)  # an unknown arch fails before the file is read
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        raise BackboneError(f"backbone spec {options.spec!r}: {path} {state}; give a checkpoint file")
    checkpoint = load_checkpoint(path, registry=registry)
    stored_arch = checkpoint.metadata.get("arch")
    if arch is None:
        arch = stored_arch
    if not arch:
        names = ", ".join(registry.backbone_archs.names())
        raise BackboneError(
            f"backbone spec {options.spec!r}: {path} records no architecture; name one: "
            f"'file::{path_text}:ARCH' with ARCH one of {names}"
        )
    arch_config = checkpoint.metadata.get("arch_config") if stored_arch == arch else None
    return load_weights_into_arch(
        checkpoint.state_dict, arch, registry=registry, arch_config=dict(arch_config or {}),
        img_size=options.img_size, what=str(path),
    )


# -- hub::OWNER/REPO:ENTRY ------------------------------------------------------------------------


def hub_weight_names(entry: str) -> list[str]:
    """File names the official DINOv2 hub entry ``entry`` caches its weights under."""
    if entry.endswith("_reg"):
        return [f"{entry[:-4]}_reg4_pretrain.pth"]
    return [f"{entry}_pretrain.pth"]


def load_hub(payload: str, options: BackboneOptions) -> Any:
    """``hub::OWNER/REPO:ENTRY`` from the local torch.hub cache only; nothing is downloaded.

    For an ENTRY that is a registered architecture (the DINOv2 names) the cached weights file is
    loaded into our build of it, with no code from the hub repository run. Other entries run the
    cached repository's ``hubconf.py`` (``source="local"``), as torch.hub itself would.
    """
    import torch

    registry = options.registry
    repo, sep, entry = payload.rpartition(":")
    if not sep or "/" not in repo or not entry:
        raise BackboneError(f"backbone spec {options.spec!r}: write hub::OWNER/REPO:ENTRY (e.g. hub::facebookresearch/dinov2:dinov2_vits14)")
    hub_dir = Path(torch.hub.get_dir())
    owner, name = repo.split("/", 1)
    name = name.split(":")[0]
    if entry in registry.backbone_archs:
        for file_name in hub_weight_names(entry):
            weights = hub_dir / "checkpoints" / file_name
            if weights.is_file():
                from mska_core.checkpoints.payload import load_checkpoint

                checkpoint = load_checkpoint(weights, registry=registry)
                return load_weights_into_arch(
                    checkpoint.state_dict, entry, registry=registry, img_size=options.img_size, what=str(weights)
                )
    repos = sorted(hub_dir.glob(f"{owner}_{name}_*")) if hub_dir.is_dir() else []
    if not repos:
        looked = f"{hub_dir / 'checkpoints'} and {hub_dir}/{owner}_{name}_*"
        raise BackboneError(
            f"backbone spec {options.spec!r}: not in the local torch.hub cache (looked in {looked}); "
            f"mska-core never downloads: fetch the weights yourself and use 'file::PATH:{entry}'"
        )
    try:
        model = torch.hub.load(str(repos[-1]), entry, source="local", trust_repo=True)
    except Exception as exc:  # noqa: BLE001 - hub code is a third party's: report it in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneError(
            f"backbone spec {options.spec!r}: the cached hub repository {repos[-1]} failed: {first} "
            f"(use 'file::PATH:{entry}' with weights you have)"
        ) from None
    model.feature_dim = int(getattr(model, "embed_dim", 0) or getattr(model, "num_features", 0))
    model.arch, model.arch_config = None, {"hub": payload}
    return model


# -- timm::MODEL[:FILE] ---------------------------------------------------------------------------


def load_timm(payload: str, options: BackboneOptions) -> Any:
    """``timm::MODEL[:FILE]``: a timm model, weights from FILE or from the local Hugging Face cache."""
    import timm

    registry = options.registry
    model_name, _, file_text = payload.partition(":")
    base = model_name.split(".")[0]
    if not timm.is_model(base):
        close = timm.list_models(f"*{base.split('_')[0]}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise BackboneError(f"backbone spec {options.spec!r}: timm has no model {model_name!r}{hint}")
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    if options.img_size is not None:
        kwargs["img_size"] = options.img_size
    try:
        model = timm.create_model(model_name, **kwargs)
    except TypeError:
        kwargs.pop("img_size", None)  # a model without a fixed image size (a CNN)
        model = timm.create_model(model_name, **kwargs)
    path = Path(file_text).expanduser() if file_text else _hf_cached_weights(model, options.spec)
    from mska_core.checkpoints.payload import load_checkpoint
    from mska_core.checkpoints.schema import strip_wrappers

    state_dict = strip_wrappers(load_checkpoint(path, registry=registry).state_dict)
    if "pos_embed" in state_dict and hasattr(model, "patch_embed"):
        from mska_core.backbones.vit import _timm_resample

        state_dict = _timm_resample(state_dict, model.patch_embed.grid_size[0])
    load_strict(model, state_dict, what=f"{path} into timm {model_name}")
    model.feature_dim = int(model.num_features)
    model.arch, model.arch_config = None, {"timm": model_name}
    return model


def _hf_cached_weights(model: Any, spec: str) -> Path:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    repo_id = cfg.get("hf_hub_id")
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface/hub"
    if repo_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - timm depends on huggingface_hub
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            for file_name in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(repo_id, file_name, cache_dir=os.environ.get("HF_HUB_CACHE"))
                if isinstance(found, str) and Path(found).is_file():
                    return Path(found)
    raise BackboneError(
        f"backbone spec {spec!r}: no weights in the local Hugging Face cache ({cache}, repo "
        f"{repo_id or 'unknown'}); mska-core never downloads: give a file, 'timm::MODEL:PATH', or use 'file::PATH:ARCH'"
    )


__all__ = ["build_arch", "load_backbone", "load_file", "load_hub", "load_timm"]

"""Built-in plugin: the backbones that mska-core supplies (records only; factories import torch lazily)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mska_core.backbones.archs import ARCHS
from mska_core.hookspecs import hookimpl
from mska_core.records import BackboneArch, BackboneLoader


def _load_file(payload: str, options: Any) -> Any:
    from mska_core.backbones.loaders import load_file

    return load_file(payload, options)


def _load_hub(payload: str, options: Any) -> Any:
    from mska_core.backbones.loaders import load_hub

    return load_hub(payload, options)


def _load_timm(payload: str, options: Any) -> Any:
    from mska_core.backbones.loaders import load_timm

    return load_timm(payload, options)


def _builder(name: str) -> Callable[..., Any]:
    def build(**arch_config: Any) -> Any:
        from mska_core.backbones.vit import build_vit

        return build_vit(name, **arch_config)

    build.__doc__ = f"Build a randomly initialised {name} (timm ViT) from ``arch_config``."
    return build


def _converter(name: str) -> Callable[..., dict[str, Any]]:
    def convert(state_dict: Mapping[str, Any], *, img_size: int | None = None) -> dict[str, Any]:
        from mska_core.backbones.vit import convert_state_dict

        return convert_state_dict(state_dict, arch=name, img_size=img_size)

    convert.__doc__ = f"Turn any weight layout {name} accepts into the timm layout its build makes."
    return convert


@hookimpl
def mska_backbone_loaders() -> list[BackboneLoader]:
    return [
        BackboneLoader(scheme="file", load=_load_file,
                       description="file::PATH[:ARCH] — weights read through the checkpoint formats"),
        BackboneLoader(scheme="hub", load=_load_hub,
                       description="hub::OWNER/REPO:ENTRY — the local torch.hub cache only"),
        BackboneLoader(scheme="timm", load=_load_timm,
                       description="timm::MODEL[:FILE] — a timm model; weights from FILE or the local HF cache"),
    ]


@hookimpl
def mska_backbone_archs() -> list[BackboneArch]:
    return [
        BackboneArch(
            name=name,
            build=_builder(name),
            convert_state_dict=_converter(name),
            feature_dim=config["embed_dim"],
            description=description,
            default_config=dict(config),
        )
        for name, (config, description) in ARCHS.items()
    ]

"""The mean and deviation a crop backbone expects its input normalised with: the one place that says it.

Crops travel as uint8 images and are normalised when a batch is collated
(:func:`mska_core.data.collate.normalize_crops`); the figures come from here:

- a timm model (``timm::MODEL``) carries them in its ``pretrained_cfg`` (``mean``, ``std``);
- our ViTs (``file::PATH:ARCH``, the built-in DINOv2 archs, exports of ``mska pretrain``) carry them in
  their ``arch_config`` when it records ``mean`` and ``std``, and otherwise use ImageNet's, which is
  what DINOv2 and ``mska pretrain`` train with;
- anything else (a hub model without either) gets ImageNet's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

#: ImageNet's per-channel mean and standard deviation (RGB, on [0, 1] pixels).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _triple(values: Any, what: str) -> tuple[float, float, float]:
    from mska_core.errors import BackboneError

    try:
        triple = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3:
        raise BackboneError(f"crop backbone {what} must be three numbers (R, G, B), got {values!r}")
    return triple  # type: ignore[return-value]


@attrs.frozen
class CropNormalization:
    """Per-channel ``mean`` and ``std`` (RGB, on [0, 1] pixels) and where they came from."""

    mean: tuple[float, float, float] = attrs.field(default=IMAGENET_MEAN, converter=lambda v: _triple(v, "mean"))
    std: tuple[float, float, float] = attrs.field(default=IMAGENET_STD, converter=lambda v: _triple(v, "std"))
    source: str = "ImageNet"


def backbone_normalization(backbone: Any) -> CropNormalization:
    """The normalisation ``backbone`` (a module mapping ``[N, 3, H, W]`` to ``[N, D]``) expects."""
    arch_config = getattr(backbone, "arch_config", None) or {}
    if isinstance(arch_config, Mapping) and arch_config.get("mean") is not None and arch_config.get("std") is not None:
        return CropNormalization(arch_config["mean"], arch_config["std"], source="arch_config")
    pretrained = getattr(backbone, "pretrained_cfg", None) or {}
    if isinstance(pretrained, Mapping) and pretrained.get("mean") is not None and pretrained.get("std") is not None:
        return CropNormalization(pretrained["mean"], pretrained["std"], source="timm pretrained_cfg")
    return CropNormalization()


def crop_normalization(encoder: Any, streams: Sequence[str] | None = None) -> dict[str, CropNormalization]:
    """``{stream: CropNormalization}`` for every stream of ``encoder`` (an
    :class:`~mska_core.encoder.MSKAEncoder`, or a model with one as ``.encoder``) that has a crop
    branch, or for ``streams`` only."""
    encoder = getattr(encoder, "encoder", encoder)
    out = {}
    for name, branch in encoder.branches.items():
        crop = getattr(branch, "crop", None)
        if crop is not None and (streams is None or name in streams):
            out[name] = backbone_normalization(crop.backbone)
    return out

"""Assembly of an :class:`~mska_core.encoder.MSKAEncoder` from a :class:`~mska_core.config.ModelConfig`
and the registry: which streams, which branch each gets (the core's keypoint branch, a plugin's
encoder, a crop backbone), and which heads read which streams."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from mska_core.config.checks import resolve_heads
from mska_core.encoder.crop import CropBranch
from mska_core.encoder.head import VisualHead
from mska_core.encoder.keypoint import KeypointBranch
from mska_core.encoder.model import MSKAEncoder, StreamBranch
from mska_core.errors import ConfigError, RegistryError


def build_encoder(
    model_cfg: Any,
    *,
    vocab_size: int | None = None,
    registry: Any,
    backbones: Mapping[str, nn.Module] | None = None,
) -> MSKAEncoder:
    """The encoder ``model_cfg`` describes, over the streams ``registry`` supplies.

    ``vocab_size`` overrides ``model_cfg.vocab_size`` (one must be set). ``backbones`` gives ready
    crop backbones by stream; other streams with ``backbone`` set load theirs through
    :func:`mska_core.backbones.load_backbone`.
    """
    from mska_core.config import StreamConfig

    vocab = vocab_size if vocab_size is not None else model_cfg.vocab_size
    if vocab is None:
        raise ConfigError("model.vocab_size is not set: set it in [model] or pass vocab_size (e.g. --vocab-size)")
    if vocab <= 0:
        raise ConfigError(f"vocab_size must be positive, got {vocab}")
    try:
        layout = registry.layouts.get(model_cfg.layout)
    except RegistryError as exc:
        raise ConfigError(f"model.layout: {exc}") from None
    specs = select_streams(model_cfg, registry)
    loaded = dict(backbones or {})
    for name in specs:
        stream_cfg = model_cfg.streams.get(name)
        if stream_cfg is not None and stream_cfg.backbone and name not in loaded:
            from mska_core.backbones import load_backbone

            loaded[name] = load_backbone(stream_cfg.backbone, img_size=stream_cfg.img_size, registry=registry)

    factor = math.prod(model_cfg.strides)
    branches = {
        name: build_stream(spec, model_cfg, model_cfg.streams.get(name, StreamConfig()), loaded.get(name), factor)
        for name, spec in specs.items()
    }
    head_streams = resolve_heads(model_cfg, list(specs))
    heads = {
        head: VisualHead(
            sum(branches[s].out_channels for s in streams), vocab,
            hidden=model_cfg.head_hidden, ff=model_cfg.head_ff, kernel=model_cfg.head_kernel,
            dropout=model_cfg.head_dropout, mask_padding=model_cfg.attention == "softmax",
        )
        for head, streams in head_streams.items()
    }
    for name, branch in branches.items():
        stream_cfg = model_cfg.streams.get(name, StreamConfig())
        if branch.crop is not None:
            branch.crop.freeze_backbone(0 if stream_cfg.freeze else stream_cfg.trainable_blocks, stream=name)
        elif stream_cfg.trainable_blocks is not None:
            raise ConfigError(f"model.streams.{name}.trainable_blocks: stream {name!r} has no crop backbone")
        if stream_cfg.freeze:
            branch.requires_grad_(False)
    return MSKAEncoder(
        layout=model_cfg.layout, num_joints=layout.num_joints, in_channels=model_cfg.in_channels,
        temporal_kernels=model_cfg.temporal_kernels, strides=model_cfg.strides, specs=specs,
        branches=branches, head_streams=head_streams, heads=heads, vocab_size=vocab, dropout=model_cfg.dropout,
    )


def select_streams(model_cfg: Any, registry: Any) -> dict[str, Any]:
    """``{name: StreamSpec}`` of the streams ``model_cfg`` selects, in order."""
    from mska_core.config.checks import selected_streams

    names = selected_streams(model_cfg, registry)
    if not names:
        raise ConfigError(
            f"model: no stream has joints in layout {model_cfg.layout!r}; install a stream plugin or "
            "name streams under [model.streams.<name>]"
        )
    specs = {}
    for name in names:
        try:
            specs[name] = registry.streams.get(name)
        except RegistryError as exc:
            raise ConfigError(f"model.streams.{name}: {exc}") from None
    return specs


def build_stream(spec: Any, model_cfg: Any, stream_cfg: Any, backbone: nn.Module | None, factor: int) -> StreamBranch:
    """The :class:`StreamBranch` of one stream: its keypoint branch (the core's, or the plugin's
    ``build_encoder``) when it has joints in the layout and ``keypoints`` is on; its crop branch
    when a backbone is set."""
    joints = spec.joints_for(model_cfg.layout)
    keypoint: nn.Module | None = None
    if stream_cfg.keypoints and joints:
        if spec.build_encoder is not None:
            keypoint = spec.build_encoder(spec, model_cfg, stream_cfg, model_cfg.layout)
            if not isinstance(getattr(keypoint, "out_channels", None), int):
                raise ConfigError(
                    f"stream {spec.name!r}: the encoder from {spec.provider} has no int attribute out_channels"
                )
        else:
            keypoint = KeypointBranch(joints, model_cfg)
    crop = None
    if stream_cfg.backbone:
        if not spec.crops:
            raise ConfigError(f"model.streams.{spec.name}.backbone: stream {spec.name!r} does not read image crops")
        if backbone is None:
            raise ConfigError(f"model.streams.{spec.name}.backbone: no backbone was loaded for {stream_cfg.backbone!r}")
        crop = CropBranch(backbone, backbone_width(spec.name, backbone), model_cfg.crop_dim, factor)
    elif backbone is not None:
        crop = CropBranch(backbone, backbone_width(spec.name, backbone), model_cfg.crop_dim, factor)
    if keypoint is None and crop is None:
        raise ConfigError(
            f"model.streams.{spec.name}: stream {spec.name!r} has no joints in layout {model_cfg.layout!r} "
            "(or keypoints = false) and no backbone; set a backbone or choose another layout"
        )
    return StreamBranch(keypoint, crop)


def backbone_width(stream: str, backbone: nn.Module) -> int:
    width = getattr(backbone, "feature_dim", None)
    if not isinstance(width, int) or width <= 0:
        raise ConfigError(
            f"stream {stream!r}: the crop backbone {type(backbone).__name__} has no positive int feature_dim; "
            "crop backbones map [N, 3, H, W] to [N, feature_dim]"
        )
    return width


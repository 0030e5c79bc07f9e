"""The crop branch of a stream: per-frame image crops through a backbone, projected and pooled in
time to the keypoint branch's rate; and which of the backbone's weights train."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.backbones.products import route_linears
from mska_core.encoder.layers import frame_mask
from mska_core.errors import ConfigError, DataError


def backbone_image_size(backbone: nn.Module) -> int | None:
    """The square input size ``backbone`` was built for (a ViT's patch-embedding size, else its
    ``arch_config["img_size"]``); ``None`` for a backbone without one (a CNN)."""
    size = getattr(getattr(backbone, "patch_embed", None), "img_size", None)
    if size is None:
        size = (getattr(backbone, "arch_config", None) or {}).get("img_size")
    if isinstance(size, (tuple, list)):
        size = size[0] if len(set(size)) == 1 else None
    return int(size) if isinstance(size, int) and size > 0 else None


class CropBranch(nn.Module):
    """Per-frame image crops through a backbone, projected and pooled in time to the keypoint rate.

    ``backbone`` is any module mapping ``[N, 3, H, W]`` to ``[N, feature_dim]``; only the valid
    frames of each clip go through it. Output frame ``t'`` averages the valid frames
    ``[t'·factor, (t'+1)·factor)``. Crops must be as large as the backbone was built for
    (:func:`backbone_image_size`): a ViT fed crops of another size resizes its position embedding
    and gives different features, so a mismatch is an error rather than a silent change.

    :meth:`freeze_backbone` fixes all of the backbone but its last blocks; fixed parts stay in eval
    mode whatever ``train()`` says, and a wholly fixed backbone runs without autograd.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.backbone = route_linears(backbone)  # the CPU's faster product kernel (backbones/products.py)
        self.feature_dim, self.out_dim, self.factor = feature_dim, out_dim, factor
        self.project = nn.Linear(feature_dim, out_dim)
        self.image_size = backbone_image_size(backbone)
        self.frozen: tuple[nn.Module, ...] = ()  # backbone modules kept in eval mode
        self.backbone_frozen = False

    def freeze_backbone(self, trainable_blocks: int | None = 0, *, stream: str = "") -> None:
        """Fix the backbone's weights except its last ``trainable_blocks`` blocks (and the final
        norm after them, when any block trains); ``0`` fixes the whole backbone, ``None`` fixes
        nothing. Needs a backbone with a ``blocks`` list (timm ViTs) when ``trainable_blocks`` > 0."""
        if trainable_blocks is None:
            return
        blocks = getattr(self.backbone, "blocks", None)
        if trainable_blocks == 0:
            self.backbone.requires_grad_(False)
            self.frozen, self.backbone_frozen = (self.backbone,), True
        else:
            if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
                raise ConfigError(
                    f"model.streams.{stream}.trainable_blocks: the crop backbone {type(self.backbone).__name__} "
                    "has no list of blocks; use trainable_blocks = 0 (all fixed) or leave it unset"
                )
            if trainable_blocks > len(blocks):
                raise ConfigError(
                    f"model.streams.{stream}.trainable_blocks = {trainable_blocks}, but the crop backbone has "
                    f"{len(blocks)} blocks; use at most {len(blocks)} (or leave it unset to train them all)"
                )
            trainable = set(map(id, list(blocks)[len(blocks) - trainable_blocks:]))
            self.backbone.requires_grad_(False)
            frozen = [block for block in blocks if id(block) not in trainable]
            for block in blocks:
                if id(block) in trainable:
                    block.requires_grad_(True)
            for name in ("norm", "fc_norm", "head"):  # what follows the last block
                module = getattr(self.backbone, name, None)
                if isinstance(module, nn.Module):
                    module.requires_grad_(True)
            for name in ("patch_embed", "norm_pre"):
                module = getattr(self.backbone, name, None)
                if isinstance(module, nn.Module):
                    frozen.append(module)
            self.frozen, self.backbone_frozen = tuple(frozen), False
        self.train(self.training)

    def train(self, mode: bool = True) -> CropBranch:
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, crops: Tensor, lengths: Tensor, frames_out: int, present: Tensor | None = None) -> Tensor:
        """``crops`` ``[N, T, 3, H, W]`` to ``[N, frames_out, out_dim]``.

        ``present`` masks crops: bool ``[N]`` (a clip without crops for the stream) or ``[N, T]`` (per
        frame: false where the stream's part was not found, so the crop there is a held one). A masked
        frame never reaches the backbone and counts for nothing in the time pooling, exactly as a padded
        frame; an output frame whose frames are all masked gets zero features."""
        N, T = crops.shape[:2]
        if self.image_size is not None and tuple(crops.shape[-2:]) != (self.image_size, self.image_size):
            raise DataError(
                f"crops are {crops.shape[-1]}x{crops.shape[-2]} px but the crop backbone was built for "
                f"{self.image_size} px; build it at the crops' size (model.streams.<name>.img_size) or give "
                f"crops of {self.image_size} px"
            )
        valid = frame_mask(lengths, T)
        if present is not None:
            present = present.to(valid.device).bool()
            valid = valid & (present.unsqueeze(1) if present.ndim == 1 else present[:, :T])
        selected = crops[valid]  # [n_valid, 3, H, W]
        if selected.shape[0] == 0:  # every clip masked: nothing to encode
            features = self.project.weight.new_zeros(0, self.out_dim)
        else:
            context = torch.no_grad() if self.backbone_frozen else contextlib.nullcontext()
            with context:
                backbone_features = self.backbone(selected)
            features = self.project(backbone_features)  # [n_valid, D]
        per_frame = features.new_zeros(N, T, self.out_dim).masked_scatter(valid.unsqueeze(-1), features)
        span = frames_out * self.factor
        weights = valid.to(per_frame.dtype)
        if span > T:
            per_frame = F.pad(per_frame, (0, 0, 0, span - T))
            weights = F.pad(weights, (0, span - T))
        sums = per_frame[:, :span].reshape(N, frames_out, self.factor, self.out_dim).sum(2)
        counts = weights[:, :span].reshape(N, frames_out, self.factor).sum(2, keepdim=True)
        return sums / counts.clamp(min=1.0)


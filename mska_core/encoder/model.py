"""The multi-stream encoder: one branch per stream, fusion by concatenation, one VisualHead per head.

The parts live in their own modules and read top-down there: :mod:`~mska_core.encoder.records`
(the batch and output records), :mod:`~mska_core.encoder.attention` (the attention block, its plain
path and its fast path), :mod:`~mska_core.encoder.keypoint`, :mod:`~mska_core.encoder.crop` and
:mod:`~mska_core.encoder.head` (the branches and the VisualHead), and
:mod:`~mska_core.encoder.build` (assembly from a :class:`~mska_core.config.ModelConfig` and the
registry). Paper mode reproduces MSKA (arXiv 2405.05672) weight for weight; the parameters carry
the reference's shapes so that its checkpoints convert by renaming (see
:mod:`mska_core.checkpoints.paper`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mska_core.encoder.attention import AttentionBlock
from mska_core.encoder.crop import CropBranch
from mska_core.encoder.head import VisualHead
from mska_core.encoder.keypoint import KeypointBranch
from mska_core.encoder.layers import check_kernels, frame_mask
from mska_core.encoder.records import ClipBatch, EncoderOutput
from mska_core.errors import DataError


@torch.compiler.disable
def output_record(*fields: Any) -> EncoderOutput:
    """The :class:`EncoderOutput` of ``fields``, built outside a compiled graph (TorchDynamo cannot
    trace the ``__init__`` of a frozen attrs class; the tensors stay the graph's outputs)."""
    return EncoderOutput(*fields)


class StreamBranch(nn.Module):
    """One stream: a keypoint branch and/or a crop branch (either may be ``None``)."""

    def __init__(self, keypoint: nn.Module | None, crop: CropBranch | None) -> None:
        super().__init__()
        self.keypoint = keypoint
        self.crop = crop

    @property
    def out_channels(self) -> int:
        width = getattr(self.keypoint, "out_channels", 0) if self.keypoint is not None else 0
        return width + (self.crop.out_dim if self.crop is not None else 0)


class MSKAEncoder(nn.Module):
    """The multi-stream encoder: one branch per selected stream, fusion by concatenation, one
    VisualHead per head.

    Build it with :meth:`from_config`. Attributes: ``stream_names``, ``specs`` (name ->
    StreamSpec), ``branches`` (name -> :class:`StreamBranch`), ``heads`` (name -> :class:`VisualHead`),
    ``head_streams`` (name -> stream names), ``vocab_size``. Every parameter exists after
    ``__init__`` and ``state_dict()`` keys never change.
    """

    def __init__(
        self,
        *,
        layout: str,
        num_joints: int,
        in_channels: int,
        temporal_kernels: Sequence[int],
        strides: Sequence[int],
        specs: Mapping[str, Any],
        branches: Mapping[str, StreamBranch],
        head_streams: Mapping[str, tuple[str, ...]],
        heads: Mapping[str, VisualHead],
        vocab_size: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.num_joints = num_joints
        self.in_channels = in_channels
        self.vocab_size = vocab_size
        self.stream_names = list(specs)
        self.specs = dict(specs)
        self.kernels = tuple(temporal_kernels)
        self.strides = tuple(strides)
        self.factor = math.prod(self.strides)
        self.branches = nn.ModuleDict(dict(branches))
        self.head_streams = dict(head_streams)
        self.heads = nn.ModuleDict(dict(heads))
        self.feature_dropout = nn.Dropout(dropout)

    @classmethod
    def from_config(
        cls,
        model_cfg: Any,
        *,
        vocab_size: int | None = None,
        registry: Any = None,
        backbones: Mapping[str, nn.Module] | None = None,
    ) -> MSKAEncoder:
        """The encoder ``model_cfg`` describes, over the streams ``registry`` supplies (the
        process-wide registry when none is given).

        ``vocab_size`` overrides ``model_cfg.vocab_size`` (one must be set). ``backbones`` gives
        ready crop backbones by stream; other streams with ``backbone`` set load theirs through
        :func:`mska_core.backbones.load_backbone`. See :func:`mska_core.encoder.build.build_encoder`.
        """
        from mska_core.encoder.build import build_encoder

        if registry is None:
            from mska_core.registry import get_registry

            registry = get_registry()
        return build_encoder(model_cfg, vocab_size=vocab_size, registry=registry, backbones=backbones)

    def set_fused_kernels(self, enabled: bool) -> MSKAEncoder:
        """Run every attention block on its fast path (``True``) or its plain path (``False``)."""
        for module in self.modules():
            if isinstance(module, AttentionBlock):
                module.fused = bool(enabled)
        return self

    def set_disabled_kernels(self, names: Iterable[str]) -> MSKAEncoder:
        """Leave the custom kernels ``names`` (of :data:`~mska_core.encoder.layers.KERNELS`) off in
        every attention block's fast path, which then computes those steps with autograd's own
        operations; an empty set turns every kernel on. The weights are untouched."""
        names = check_kernels(names)
        for module in self.modules():
            if isinstance(module, AttentionBlock):
                module.disabled_kernels = names
        return self

    def output_length(self, length: Any) -> Any:
        """Output frames for ``length`` input frames (an int or a long tensor): the blocks' convolutions."""
        for kernel, stride in zip(self.kernels, self.strides):
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        return length

    def forward(self, batch: ClipBatch) -> EncoderOutput:
        """Encode ``batch``; see :class:`EncoderOutput`."""
        keypoints = self.check_keypoints(batch.keypoints)  # [B, T, J, C]
        B, T = keypoints.shape[:2]
        lengths = batch.lengths.to(keypoints.device).long().clamp(1, T)
        frames_out = self.output_length(T)
        out_lengths = self.output_length(lengths).clamp(1, frames_out)
        mask = frame_mask(out_lengths, frames_out)  # [B, T']

        features: dict[str, Tensor] = {}
        for name in self.stream_names:
            branch = self.branches[name]
            if branch.keypoint is None:
                continue
            points = keypoints.index_select(2, self.joint_index(name, keypoints.device))  # [B, T, V, C]
            if isinstance(branch.keypoint, KeypointBranch):
                features[name] = branch.keypoint(points, lengths)  # [B, T', C_s]
            else:
                features[name] = branch.keypoint(points)
        for name in self.stream_names:
            crop = self.branches[name].crop
            if crop is None:
                continue
            if batch.crops is None or name not in batch.crops:
                raise DataError(
                    f"stream {name!r} has a crop backbone but the batch has no crops for it; "
                    "enable crops in [data] or unset model.streams.{name}.backbone"
                )
            present = None if batch.crop_present is None else batch.crop_present.get(name)
            encoded = crop(batch.crops[name], lengths, frames_out, present=present)
            features[name] = torch.cat([features[name], encoded], -1) if name in features else encoded
        features = {name: self.feature_dropout(features[name]) for name in self.stream_names}

        head_inputs, logits, gloss_features = {}, {}, {}
        for head, streams in self.head_streams.items():
            fused = torch.cat([features[s] for s in streams], -1) if len(streams) > 1 else features[streams[0]]
            head_inputs[head] = fused
            gloss_features[head], logits[head] = self.heads[head](fused, mask)
        return output_record(features, head_inputs, out_lengths, logits, gloss_features, mask)

    def joint_index(self, name: str, device: Any) -> Tensor:
        """The joints of stream ``name`` in this model's layout, as a long tensor on ``device``."""
        keypoint = self.branches[name].keypoint
        if isinstance(keypoint, KeypointBranch):
            return keypoint.joints
        return torch.tensor(self.specs[name].joints_for(self.layout), dtype=torch.long, device=device)

    def check_keypoints(self, keypoints: Tensor) -> Tensor:
        """``keypoints`` as float with NaN/inf read as 0; a :class:`DataError` for the wrong shape."""
        if keypoints.dim() != 4:
            raise DataError(f"keypoints must be [B, T, J, C], got shape {tuple(keypoints.shape)}")
        _, T, J, C = keypoints.shape
        if J != self.num_joints or C != self.in_channels:
            raise DataError(
                f"keypoints have {J} joints and {C} channels; layout {self.layout!r} of this model needs "
                f"{self.num_joints} joints and model.in_channels = {self.in_channels}"
            )
        if T == 0:
            raise DataError("keypoints have no frames")
        # Missing detections sometimes arrive as NaN: they become zeros, like an undetected joint.
        return torch.nan_to_num(keypoints.float() if not keypoints.is_floating_point() else keypoints,
                                nan=0.0, posinf=0.0, neginf=0.0)

    def parameter_table(self) -> dict[str, Any]:
        """Parameter counts per stream (keypoint branch, crop backbone, crop projection), per head, and totals."""
        def count(module: nn.Module | None) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        streams = {}
        for name, branch in self.branches.items():
            crop = branch.crop
            entry = {
                "keypoint": count(branch.keypoint),
                "crop_backbone": count(crop.backbone) if crop is not None else 0,
                "crop_projection": count(crop.project) if crop is not None else 0,
                "features": branch.out_channels,
            }
            entry["total"] = entry["keypoint"] + entry["crop_backbone"] + entry["crop_projection"]
            streams[name] = entry
        heads = {
            name: {"streams": list(self.head_streams[name]), "input_dim": head.in_dim, "total": count(head)}
            for name, head in self.heads.items()
        }
        encoder = sum(s["total"] for s in streams.values())
        head_total = sum(h["total"] for h in heads.values())
        return {"vocab_size": self.vocab_size, "streams": streams, "heads": heads,
                "encoder_total": encoder, "heads_total": head_total, "total": count(self)}


"""The multi-stream encoder (needs torch): :class:`MSKAEncoder`, its batch and output records, and its
blocks. ``mska_core.checkpoints.paper`` converts the MSKA reference implementation's checkpoints;
``docs/encoder.md`` describes the module layout and the fast path."""

from mska_core.config.schema import PAPER_HEADS, PAPER_STREAMS
from mska_core.encoder.attention import AttentionBlock
from mska_core.encoder.build import build_encoder
from mska_core.encoder.crop import CropBranch
from mska_core.encoder.head import VisualHead
from mska_core.encoder.keypoint import KeypointBranch
from mska_core.encoder.layers import (
    KERNELS,
    ConvNorm,
    disabled_kernels,
    set_disabled_kernels,
    set_fused_kernels,
    use_fused_kernels,
)
from mska_core.encoder.model import MSKAEncoder, StreamBranch
from mska_core.encoder.records import ClipBatch, EncoderOutput

__all__ = [
    "KERNELS",
    "PAPER_HEADS",
    "PAPER_STREAMS",
    "AttentionBlock",
    "ClipBatch",
    "ConvNorm",
    "CropBranch",
    "EncoderOutput",
    "KeypointBranch",
    "MSKAEncoder",
    "StreamBranch",
    "VisualHead",
    "build_encoder",
    "disabled_kernels",
    "set_disabled_kernels",
    "set_fused_kernels",
    "use_fused_kernels",
]

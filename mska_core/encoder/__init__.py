"""The multi-stream encoder (needs torch): :class:`MSKAEncoder`, its batch and output records, and its
blocks. ``mska_core.encoder.reference`` converts the MSKA reference implementation's checkpoints."""

from mska_core.encoder.model import (
    PAPER_HEADS,
    PAPER_STREAMS,
    AttentionBlock,
    ClipBatch,
    ConvNorm,
    CropBranch,
    EncoderOutput,
    KeypointBranch,
    MSKAEncoder,
    StreamBranch,
    VisualHead,
)

__all__ = [
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
]

"""``mska export --onnx``: the keypoint encoder and its recognition heads as one ONNX graph.

The graph (:class:`RecognitionGraph`) takes keypoints and lengths and returns every head's gloss
log-probabilities and the output lengths (:mod:`mska_core.export.format` defines the names and the
metadata). It is captured with ``torch.onnx.export(dynamo=True)``, which goes through
``torch.export`` with a dynamic batch and a dynamic number of frames. With torch 2.14 the
TorchScript exporter (``dynamo=False``) cannot export the encoder: the heads' temporal convolution
unfolds a padded tensor whose size it cannot see (``Unfold, input size not accessible``).

The attention blocks are exported on their plain path: the fast path's custom autograd kernels
branch on the number of rows (a guard ``torch.export`` refuses for a dynamic length). Both paths
compute the same thing; the check below compares the artefact with the model as ``mska predict
--checkpoint`` runs it (the fast path) and refuses to write one that differs by more than the
tolerance.

Crop streams are refused in one line: their backbones read ``[B, T, 3, H, W]`` crops cut from the
video, which a deployed keypoint model does not receive. The translation decoder is not exported
(its autoregressive search runs in Python); the metadata says so.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from mska_core.errors import ExportError
from mska_core.export.format import (
    KEYPOINTS,
    LENGTHS,
    LENGTHS_OUT,
    TRANSLATION_NONE,
    TRANSLATION_NOT_EXPORTED,
    ExportMetadata,
    Preprocessing,
    head_output,
)

#: Relative tolerance of the check against torch (``|onnx - torch| <= RTOL * |torch| + ATOL``).
RTOL, ATOL = 1e-4, 1e-5
#: ``(batch, frames)`` of the inputs the artefact is checked on after export.
CHECK_SHAPES: tuple[tuple[int, int], ...] = ((1, 12), (3, 40))
#: The ONNX operator set the graph is written in.
OPSET = 18


class RecognitionGraph(nn.Module):
    """What is exported: ``(keypoints [B, T, J, 3], lengths [B])`` to every head's log-probabilities
    ``[B, T', V]`` (in ``heads`` order) and the output lengths ``[B]``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = list(encoder.heads)

    def forward(self, keypoints: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        from mska_core.encoder import ClipBatch

        encoded = self.encoder(ClipBatch(keypoints, lengths))
        log_probs = tuple(torch.log_softmax(encoded.logits[head].float(), -1) for head in self.heads)
        return (*log_probs, encoded.lengths)


@attrs.frozen
class ExportReport:
    """What :func:`export_onnx` wrote and how closely it reproduces the checkpoint."""

    path: Path
    bytes: int
    heads: tuple[str, ...]
    vocab_size: int
    max_relative_error: float  # over every output of every checked shape
    checked: tuple[tuple[int, int], ...]  # (batch, frames) of the checks
    translation: str

    def as_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.path), "bytes": self.bytes, "heads": list(self.heads), "vocab_size": self.vocab_size,
                "max_relative_error": self.max_relative_error, "checked": [list(c) for c in self.checked],
                "tolerance": {"rtol": RTOL, "atol": ATOL}, "translation": self.translation}


def require_exporter() -> None:
    """An :class:`ExportError` naming the extra when onnx, onnxscript or onnxruntime is missing."""
    import importlib

    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: pip install 'mska-core[onnx]'")


def export_metadata(trained: Any) -> ExportMetadata:
    """The metadata of ``trained`` (a :class:`~mska_core.training.trained.TrainedModel`)."""
    from mska_core import __version__
    from mska_core.config.loader import unstructure
    from mska_core.data.augment import MULTIPLE

    config, encoder = trained.config, trained.model.encoder
    data = config.data
    return ExportMetadata(
        heads=tuple(encoder.heads), layout=encoder.layout, num_joints=encoder.num_joints,
        in_channels=encoder.in_channels,
        preprocessing=Preprocessing(normalize=bool(data.normalize), frame_width=float(data.frame_width),
                                    frame_height=float(data.frame_height), frame_multiple=MULTIPLE),
        temporal_kernels=tuple(encoder.kernels), strides=tuple(encoder.strides),
        translation=TRANSLATION_NONE if trained.model.decoder is None else TRANSLATION_NOT_EXPORTED,
        vocabularies=trained.vocabularies.to_dict(), config=unstructure(config), source=str(trained.path),
        mska_core_version=__version__,
    )


def refuse_crop_streams(trained: Any) -> None:
    """An :class:`ExportError` when the model reads image crops."""
    encoder = trained.model.encoder
    crops = [name for name, branch in encoder.branches.items() if branch.crop is not None]
    if crops:
        raise ExportError(
            f"{trained.path}: streams {', '.join(crops)} read image crops through a backbone; mska export writes "
            "keypoint-only models (keypoints in, glosses out) — train without crops ([data] crops = false) to "
            "deploy, or run the checkpoint with mska predict --checkpoint"
        )


def export_onnx(checkpoint: str | Path, out: str | Path, *, registry: Any = None,
                check_shapes: Sequence[tuple[int, int]] = CHECK_SHAPES) -> ExportReport:
    """Export the encoder and recognition heads of a ``mska train`` checkpoint to ``out`` (ONNX).

    The artefact is checked with onnxruntime against the model in torch at ``check_shapes``
    (``(batch, frames)``, random keypoints, the second clip of a batch shorter than the first) before
    it is written, atomically; a difference above ``RTOL`` relative is an
    :class:`~mska_core.errors.ExportError`. ``registry`` defaults to the process-wide one (this is a
    Python entry point, as ``mska export`` is).
    """
    from mska_core.io import atomic_write_bytes
    from mska_core.training.trained import load_trained

    require_exporter()
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    trained = load_trained(checkpoint, registry=registry)
    refuse_crop_streams(trained)
    metadata = export_metadata(trained)
    encoder = trained.model.encoder.cpu().eval()
    proto = capture(encoder, metadata)
    for key, value in metadata.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    error = check_against_torch(data, encoder, metadata, check_shapes, where=str(out))
    atomic_write_bytes(out, data)
    return ExportReport(path=Path(out), bytes=len(data), heads=metadata.heads,
                        vocab_size=len(metadata.gloss_vocabulary), max_relative_error=error,
                        checked=tuple(check_shapes), translation=metadata.translation)


def capture(encoder: nn.Module, metadata: ExportMetadata) -> Any:
    """The ONNX ``ModelProto`` of ``encoder``'s :class:`RecognitionGraph`, on its plain path, with
    dynamic batch and frames; the encoder's own path is restored afterwards."""
    from mska_core.encoder.attention import AttentionBlock

    blocks = [m for m in encoder.modules() if isinstance(m, AttentionBlock)]
    paths = [block.fused for block in blocks]
    for block in blocks:
        block.fused = False
    graph = RecognitionGraph(encoder).eval()
    keypoints = torch.zeros(2, 16, metadata.num_joints, metadata.in_channels)
    lengths = torch.tensor([16, 12])
    batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames", min=metadata.preprocessing.frame_multiple)
    try:
        # the exporter reports its stages with print(): keep stdout for the command's own output
        with torch.no_grad(), contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph, (keypoints, lengths), dynamo=True, opset_version=OPSET, verbose=False,
                input_names=[KEYPOINTS, LENGTHS],
                output_names=[head_output(h) for h in metadata.heads] + [LENGTHS_OUT],
                dynamic_shapes=({0: batch, 1: frames}, {0: batch}),
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed on this model: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        for block, fused in zip(blocks, paths):
            block.fused = fused
    return program.model_proto


def check_against_torch(data: bytes, encoder: nn.Module, metadata: ExportMetadata,
                        shapes: Sequence[tuple[int, int]], *, where: str) -> float:
    """Run the serialised model with onnxruntime and the encoder in torch on random clips of
    ``shapes``; the largest relative difference, or an :class:`ExportError` above the tolerance."""
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    graph = RecognitionGraph(encoder).eval()
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch, frames in shapes:
        keypoints = torch.rand(batch, frames, metadata.num_joints, metadata.in_channels, generator=generator)
        keypoints[..., :2] = keypoints[..., :2] * 2 - 1  # coordinates in [-1, 1], confidences in [0, 1]
        lengths = torch.full((batch,), frames, dtype=torch.long)
        lengths[1:] = torch.randint(1, frames + 1, (batch - 1,), generator=generator)
        with torch.no_grad():
            expected = graph(keypoints, lengths)
        got = session.run(None, {KEYPOINTS: keypoints.numpy(), LENGTHS: lengths.numpy()})
        if not torch.equal(torch.from_numpy(got[-1]), expected[-1]):
            raise ExportError(f"{where}: the exported model's output lengths differ from torch's at batch {batch}, "
                              f"{frames} frames; not written")
        for head, value, reference in zip(metadata.heads, got, expected):
            difference = (torch.from_numpy(value) - reference).abs()
            worst = max(worst, float((difference / reference.abs().clamp_min(ATOL / RTOL)).max()))
            if not bool((difference <= RTOL * reference.abs() + ATOL).all()):
                raise ExportError(f"{where}: head {head!r} of the exported model differs from torch by up to "
                                  f"{float(difference.max()):.2e} at batch {batch}, {frames} frames (tolerance "
                                  f"{RTOL:g} relative); not written")
    return worst

"""Running an ``mska export`` artefact with onnxruntime (``mska predict --onnx``).

:func:`load_onnx` reads the artefact and its metadata (:mod:`mska_core.export.format`) and returns an
:class:`ExportedModel` shaped like a :class:`~mska_core.training.trained.TrainedModel` — ``model``
(with ``encoder`` and ``decoder``), ``config``, ``vocabularies`` — so that the clip reading, frame
selection, windows and CTC decoding of ``mska predict`` run unchanged on it. Its encoder returns the
heads' log-probabilities as logits (CTC decoding takes the log-softmax again, which leaves
log-probabilities as they are); it has no decoder, since the translation decoder is not exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import DataError, ExportError
from mska_core.export.format import KEYPOINTS, LENGTHS, ExportMetadata


class OnnxEncoder:
    """An exported graph behind the encoder's interface: ``encoder(ClipBatch) -> EncoderOutput`` (with
    ``logits``, ``lengths`` and ``mask``; no stream or gloss features) and ``output_length``."""

    def __init__(self, session: Any, metadata: ExportMetadata) -> None:
        self.session = session
        self.metadata = metadata
        self.heads = metadata.heads
        self.layout = metadata.layout
        self.num_joints = metadata.num_joints

    def output_length(self, length: Any) -> Any:
        return self.metadata.output_length(length)

    def __call__(self, clips: Any) -> Any:
        import numpy as np
        import torch

        from mska_core.encoder import EncoderOutput
        from mska_core.encoder.layers import frame_mask

        if clips.crops:
            raise DataError("the exported model reads keypoints only, but the batch has crops")
        keypoints = clips.keypoints.detach().cpu().float()
        if keypoints.dim() != 4 or keypoints.shape[2:] != (self.num_joints, self.metadata.in_channels):
            raise DataError(f"keypoints of shape {tuple(keypoints.shape)}; the exported model reads [B, T, "
                            f"{self.num_joints}, {self.metadata.in_channels}] (layout {self.layout!r})")
        outputs = self.session.run(None, {KEYPOINTS: keypoints.numpy(),
                                          LENGTHS: clips.lengths.detach().cpu().numpy().astype(np.int64)})
        logits = {head: torch.from_numpy(value) for head, value in zip(self.heads, outputs)}
        lengths = torch.from_numpy(outputs[-1])
        return EncoderOutput(stream_features={}, head_inputs={}, lengths=lengths, logits=logits,
                             gloss_features={}, mask=frame_mask(lengths, int(outputs[0].shape[1])))


@attrs.frozen
class OnnxRecognizer:
    """The model side of an :class:`ExportedModel`: the encoder and no text decoder."""

    encoder: OnnxEncoder
    decoder: None = None


@attrs.frozen
class ExportedModel:
    """An ``mska export`` artefact ready to run: ``model``, the run's ``config`` and ``vocabularies``
    (from the metadata), ``metadata`` and ``path``."""

    model: OnnxRecognizer
    config: Any
    vocabularies: Any
    metadata: ExportMetadata
    path: Path


def load_onnx(path: str | Path) -> ExportedModel:
    """Open an ``mska export`` artefact with onnxruntime (CPU); an :class:`~mska_core.errors.ExportError`
    when onnxruntime is missing or the file is not such an artefact."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX model {str(path)!r} not found; write one with mska export --checkpoint F --onnx OUT")
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("running an ONNX model needs onnxruntime: pip install 'mska-core[onnx]'") from None

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise ExportError(f"{path}: onnxruntime cannot read it ({str(exc).splitlines()[0][:200]}); is it an ONNX "
                          "model written by mska export?") from None
    metadata = ExportMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
    from mska_core.config import config_from_dict
    from mska_core.data.vocab import Vocabularies

    config = config_from_dict(metadata.config, source=f"{path} (mska.config)")
    return ExportedModel(model=OnnxRecognizer(OnnxEncoder(session, metadata)), config=config,
                         vocabularies=Vocabularies.from_dict(metadata.vocabularies), metadata=metadata, path=path)

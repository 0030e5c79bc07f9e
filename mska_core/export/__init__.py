"""Deployable artefacts of a trained model and its features for other tasks.

- :func:`export_onnx` (:mod:`mska_core.export.onnx`): the keypoint encoder and recognition heads of a
  ``mska train`` checkpoint as one ONNX graph, checked with onnxruntime (``mska export``);
- :func:`load_onnx` (:mod:`mska_core.export.runtime`): such an artefact run with onnxruntime behind
  the encoder's interface (``mska predict --onnx``);
- :func:`embed` (:mod:`mska_core.export.embed`): the fused per-frame features and the pooled clip
  vector of clips (``mska embed``).

The artefact's names and metadata are defined once, in :mod:`mska_core.export.format`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mska_core.lazy import lazy_attributes

_LAZY = {
    "export_onnx": "mska_core.export.onnx",
    "load_onnx": "mska_core.export.runtime",
    "embed": "mska_core.export.embed",
    "embed_batch": "mska_core.export.embed",
    "Embedding": "mska_core.export.embed",
}

if TYPE_CHECKING:  # pragma: no cover
    from mska_core.export.embed import Embedding, embed, embed_batch
    from mska_core.export.onnx import export_onnx
    from mska_core.export.runtime import load_onnx

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = ["Embedding", "embed", "embed_batch", "export_onnx", "load_onnx"]

"""The ONNX artefact of ``mska export``, defined once: its inputs, outputs and metadata.

The writer (:mod:`mska_core.export.onnx`) and the reader (:mod:`mska_core.export.runtime`) both
import this module, so the names below are the artefact's contract.

Graph:

- inputs ``keypoints`` float32 ``[B, T, J, 3]`` (x, y, confidence, normalised as the metadata's
  ``mska.preprocessing`` says) and ``lengths`` int64 ``[B]``; ``B`` and ``T`` are dynamic;
- outputs ``log_probs.<head>`` float32 ``[B, T', V]`` for every recognition head, in the order of
  ``mska.heads`` (log-softmax of the head's gloss logits, blank at index 0), then ``lengths_out``
  int64 ``[B]`` (valid output frames per clip, ``T'`` = the encoder's downsampling of ``T``).

Metadata (``metadata_props``, every value a string, JSON where it is structured):

=========================  ==========================================================================
``mska.format``            ``mska-onnx``
``mska.format_version``    ``1``
``mska.heads``             the heads, in output order (JSON list)
``mska.gloss_vocabulary``  the gloss tokens by id, blank first (JSON list)
``mska.layout``            the keypoint layout (``coco_wholebody``), ``mska.num_joints`` its joints
``mska.preprocessing``     what a clip must look like before it goes in (JSON, see :class:`Preprocessing`)
``mska.temporal``          the blocks' kernels and strides in time (JSON), for output lengths and windows
``mska.translation``       ``none`` (no decoder was trained) or ``not exported``
``mska.vocabularies``      the gloss and text vocabularies as a checkpoint stores them (JSON)
``mska.config``            the resolved config of the run (JSON)
``mska.source``            the checkpoint it was exported from; ``mska.mska_core_version``
=========================  ==========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from mska_core.errors import ExportError

FORMAT = "mska-onnx"
FORMAT_VERSION = 1
KEYPOINTS, LENGTHS = "keypoints", "lengths"
LENGTHS_OUT = "lengths_out"
TRANSLATION_NONE, TRANSLATION_NOT_EXPORTED = "none", "not exported"


def head_output(head: str) -> str:
    """The graph output that holds head ``head``'s gloss log-probabilities."""
    return f"log_probs.{head}"


@attrs.frozen
class Preprocessing:
    """What a clip must look like before it enters the graph.

    - ``normalize``: pixel coordinates are mapped to [-1, 1] as training data was (``x / width * 2 - 1``,
      ``(height - y) / height * 2 - 1``, confidence kept) with ``frame_width`` and ``frame_height``;
      false when the training data was already normalised.
    - ``frame_multiple``: evaluation keeps a multiple of this many frames (the first ones; a clip
      shorter than it repeats its last frame).
    - ``missing_points``: NaN/inf coordinates are read as 0, like an undetected joint.
    """

    normalize: bool
    frame_width: float
    frame_height: float
    frame_multiple: int
    missing_points: str = "NaN and inf read as 0"


@attrs.frozen
class ExportMetadata:
    """The ``mska.*`` metadata of an exported model (see the module's table)."""

    heads: tuple[str, ...]
    layout: str
    num_joints: int
    in_channels: int
    preprocessing: Preprocessing
    temporal_kernels: tuple[int, ...]
    strides: tuple[int, ...]
    translation: str
    vocabularies: Mapping[str, Any]
    config: Mapping[str, Any]
    source: str
    mska_core_version: str

    @property
    def gloss_vocabulary(self) -> list[str]:
        return list(self.vocabularies["gloss"]["tokens"])

    def output_length(self, length: Any) -> Any:
        """Output frames for ``length`` input frames (an int or a tensor), as the encoder computes them."""
        for kernel, stride in zip(self.temporal_kernels, self.strides):
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        return length

    def to_props(self) -> dict[str, str]:
        """The metadata as ONNX ``metadata_props`` (strings)."""
        return {
            "mska.format": FORMAT,
            "mska.format_version": str(FORMAT_VERSION),
            "mska.heads": json.dumps(list(self.heads)),
            "mska.gloss_vocabulary": json.dumps(self.gloss_vocabulary),
            "mska.layout": self.layout,
            "mska.num_joints": str(self.num_joints),
            "mska.in_channels": str(self.in_channels),
            "mska.preprocessing": json.dumps(attrs.asdict(self.preprocessing)),
            "mska.temporal": json.dumps({"kernels": list(self.temporal_kernels), "strides": list(self.strides)}),
            "mska.translation": self.translation,
            "mska.vocabularies": json.dumps(dict(self.vocabularies)),
            "mska.config": json.dumps(dict(self.config)),
            "mska.source": self.source,
            "mska.mska_core_version": self.mska_core_version,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str) -> ExportMetadata:
        """Read the metadata back; an :class:`~mska_core.errors.ExportError` naming ``where`` when the
        file is not an ``mska export`` artefact of a version this one reads."""
        if props.get("mska.format") != FORMAT:
            raise ExportError(f"{where}: not an ONNX model written by mska export (no mska.format = {FORMAT!r} "
                              "in its metadata); export the checkpoint with mska export --checkpoint F --onnx OUT")
        version = props.get("mska.format_version", "?")
        if version != str(FORMAT_VERSION):
            raise ExportError(f"{where}: mska-onnx format version {version}, this mska-core reads version "
                              f"{FORMAT_VERSION}; export the checkpoint again with this version")
        try:
            temporal = json.loads(props["mska.temporal"])
            return cls(
                heads=tuple(json.loads(props["mska.heads"])), layout=props["mska.layout"],
                num_joints=int(props["mska.num_joints"]), in_channels=int(props["mska.in_channels"]),
                preprocessing=Preprocessing(**json.loads(props["mska.preprocessing"])),
                temporal_kernels=tuple(temporal["kernels"]), strides=tuple(temporal["strides"]),
                translation=props["mska.translation"], vocabularies=json.loads(props["mska.vocabularies"]),
                config=json.loads(props["mska.config"]), source=props.get("mska.source", ""),
                mska_core_version=props.get("mska.mska_core_version", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{where}: its mska metadata is damaged ({type(exc).__name__}: {exc}); export "
                              "the checkpoint again") from None

"""What goes into :class:`~mska_core.encoder.MSKAEncoder` and what comes out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import Tensor


@attrs.frozen
class ClipBatch:
    """A batch of clips for :class:`~mska_core.encoder.MSKAEncoder`.

    - ``keypoints``: float ``[B, T, J, C]`` (x, y, confidence) in the model's layout; frames past a
      clip's length are padding.
    - ``lengths``: long ``[B]``, the number of real frames of each clip.
    - ``crops``: optional ``{stream: [B, T, 3, H, W]}`` image crops for streams with a crop backbone.
    - ``crop_present``: optional ``{stream: bool [B] or [B, T]}``: false for a clip that has no crops
      for the stream (``[B]``), or per frame for a frame whose part was not found (``[B, T]``: the
      crop there is a held one, ``boxes/ID.npz``'s missing flag); masked crops never reach the crop
      backbone. A stream not in it has crops for every frame.
    """

    keypoints: Tensor
    lengths: Tensor
    crops: Mapping[str, Tensor] | None = None
    crop_present: Mapping[str, Tensor] | None = None

    def to(self, device: Any, *, non_blocking: bool = False) -> ClipBatch:
        """The same batch on ``device``."""
        def move(tensors: Mapping[str, Tensor] | None) -> dict[str, Tensor] | None:
            return None if tensors is None else {k: v.to(device, non_blocking=non_blocking) for k, v in tensors.items()}

        return ClipBatch(self.keypoints.to(device, non_blocking=non_blocking),
                         self.lengths.to(device, non_blocking=non_blocking), move(self.crops),
                         move(self.crop_present))

    def pin_memory(self) -> ClipBatch:
        """The batch in pinned memory (a DataLoader with ``pin_memory=True`` calls this)."""
        def pin(tensors: Mapping[str, Tensor] | None) -> dict[str, Tensor] | None:
            return None if tensors is None else {k: v.pin_memory() for k, v in tensors.items()}

        return ClipBatch(self.keypoints.pin_memory(), self.lengths.pin_memory(), pin(self.crops),
                         pin(self.crop_present))


@attrs.frozen
class EncoderOutput:
    """What :meth:`MSKAEncoder.forward <mska_core.encoder.MSKAEncoder.forward>` returns.

    - ``stream_features``: ``{stream: [B, T', C]}`` per-stream features (joint-pooled keypoint
      features, concatenated with crop features where the stream has a crop branch).
    - ``head_inputs``: ``{head: [B, T', D]}`` the concatenated stream features each head reads.
    - ``lengths``: ``[B]`` valid output frames per clip, after the temporal downsampling.
    - ``logits``: ``{head: [B, T', V]}`` gloss logits (CTC, blank is index 0 by convention).
    - ``gloss_features``: ``{head: [B, T', H]}`` VisualHead features before the classifier.
    - ``mask``: ``[B, T']`` bool, true on valid output frames.
    """

    stream_features: dict[str, Tensor]
    head_inputs: dict[str, Tensor]
    lengths: Tensor
    logits: dict[str, Tensor]
    gloss_features: dict[str, Tensor]
    mask: Tensor

    def distillation_targets(self) -> Tensor:
        """``[B, T', V]``: the mean of the heads' softmax probabilities, detached (float32)."""
        probabilities = [logits.float().softmax(-1) for logits in self.logits.values()]
        return torch.stack(probabilities).mean(0).detach()

"""Features of a trained encoder for other tasks (retrieval, sign spotting): ``mska embed``.

A clip's *per-frame features* are the fused features one recognition head reads — the concatenation
of its streams' features, ``[T', D]`` at the encoder's output rate (``T'`` = ``T / 4`` for the paper's
blocks) — and its *clip vector* is their mean over the clip's valid frames, ``[D]``. The head's own
features before its classifier (``gloss_frames`` ``[T', H]``, the features the translation decoder
reads) and their mean come along. The head is ``fuse`` when the model has one, else the head that
reads the most streams; any head can be named.

:func:`embed` is the Python entry point for one clip of keypoints; :func:`embed_batch` works on a
prepared :class:`~mska_core.encoder.ClipBatch` (crops included, for models with crop streams).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from mska_core.errors import DataError


@attrs.frozen
class Embedding:
    """The features of one clip.

    - ``head``: the head whose input the features are; ``streams``: the streams it concatenates;
    - ``frames``: ``[T', D]`` fused per-frame features (valid frames only); ``clip``: ``[D]`` their mean;
    - ``gloss_frames``: ``[T', H]`` the head's features before its classifier; ``gloss_clip``: ``[H]``.
    """

    head: str
    streams: tuple[str, ...]
    frames: Tensor
    clip: Tensor
    gloss_frames: Tensor
    gloss_clip: Tensor

    def summary(self) -> dict[str, Any]:
        """Shapes and the clip vector (``vector``) as plain data (``mska embed --json``)."""
        return {"head": self.head, "streams": list(self.streams), "feature_frames": int(self.frames.shape[0]),
                "dim": int(self.frames.shape[1]), "gloss_dim": int(self.gloss_frames.shape[1]),
                "vector": [round(float(v), 6) for v in self.clip]}


def default_head(encoder: Any) -> str:
    """``fuse`` when the encoder has it, else the head that reads the most streams (the first of equals)."""
    heads = dict(encoder.head_streams)
    if "fuse" in heads:
        return "fuse"
    return max(heads, key=lambda name: len(heads[name]))


def check_head(encoder: Any, head: str | None) -> str:
    """``head``, or the default one; a :class:`~mska_core.errors.DataError` for a head the model lacks."""
    if head is None:
        return default_head(encoder)
    if head not in encoder.head_streams:
        raise DataError(f"--head {head!r}: the model has heads {', '.join(encoder.head_streams)}")
    return head


@torch.no_grad()
def embed_batch(encoder: Any, clips: Any, *, head: str | None = None) -> list[Embedding]:
    """The :class:`Embedding` of every clip of ``clips`` (a :class:`~mska_core.encoder.ClipBatch`,
    frames prepared as evaluation prepares them), through ``encoder`` in eval mode."""
    head = check_head(encoder, head)
    encoder.eval()
    encoded = encoder(clips)
    features = encoded.head_inputs[head].float()  # [B, T', D]
    gloss = encoded.gloss_features[head].float()  # [B, T', H]
    out = []
    for i, length in enumerate(encoded.lengths.tolist()):
        frames, gloss_frames = features[i, :length].cpu(), gloss[i, :length].cpu()
        out.append(Embedding(head=head, streams=tuple(encoder.head_streams[head]), frames=frames,
                             clip=frames.mean(0), gloss_frames=gloss_frames, gloss_clip=gloss_frames.mean(0)))
    return out


def embed(model: Any, keypoints: Any, *, head: str | None = None, registry: Any = None) -> Embedding:
    """The :class:`Embedding` of one clip of ``keypoints`` ``[T, J, 3]`` (a tensor or array in the
    coordinates the model was trained on: normalise pixels with
    :func:`mska_core.data.pickles.normalize_pixels` when the run's ``[data] normalize`` is on).

    ``model`` is a ``mska train`` checkpoint (``best.pt``/``last.pt``) or a loaded
    :class:`~mska_core.training.trained.TrainedModel`. Every frame is encoded (trimmed to a multiple
    of 4, as evaluation does). A model with crop streams needs crops: use :func:`embed_batch` or
    ``mska embed``. ``registry`` defaults to the process-wide one.
    """
    from mska_core.encoder import ClipBatch
    from mska_core.evaluation.windows import prediction_frames

    trained = model
    if isinstance(model, (str, Path)):
        from mska_core.training.trained import load_trained

        if registry is None:
            from mska_core.registry import get_registry

            registry = get_registry()
        trained = load_trained(model, registry=registry)
    points = torch.as_tensor(keypoints, dtype=torch.float32)
    if points.dim() != 3:
        raise DataError(f"keypoints of shape {tuple(points.shape)}; expected one clip [T, J, 3]")
    points = points[prediction_frames(int(points.shape[0]), trained.config.data.augment)]
    encoder = trained.model.encoder
    device = next(encoder.parameters()).device
    clips = ClipBatch(points.unsqueeze(0).to(device), torch.tensor([points.shape[0]], device=device))
    return embed_batch(encoder, clips, head=head)[0]


def save_embeddings(path: str | Path, names: Sequence[str], embeddings: Sequence[Embedding]) -> Path:
    """Write ``embeddings`` to ``path`` (``.npz``, atomically): ``names`` ``[N]``, ``head``, ``clips``
    ``[N, D]``, ``gloss_clips`` ``[N, H]``, and per clip ``i`` ``frames_i`` ``[T'_i, D]`` and
    ``gloss_frames_i`` ``[T'_i, H]``."""
    import numpy as np

    from mska_core.io import atomic_open

    arrays: dict[str, Any] = {
        "names": np.array(list(names)), "head": np.array(embeddings[0].head if embeddings else ""),
        "clips": torch.stack([e.clip for e in embeddings]).numpy() if embeddings else np.zeros((0, 0), np.float32),
        "gloss_clips": (torch.stack([e.gloss_clip for e in embeddings]).numpy() if embeddings
                        else np.zeros((0, 0), np.float32)),
    }
    for i, e in enumerate(embeddings):
        arrays[f"frames_{i}"] = e.frames.numpy()
        arrays[f"gloss_frames_{i}"] = e.gloss_frames.numpy()
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)

"""Batching prepared clips into the record that the training step and every loss receive."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs


@attrs.frozen
class TrainBatch:
    """A batch of clips with their targets; what ``loss.forward(output, batch)`` receives.

    - ``clips``: the encoder's :class:`~mska_core.encoder.ClipBatch` (keypoints ``[B, T, J, 3]``,
      lengths ``[B]``, crops or ``None``).
    - ``gloss_targets`` long ``[B, S]`` (padded with the blank, 0) and ``gloss_lengths`` ``[B]``: the
      CTC targets.
    - ``text_input`` / ``text_target`` long ``[B, L]``: the translation shifted right (``<bos>`` first)
      and the target (``<eos>`` last), padded with ``<pad>``; ``text_lengths`` ``[B]`` counts
      ``<eos>``.
    - ``names``, ``glosses``, ``texts``, ``indices``: the clips' names, reference glosses and
      translations, and their indices in the split.
    """

    clips: Any
    gloss_targets: Any
    gloss_lengths: Any
    text_input: Any
    text_target: Any
    text_lengths: Any
    names: tuple[str, ...] = attrs.field(converter=tuple)
    glosses: tuple[str, ...] = attrs.field(converter=tuple)
    texts: tuple[str, ...] = attrs.field(converter=tuple)
    indices: tuple[int, ...] = attrs.field(converter=tuple)

    @property
    def size(self) -> int:
        return len(self.names)

    def to(self, device: Any, *, non_blocking: bool = False) -> TrainBatch:
        """The batch on ``device`` (``non_blocking`` copies from pinned memory asynchronously)."""
        return attrs.evolve(
            self,
            clips=self.clips.to(device, non_blocking=non_blocking),
            gloss_targets=self.gloss_targets.to(device, non_blocking=non_blocking),
            gloss_lengths=self.gloss_lengths.to(device, non_blocking=non_blocking),
            text_input=self.text_input.to(device, non_blocking=non_blocking),
            text_target=self.text_target.to(device, non_blocking=non_blocking),
            text_lengths=self.text_lengths.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> TrainBatch:
        """The batch in pinned memory; a DataLoader with ``pin_memory=True`` calls this in its pinning
        thread, so that copies to a GPU overlap the step."""
        return attrs.evolve(
            self,
            clips=self.clips.pin_memory(),
            gloss_targets=self.gloss_targets.pin_memory(),
            gloss_lengths=self.gloss_lengths.pin_memory(),
            text_input=self.text_input.pin_memory(),
            text_target=self.text_target.pin_memory(),
            text_lengths=self.text_lengths.pin_memory(),
        )


def pad_clips(sequences: Sequence[Any]) -> tuple[Any, Any]:
    """``[T_i, ...]`` tensors padded to ``[B, T_max, ...]`` by repeating each clip's last frame."""
    import torch

    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.long)
    longest = int(lengths.max())
    padded = [
        torch.cat([s, s[-1:].expand(longest - s.shape[0], *s.shape[1:])]) if s.shape[0] < longest else s
        for s in sequences
    ]
    return torch.stack(padded), lengths


def normalize_crops(crops: Any, normalization: Any = None) -> Any:
    """uint8 crops ``[..., 3, H, W]`` to floats normalised with ``normalization`` (a
    :class:`~mska_core.backbones.normalization.CropNormalization`: the backbone's own mean and
    deviation, see :func:`~mska_core.backbones.normalization.crop_normalization`); ``None`` uses
    ImageNet's."""
    import torch

    from mska_core.data.crops import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(normalization.mean if normalization is not None else IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(normalization.std if normalization is not None else IMAGENET_STD).view(3, 1, 1)
    return (crops.float() / 255.0 - mean) / std


def _present(items: Sequence[Any], stream: str, frames: int) -> Any:
    """bool ``[B, T]``: the frames of ``stream`` whose crops the encoder may read."""
    import torch

    present = torch.ones(len(items), frames, dtype=torch.bool)
    for row, item in enumerate(items):
        if stream in getattr(item, "missing_crops", ()):
            present[row] = False
            continue
        found = (getattr(item, "crop_found", None) or {}).get(stream)
        if found is not None:
            present[row, : len(found)] = torch.as_tensor(found, dtype=torch.bool)
    return present


def collate(items: Sequence[Any], *, blank: int = 0, pad: int = 0, bos: int = 1, eos: int = 2,
            normalization: Mapping[str, Any] | None = None) -> TrainBatch:
    """Batch :class:`~mska_core.data.datasets.ClipItem` records.

    Crops are normalised per stream with ``normalization`` (``{stream: CropNormalization}``; a stream
    not in it gets ImageNet's). A clip that lists a stream in ``missing_crops`` is marked absent for
    it (``ClipBatch.crop_present``, bool ``[B]`` per stream), and when some clip's ``crop_found`` marks
    frames where the part was not found, per frame (bool ``[B, T]``), so the encoder masks that
    stream's crops there.
    """
    import torch

    from mska_core.encoder import ClipBatch

    keypoints, lengths = pad_clips([item.keypoints for item in items])
    crops = None
    present = None
    normalization = normalization or {}
    if items[0].crops:
        crops = {stream: normalize_crops(pad_clips([item.crops[stream] for item in items])[0],
                                         normalization.get(stream))
                 for stream in items[0].crops}
        if any(getattr(item, "crop_found", None) for item in items):  # per frame
            present = {stream: _present(items, stream, keypoints.shape[1]) for stream in crops}
        elif any(getattr(item, "missing_crops", ()) for item in items):  # per clip
            present = {stream: torch.tensor([stream not in getattr(item, "missing_crops", ()) for item in items])
                       for stream in crops}
    gloss_lengths = torch.tensor([len(item.gloss_ids) for item in items], dtype=torch.long)
    gloss_targets = torch.full((len(items), max(1, int(gloss_lengths.max()))), blank, dtype=torch.long)
    for row, item in enumerate(items):
        gloss_targets[row, : len(item.gloss_ids)] = torch.tensor(item.gloss_ids, dtype=torch.long)
    text_lengths = torch.tensor([len(item.text_ids) + 1 for item in items], dtype=torch.long)
    width = int(text_lengths.max())
    text_input = torch.full((len(items), width), pad, dtype=torch.long)
    text_target = torch.full((len(items), width), pad, dtype=torch.long)
    for row, item in enumerate(items):
        ids = torch.tensor(item.text_ids, dtype=torch.long)
        text_input[row, 0] = bos
        text_input[row, 1 : len(ids) + 1] = ids
        text_target[row, : len(ids)] = ids
        text_target[row, len(ids)] = eos
    return TrainBatch(
        clips=ClipBatch(keypoints=keypoints, lengths=lengths, crops=crops, crop_present=present),
        gloss_targets=gloss_targets,
        gloss_lengths=gloss_lengths,
        text_input=text_input,
        text_target=text_target,
        text_lengths=text_lengths,
        names=[item.name for item in items],
        glosses=[item.gloss for item in items],
        texts=[item.text for item in items],
        indices=[item.index for item in items],
    )


class Collator:
    """A picklable ``collate_fn`` bound to a run's special token ids and its crop backbones'
    normalisation (for DataLoader workers).

    ``normalization`` is ``{stream: CropNormalization}``, what
    :func:`mska_core.backbones.normalization.crop_normalization` gives for the model the batches are
    for; a stream not in it gets ImageNet's mean and deviation.
    """

    def __init__(self, vocabularies: Any, normalization: Mapping[str, Any] | None = None) -> None:
        self.ids = {"blank": vocabularies.blank, "pad": vocabularies.pad, "bos": vocabularies.bos,
                    "eos": vocabularies.eos}
        self.normalization = dict(normalization or {})

    def __call__(self, items: Sequence[Any]) -> TrainBatch:
        return collate(items, **self.ids, normalization=self.normalization)

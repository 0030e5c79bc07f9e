"""Batching prepared clips into the record that the training step and every loss receive."""

from __future__ import annotations

from collections.abc import Sequence
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

    def to(self, device: Any) -> TrainBatch:
        """The batch on ``device``."""
        return attrs.evolve(
            self,
            clips=self.clips.to(device),
            gloss_targets=self.gloss_targets.to(device),
            gloss_lengths=self.gloss_lengths.to(device),
            text_input=self.text_input.to(device),
            text_target=self.text_target.to(device),
            text_lengths=self.text_lengths.to(device),
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


def normalize_crops(crops: Any) -> Any:
    """uint8 crops ``[..., 3, H, W]`` to floats normalised with the ImageNet mean and deviation, as
    the crop encoders were pretrained."""
    import torch

    from mska_core.data.crops import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (crops.float() / 255.0 - mean) / std


def collate(items: Sequence[Any], *, blank: int = 0, pad: int = 0, bos: int = 1, eos: int = 2) -> TrainBatch:
    """Batch :class:`~mska_core.data.datasets.ClipItem` records."""
    import torch

    from mska_core.encoder import ClipBatch

    keypoints, lengths = pad_clips([item.keypoints for item in items])
    crops = None
    if items[0].crops:
        crops = {stream: normalize_crops(pad_clips([item.crops[stream] for item in items])[0])
                 for stream in items[0].crops}
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
        clips=ClipBatch(keypoints=keypoints, lengths=lengths, crops=crops),
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
    """A picklable ``collate_fn`` bound to a run's special token ids (for DataLoader workers)."""

    def __init__(self, vocabularies: Any) -> None:
        self.ids = {"blank": vocabularies.blank, "pad": vocabularies.pad, "bos": vocabularies.bos,
                    "eos": vocabularies.eos}

    def __call__(self, items: Sequence[Any]) -> TrainBatch:
        return collate(items, **self.ids)

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
    - ``text_input`` / ``text_target`` long ``[B, L]``: the decoder's inputs and targets of each
      translation under teacher forcing (``tokenizer.teacher_forcing``, :mod:`mska_core.text`), the
      inputs padded with the tokenizer's ``pad_id`` and the targets with
      :data:`~mska_core.text.IGNORE_INDEX`; ``text_lengths`` ``[B]`` counts the targets. Without a
      text decoder they are ``[B, 0]`` and the lengths 0.
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


def text_tensors(texts: Sequence[str], tokenizer: Any) -> tuple[Any, Any, Any]:
    """``(text_input, text_target, text_lengths)`` of ``texts`` through ``tokenizer`` (see
    :class:`TrainBatch`); empty ``[B, 0]`` tensors when ``tokenizer`` is ``None``."""
    import torch

    from mska_core.text import IGNORE_INDEX

    if tokenizer is None:
        empty = torch.zeros(len(texts), 0, dtype=torch.long)
        return empty, empty.clone(), torch.zeros(len(texts), dtype=torch.long)
    pairs = [tokenizer.teacher_forcing(text) for text in texts]
    text_lengths = torch.tensor([len(target) for _, target in pairs], dtype=torch.long)
    width = max(1, int(text_lengths.max()))
    text_input = torch.full((len(texts), width), tokenizer.pad_id, dtype=torch.long)
    text_target = torch.full((len(texts), width), IGNORE_INDEX, dtype=torch.long)
    for row, (inputs, target) in enumerate(pairs):
        if len(inputs) != len(target):
            raise ValueError(f"the text tokenizer gave {len(inputs)} decoder inputs for {len(target)} targets; "
                             "teacher_forcing must return two lists of one length")
        text_input[row, : len(inputs)] = torch.tensor(inputs, dtype=torch.long)
        text_target[row, : len(target)] = torch.tensor(target, dtype=torch.long)
    return text_input, text_target, text_lengths




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


def collate(items: Sequence[Any], *, blank: int = 0, tokenizer: Any = None,
            normalization: Mapping[str, Any] | None = None) -> TrainBatch:
    """Batch :class:`~mska_core.data.datasets.ClipItem` records.

    Crops are normalised per stream with ``normalization`` (``{stream: CropNormalization}``; a stream
    not in it gets ImageNet's). A clip that lists a stream in ``missing_crops`` is marked absent for
    it (``ClipBatch.crop_present``, bool ``[B]`` per stream), and when some clip's ``crop_found`` marks
    frames where the part was not found, per frame (bool ``[B, T]``), so the encoder masks that
    stream's crops there. Translations become decoder inputs and targets through ``tokenizer`` (the
    text decoder's; ``None`` without one).
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
    text_input, text_target, text_lengths = text_tensors([item.text for item in items], tokenizer)
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
    """A picklable ``collate_fn`` bound to a run's CTC blank, its text decoder's tokenizer (``None``
    without a decoder) and its crop backbones' normalisation (for DataLoader workers).

    ``normalization`` is ``{stream: CropNormalization}``, what
    :func:`mska_core.backbones.normalization.crop_normalization` gives for the model the batches are
    for; a stream not in it gets ImageNet's mean and deviation.
    """

    def __init__(self, vocabularies: Any, normalization: Mapping[str, Any] | None = None, *,
                 tokenizer: Any = None) -> None:
        self.blank = vocabularies.blank
        self.tokenizer = tokenizer
        self.normalization = dict(normalization or {})

    @classmethod
    def for_model(cls, model: Any, vocabularies: Any, normalization: Mapping[str, Any] | None = None) -> Collator:
        """The collator of a :class:`~mska_core.training.model.SignModel`: its decoder's tokenizer."""
        decoder = getattr(model, "decoder", None)
        return cls(vocabularies, normalization, tokenizer=decoder.tokenizer if decoder is not None else None)

    def __call__(self, items: Sequence[Any]) -> TrainBatch:
        return collate(items, blank=self.blank, tokenizer=self.tokenizer, normalization=self.normalization)

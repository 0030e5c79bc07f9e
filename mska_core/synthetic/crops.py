"""Synthetic crops for streams: which sprite a stream gets, and the crop source of ``mska pretrain``
when no ``--train-dir`` is given.

The sprite of a stream is the ``render_as`` of its :class:`~mska_core.records.CropRegion`, so a plugin
stream that declares ``render_as = "face"`` or ``"hand"`` gets synthetic crops with no change here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def sprite_for(stream: str, registry: Any) -> str | None:
    """The sprite (``"face"`` or ``"hand"``) drawn for ``stream``: the ``render_as`` of the crop region
    of the registered stream of that name, or of the streams of that weight group; ``None`` when none
    declares one."""
    for spec in registry.streams:
        if stream in (spec.name, spec.weight_group) and spec.crop_region and spec.crop_region.render_as:
            return spec.crop_region.render_as
    return None


class SyntheticCrops:
    """``count`` synthetic ``kind`` crops (``"face"`` or ``"hand"``, see
    :func:`mska_core.synthetic.render.synthetic_crop`), drawn once on first use and kept in memory."""

    def __init__(self, kind: str, count: int, size: int, seed: int, *, mirror: bool = False) -> None:
        self.kind, self.count, self.size, self.seed, self.mirror = kind, count, size, seed, mirror
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.count

    def describe(self) -> str:
        return f"{self.count} synthetic {self.kind} crops of {self.size} px (seed {self.seed})"

    def load(self, index: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        from mska_core.synthetic.render import synthetic_crop

        if index not in self._cache:
            self._cache[index] = synthetic_crop(self.kind, index, self.size, self.seed, mirror=self.mirror)
        return self._cache[index], ()

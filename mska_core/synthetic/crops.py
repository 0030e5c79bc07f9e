"""The crop source of ``mska pretrain`` when no ``--train-dir`` is given: rendered faces or hands."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class SyntheticCrops:
    """``count`` rendered crops of ``stream`` (faces, or hands for the ``hand`` weight group),
    drawn once on first use and kept in memory."""

    def __init__(self, stream: str, count: int, size: int, seed: int) -> None:
        self.stream, self.count, self.size, self.seed = stream, count, size, seed
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.count

    def describe(self) -> str:
        from mska_core.synthetic.render import crop_kind

        return f"{self.count} synthetic {crop_kind(self.stream)} crops of {self.size} px (seed {self.seed})"

    def load(self, index: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        from mska_core.synthetic.render import synthetic_crop

        if index not in self._cache:
            self._cache[index] = synthetic_crop(self.stream, index, self.size, self.seed)
        return self._cache[index], ()

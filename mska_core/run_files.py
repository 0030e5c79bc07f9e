"""The files of a run folder, named once for every loop that writes one and every command that reads one.

A fine-tuning run (``mska train``) and a DINO pretraining run (``mska pretrain``) each write a folder:

- ``config.toml`` (:data:`CONFIG`): the resolved configuration;
- ``metrics.jsonl`` (:data:`METRICS`): one JSON record a line, appended;
- the training state a ``--resume`` continues from: ``last.pt`` (:data:`LAST`) for fine-tuning,
  ``checkpoint.pt`` (:data:`PRETRAIN_STATE`) for pretraining;
- ``best.pt`` (:data:`BEST`): fine-tuning's best weights on the dev split;
- ``skipped.txt`` (:data:`SKIPPED`): pretraining's crop files that could not be read;
- ``.mska.lock`` (:data:`LOCK`): the lock held while a run writes the folder.

:class:`RunFiles` gives the paths of one folder. ``mska inspect`` and ``mska plot`` read run folders
through the same names.
"""

from __future__ import annotations

from pathlib import Path

import attrs

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
LAST = "last.pt"
BEST = "best.pt"
PRETRAIN_STATE = "checkpoint.pt"
SKIPPED = "skipped.txt"
LOCK = ".mska.lock"


@attrs.frozen
class RunFiles:
    """The paths of one run folder; ``state_name`` is the file of its training state (:data:`LAST` for
    fine-tuning, :data:`PRETRAIN_STATE` for pretraining). ``suffix`` is the file suffix of fine-tuning's
    checkpoints in the format ``[run] format`` names (``.pt``, ``.safetensors``): it replaces the
    ``.pt`` of :data:`LAST` and :data:`BEST`."""

    folder: Path = attrs.field(converter=Path)
    state_name: str = LAST
    suffix: str = ".pt"

    @property
    def config(self) -> Path:
        return self.folder / CONFIG

    @property
    def metrics(self) -> Path:
        return self.folder / METRICS

    @property
    def state(self) -> Path:
        return self.folder / self._with_suffix(self.state_name)

    @property
    def best(self) -> Path:
        return self.folder / self._with_suffix(BEST)

    def _with_suffix(self, name: str) -> str:
        return name.removesuffix(".pt") + self.suffix if name in (LAST, BEST) else name

    @property
    def skipped(self) -> Path:
        return self.folder / SKIPPED

    @property
    def lock(self) -> Path:
        return self.folder / LOCK

"""Weights & Biases for mska-core: ``[run] loggers = ["wandb"]``.

An example third-party experiment tracker. It implements one hook, ``mska_loggers``, returning a
``LoggerSpec`` whose ``build(run_dir, config)`` starts a W&B run; mska-core then hands the logger
every record it writes to ``metrics.jsonl`` (rank 0 only) and closes it when the run ends.

- The W&B run is named after ``[run] name``, keeps its files in the run folder (``RUN/wandb``) and
  carries the resolved config.
- ``WANDB_PROJECT`` chooses the project (default ``mska``); ``WANDB_MODE=offline`` keeps everything
  on disk for a later ``wandb sync``, as W&B itself documents.
- Every number of a record is logged at the record's step under ``train/…`` (a training step) or
  ``dev/…`` (an evaluation of the dev split), as the built-in TensorBoard logger names them.

``wandb`` is imported inside ``build``: listing plugins never imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mska_core import LoggerSpec, hookimpl

__version__ = "0.1.0"

#: Record fields that are positions, not figures.
POSITIONS = ("step", "epoch")


def figures(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one ``metrics.jsonl`` record, keyed ``train/...`` or ``dev/...``."""
    kind = record.get("kind", "pretrain")
    prefix = record.get("split", kind) if kind == "eval" else kind
    return {f"{prefix}/{key}": float(value) for key, value in record.items()
            if key not in POSITIONS and isinstance(value, (int, float)) and not isinstance(value, bool)}


class WandbLogger:
    """One W&B run for one mska-core run."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def log(self, record: dict[str, Any], step: int) -> None:
        self.run.log(figures(record), step=step)

    def close(self) -> None:
        self.run.finish()


def build(run_dir: Path, config: Any) -> WandbLogger:
    import wandb

    from mska_core.config import unstructure

    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "mska"), name=config.run.name, dir=str(folder),
                     config=unstructure(config))
    return WandbLogger(run)


@hookimpl
def mska_loggers() -> list[LoggerSpec]:
    return [LoggerSpec(name="wandb", build=build, description="Weights & Biases (WANDB_MODE=offline works)")]

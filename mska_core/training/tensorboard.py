"""The built-in ``tensorboard`` logger (``[run] loggers = ["tensorboard"]``), behind the
``tensorboard`` extra.

Event files go to ``RUN/tensorboard``. Every number of a record becomes a scalar at the record's
``step``, its tag prefixed by what the record is: ``train/loss``, ``train/loss/ctc``, ``train/lr``,
``train/clips_per_s`` for training steps; ``dev/wer``, ``dev/wer/fuse``, ``dev/bleu4`` for an
evaluation of the dev split; the record's ``kind`` otherwise (a DINO pretraining step has none and
logs under ``pretrain/``). ``step`` and ``epoch`` are not logged as scalars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mska_core.errors import ConfigError
from mska_core.hookspecs import hookimpl
from mska_core.records import LoggerSpec

#: The folder of the run that holds the event files.
FOLDER = "tensorboard"
#: Record fields that are positions, not figures.
POSITIONS = ("step", "epoch")


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The scalars of one ``metrics.jsonl`` record, by tag."""
    kind = record.get("kind", "pretrain")
    prefix = record.get("split", kind) if kind == "eval" else kind
    return {f"{prefix}/{key}": float(value) for key, value in record.items()
            if key not in POSITIONS and isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardLogger:
    """Writes the records of one run as TensorBoard scalars (``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, record: dict[str, Any], step: int) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def build(run_dir: Path, config: Any) -> TensorBoardLogger:
    """The logger of the run in ``run_dir``; a :class:`~mska_core.errors.ConfigError` naming the extra
    when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise ConfigError("run.loggers: 'tensorboard' needs the tensorboard package: "
                          "pip install 'mska-core[tensorboard]'") from None
    return TensorBoardLogger(Path(run_dir) / FOLDER)


@hookimpl
def mska_loggers() -> list[LoggerSpec]:
    return [LoggerSpec(name="tensorboard", build=build,
                       description="TensorBoard event files in RUN/tensorboard (pip install 'mska-core[tensorboard]')")]

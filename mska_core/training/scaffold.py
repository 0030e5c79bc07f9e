"""The scaffold under every training loop: seeding and random state, schedules, the metrics file and
the progress display.

``mska train`` (:class:`mska_core.training.loop.FineTuning`) and ``mska pretrain``
(:func:`mska_core.training.dino.pretrain`) both stand on these pieces and on three neighbours that
already have a home of their own:

- the run folder (its lock, the start and resume checks, reading a stored training state):
  :mod:`mska_core.training.runfolder`;
- the device and the process group: :func:`mska_core.training.distributed.setup`;
- atomic checkpoint files: :func:`mska_core.checkpoints.save_checkpoint` (temporary file, fsync,
  rename).

Exact resume rests on :func:`rng_state` holding every generator a step may draw from (Python's
``random``, NumPy's global generator, torch on the CPU and on every CUDA device) as plain data that a
``weights_only`` load reads back.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

# --- seeding and random state --------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The state of every global random generator as plain data (tensors, lists, numbers, strings):
    ``torch``, ``python``, ``numpy``, and ``cuda`` (one state per device) once CUDA is in use."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(words), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded. A generator the state does not hold (a checkpoint
    written before it was recorded) is left as it is."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, words, gauss = state["python"]
        random.setstate((version, tuple(words), gauss))
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- schedules -----------------------------------------------------------------------------------


@attrs.frozen
class CosineSchedule:
    """A value for every optimiser step: a linear warm-up to ``start``, then half a cosine to ``end``.

    - Warm-up: step ``s < warmup_steps`` gives ``start * s / warmup_steps`` when ``warmup_from_zero``
      (DINO's ramp: the first step does not move the weights), else ``start * (s + 1) / warmup_steps``;
      the ramp rises from ``warmup_start`` (0 unless given; DINO's teacher temperature rises from
      another temperature) rather than 0 when that is set. ``warmup_steps`` may be a fraction.
    - Per step (``steps_per_epoch`` unset): the cosine runs from ``start`` at the end of the warm-up to
      ``end`` at ``total_steps`` and stays there.
    - Per epoch (``steps_per_epoch`` set): the value changes only when an epoch starts, so epoch ``e``
      (0-based) is at ``end + (start - end) (1 + cos(pi (e + 1) / period)) / 2`` — torch's
      ``CosineAnnealingLR`` stepped before each epoch, as the MSKA reference does; past ``period``
      epochs the cosine climbs again, as that scheduler's does.

    A constant is the cosine from a value to itself.
    """

    start: float
    end: float
    total_steps: int
    warmup_steps: float = 0
    warmup_from_zero: bool = True
    steps_per_epoch: int | None = None
    period: int | None = None  # epochs of the per-epoch cosine
    warmup_start: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            done = step + (0 if self.warmup_from_zero else 1)
            if not self.warmup_start:
                return self.start * done / self.warmup_steps
            return self.warmup_start + (self.start - self.warmup_start) * done / self.warmup_steps
        if self.steps_per_epoch is not None:
            progress = (step // max(1, self.steps_per_epoch) + 1) / (self.period or 1)
        else:
            span = self.total_steps - self.warmup_steps
            if span <= 0:
                return self.end
            progress = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * progress))


# --- the metrics file ----------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``, each a JSON object.

    A last line without a line end (a write a kill cut short) is dropped; any other line that is not a
    JSON object is a one-line :class:`~mska_core.errors.DataError` naming the file and the line, as is
    a path that is not a regular file.
    """
    from mska_core.errors import DataError
    from mska_core.io import read_jsonl

    records = read_jsonl(path, torn_tail=True)
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataError(
                f"{path}: record {number} is a JSON {type(record).__name__}, not an object, so the file is not "
                "the metrics.jsonl a run writes; repair the line or move the file away"
            )
    return records


class MetricsLog:
    """A run's ``metrics.jsonl``: one JSON object a line, appended.

    :meth:`append` keeps a record in memory, :meth:`flush` appends the kept records to the file in one
    write, :meth:`log` does both; each costs the size of its records, however long the run. The first
    flush of a new run starts the file afresh. :meth:`sync` makes the written records durable (the
    loops call it before a checkpoint, so a checkpoint never outlives the records before it).

    A kill during a write leaves at most a last line without its line end; :func:`read_metrics` and
    :meth:`resume` drop it. Only the main process writes (``enabled``).
    """

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.pending: list[dict[str, Any]] = []
        self._fresh = True  # the first flush truncates what an earlier, abandoned start left

    def resume(self, up_to_step: int) -> None:
        """Keep the records of steps up to ``up_to_step`` and drop the rest (and a torn last line) from
        the file: records written after the checkpoint belong to steps that will run again. The file
        is rewritten once, atomically; later flushes append to it."""
        self.pending = []
        self._fresh = False
        if self.enabled:
            from mska_core.io import atomic_write_bytes

            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= up_to_step]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def append(self, record: dict[str, Any]) -> None:
        """Keep a record; it reaches the file with the next :meth:`flush`."""
        self.pending.append(record)

    def log(self, record: dict[str, Any]) -> None:
        """Keep a record and write it."""
        self.append(record)
        self.flush()

    def flush(self) -> None:
        """Append the kept records to the file in one write (a new run's first flush starts it afresh)."""
        if not self.enabled:
            self.pending = []
            return
        data = "".join(json.dumps(r) + "\n" for r in self.pending).encode()
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if self._fresh else os.O_APPEND)
        fd = os.open(self.path, flags, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        self.pending = []
        self._fresh = False

    def sync(self) -> None:
        """Flush, then make the file's records durable (``fsync``)."""
        self.flush()
        if not self.enabled:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- progress ------------------------------------------------------------------------------------


class ProgressDisplay:
    """A rich progress bar on ``console`` — description, bar, steps done, time left and a line of
    figures — when ``enabled`` and the console is a terminal; otherwise every call does nothing.

    A loop shows one task at a time: :meth:`begin` it, :meth:`advance` it once per step with the
    step's figures, :meth:`end` it (or let :meth:`close` take the display down). ``transient`` bars
    vanish when they end.
    """

    def __init__(self, console: Any, *, enabled: bool = True, transient: bool = True) -> None:
        self.progress: Any = None
        self.task: Any = None
        if enabled and console is not None and getattr(console, "is_terminal", False):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), console=console, transient=transient,
            )
            self.progress.start()

    def begin(self, description: str, total: int, completed: int = 0) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(description, total=total, completed=completed, info="")

    def advance(self, info: str, description: str | None = None) -> None:
        if self.progress is not None and self.task is not None:
            fields: dict[str, Any] = {"info": info}
            if description is not None:
                fields["description"] = description
            self.progress.update(self.task, advance=1, **fields)

    def end(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

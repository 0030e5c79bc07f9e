"""Experiment trackers beside ``metrics.jsonl``: the loggers ``[run] loggers`` names, for
``mska train`` (:class:`~mska_core.training.loop.FineTuning`) and ``mska pretrain``.

Each name is a :class:`~mska_core.records.LoggerSpec` from the ``mska_loggers`` hook (the built-in
``tensorboard``, or a plugin's). :class:`Trackers` builds them on rank 0 when a run starts, hands each
one every record ``metrics.jsonl`` receives, and closes them when the run ends. ``metrics.jsonl``
stays the source of truth: a logger that fails (when built, logging or closing) is reported once on
stderr, naming its plugin, and dropped; the run goes on. An error of mska-core's own hierarchy from
``build`` (a missing package, a bad setting) stops the run before it trains, in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mska_core.errors import ConfigError, MskaError, RegistryError


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Trackers:
    """The loggers ``names`` of ``registry`` for the run in ``run_dir`` (nothing at all when not
    ``enabled``, as on ranks other than 0)."""

    def __init__(self, names: Sequence[str], run_dir: Path, config: Any, registry: Any, *, enabled: bool = True,
                 report: Callable[[str], None] = _stderr) -> None:
        self.report = report
        self.loggers: list[tuple[Any, Any]] = []  # (LoggerSpec, logger)
        if not enabled:
            return
        for name in names:
            try:
                spec = registry.loggers.get(name)
            except RegistryError as exc:
                self.close()
                raise ConfigError(f"run.loggers: {exc}") from None
            try:
                logger = spec.build(Path(run_dir), config)
            except MskaError:
                self.close()
                raise
            except Exception as exc:
                self._failed(spec, "could not be started", exc)
                continue
            self.loggers.append((spec, logger))

    def log(self, record: dict[str, Any], step: int) -> None:
        """Hand ``record`` (as written to ``metrics.jsonl``) to every logger still working."""
        for spec, logger in list(self.loggers):
            try:
                logger.log(dict(record), step)
            except Exception as exc:
                self.loggers.remove((spec, logger))
                self._failed(spec, "failed", exc)

    def close(self) -> None:
        """Close every logger (once)."""
        loggers, self.loggers = self.loggers, []
        for spec, logger in loggers:
            try:
                logger.close()
            except Exception as exc:
                self._failed(spec, "failed to close", exc)

    def _failed(self, spec: Any, what: str, exc: BaseException) -> None:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        self.report(f"mska: warning: logger {spec.name!r} of {spec.provider} {what}: {type(exc).__name__}: "
                    f"{detail}; it gets no more records (metrics.jsonl has them all)")

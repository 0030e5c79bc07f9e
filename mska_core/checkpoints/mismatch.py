"""Comparing a state dict with a module: missing, unexpected and shape-mismatched keys.

Loading is strict. When weights do not fit, the error is one line (counts and the first keys) and
carries a :class:`KeyMismatch` whose :meth:`~KeyMismatch.table` renders every key in a rich table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from mska_core.errors import BackboneError, CheckpointError

_SHOWN = 3


@attrs.frozen
class KeyMismatch:
    """How a state dict differs from the keys and shapes a module expects."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()  # key, expected, found

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: counts and the first few keys of each kind."""
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label} ({_first(keys)})")
        if self.mismatched:
            shown = ", ".join(
                f"{k} {_shape(found)} vs {_shape(expected)}" for k, expected, found in self.mismatched[:_SHOWN]
            )
            more = f", +{len(self.mismatched) - _SHOWN} more" if len(self.mismatched) > _SHOWN else ""
            parts.append(f"{len(self.mismatched)} of another shape ({shown}{more})")
        return "; ".join(parts) if parts else "all keys fit"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """``(problem, key, expected, found)`` for every key that does not fit."""
        rows = [("missing", k, "present", "absent") for k in self.missing]
        rows += [("unexpected", k, "absent", "present") for k in self.unexpected]
        rows += [("shape", k, _shape(e), _shape(f)) for k, e, f in self.mismatched]
        return rows

    def table(self, title: str = "weights that do not fit") -> Any:
        """A rich table of :meth:`rows`."""
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in ("problem", "key", "model expects", "checkpoint has"):
            table.add_column(column, overflow="fold")
        for row in self.rows():
            table.add_row(*row)
        return table

    def as_dict(self) -> dict[str, Any]:
        return {
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [
                {"key": k, "expected": list(e), "found": list(f)} for k, e, f in self.mismatched
            ],
        }


class WeightMismatchError(CheckpointError, BackboneError):
    """Weights whose keys or shapes do not fit a module; ``.mismatch`` holds every key."""

    def __init__(self, message: str, mismatch: KeyMismatch) -> None:
        super().__init__(message)
        self.mismatch = mismatch


def compare(expected: Mapping[str, Any], state_dict: Mapping[str, Any]) -> KeyMismatch:
    """Compare ``state_dict`` with ``expected`` (a module's ``state_dict()``), by key and shape."""
    missing = tuple(k for k in expected if k not in state_dict)
    unexpected = tuple(k for k in state_dict if k not in expected)
    mismatched = tuple(
        (k, tuple(expected[k].shape), tuple(state_dict[k].shape))
        for k in expected
        if k in state_dict and hasattr(state_dict[k], "shape") and tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    return KeyMismatch(missing, unexpected, mismatched)


def load_strict(module: Any, state_dict: Mapping[str, Any], *, what: str) -> KeyMismatch:
    """Load ``state_dict`` into ``module`` when every key and shape fits; else raise with a report.

    ``what`` names the weights and the target for the message (``"face.pt into dinov2_vits14"``).
    """
    mismatch = compare(module.state_dict(), state_dict)
    if not mismatch.ok:
        raise WeightMismatchError(f"{what}: weights do not fit: {mismatch.summary()}", mismatch)
    module.load_state_dict(dict(state_dict), strict=True)
    return mismatch


def _first(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", +{len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"

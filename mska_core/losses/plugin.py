"""Built-in plugin: the losses mska-core supplies.

Each record's ``build`` imports its module (and torch) only when a loss is built, so listing plugins
stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mska_core.hookspecs import hookimpl
from mska_core.records import LossSpec


def _deferred(target: str) -> Callable[..., Any]:
    """A factory that imports ``module:attr`` on first call and calls it with the options."""
    module_name, _, attr = target.partition(":")

    def build(**options: Any) -> Any:
        return getattr(importlib.import_module(module_name), attr)(**options)

    build.__qualname__ = build.__name__ = f"build_{attr}"
    build.__doc__ = f"Build {target} with the [losses] table's options."
    return build


@hookimpl
def mska_losses() -> list[LossSpec]:
    return [
        LossSpec("ctc", _deferred("mska_core.losses.ctc:CTCLoss"),
                 "CTC over every recognition head's gloss logits"),
        LossSpec("distillation", _deferred("mska_core.losses.distillation:SelfDistillationLoss"),
                 "KL of each head to the detached mean of the heads' probabilities"),
        LossSpec("translation", _deferred("mska_core.losses.translation:TranslationLoss"),
                 "label-smoothed cross-entropy of the text decoder"),
        LossSpec("dino", _deferred("mska_core.losses.dino:DINOLoss"),
                 "DINO self-distillation between student and centred, sharpened teacher"),
        LossSpec("koleo", _deferred("mska_core.losses.koleo:KoLeoLoss"),
                 "Kozachenko-Leonenko entropy regulariser of the student's features"),
    ]

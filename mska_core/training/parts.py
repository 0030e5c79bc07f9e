"""The parts of a model that get their own learning rate or stay fixed: ``[optim] part_lr`` and
``[losses.translation] freeze``.

A model's parts are ``"encoder"`` (the multi-stream encoder) and the names of its text decoder's
``parameter_groups()`` (the built-in decoder: ``"decoder"``; a pretrained seq2seq model: ``"mapper"``
and ``"lm"``). The optimiser gets one parameter group per part, each with its ``base_lr`` (its
``part_lr`` entry, else ``[optim] lr``); the schedule multiplies every group's ``base_lr`` by the
same factor, ``schedule(step) / [optim] lr``, so warm-up and decay keep the ratios between parts. A
decoder's parameters that none of its groups name train in a group ``"other"`` at ``[optim] lr``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mska_core.errors import ConfigError

ENCODER, OTHER = "encoder", "other"


def model_parts(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``{part: parameters}`` of a :class:`~mska_core.training.model.SignModel`, in a fixed order:
    ``encoder``, the decoder's groups, then ``other`` for what none of them names (if anything)."""
    parts: dict[str, list[nn.Parameter]] = {ENCODER: list(model.encoder.parameters())}
    decoder = getattr(model, "decoder", None)
    if decoder is not None:
        for name, params in decoder.parameter_groups().items():
            if name in parts:
                raise ConfigError(f"the text decoder names a parameter group {name!r}, which is taken; its groups "
                                  f"must not be called {ENCODER!r} or {OTHER!r}")
            parts[name] = list(params)
    seen: set[int] = set()
    for name, params in parts.items():
        twice = [p for p in params if id(p) in seen]
        if twice:
            raise ConfigError(f"the text decoder's parameter group {name!r} repeats parameters of another part")
        seen.update(id(p) for p in params)
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        parts[OTHER] = rest
    return parts


def freeze_parts(model: nn.Module, names: tuple[str, ...]) -> list[str]:
    """Fix the parameters of the decoder parts ``names`` (``[losses.translation] freeze``); an unknown
    name is refused in one line naming the decoder's parts."""
    if not names:
        return []
    decoder = getattr(model, "decoder", None)
    groups = decoder.parameter_groups() if decoder is not None else {}
    unknown = [name for name in names if name not in groups]
    if unknown:
        valid = ", ".join(groups) or "none"
        raise ConfigError(f"losses.translation.freeze: {', '.join(map(repr, unknown))} is not a part of the text "
                          f"decoder; its parts: {valid}")
    for name in names:
        for param in groups[name]:
            param.requires_grad_(False)
    return list(names)


def make_optimizer(model: nn.Module, optim_cfg: Any) -> torch.optim.Optimizer:
    """The ``[optim]`` optimiser over the trainable parameters, one group per part (see the module)."""
    parts = model_parts(model)
    part_lr = dict(optim_cfg.part_lr)
    unknown = sorted(set(part_lr) - set(parts))
    if unknown:
        raise ConfigError(f"optim.part_lr: {', '.join(map(repr, unknown))} is not a part of this model; its parts: "
                          f"{', '.join(parts)}")
    groups = []
    for name, params in parts.items():
        trainable = [p for p in params if p.requires_grad]
        if trainable:
            lr = float(part_lr.get(name, optim_cfg.lr))
            groups.append({"params": trainable, "lr": lr, "base_lr": lr, "part": name})
    if not groups:
        raise ConfigError("every parameter of the model is frozen: nothing would train")
    if optim_cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=optim_cfg.lr, betas=optim_cfg.betas, weight_decay=optim_cfg.weight_decay)
    if optim_cfg.name == "adam":
        return torch.optim.Adam(groups, lr=optim_cfg.lr, betas=optim_cfg.betas, weight_decay=optim_cfg.weight_decay)
    return torch.optim.SGD(groups, lr=optim_cfg.lr, momentum=optim_cfg.betas[0], weight_decay=optim_cfg.weight_decay)


def set_learning_rates(optimizer: torch.optim.Optimizer, lr: float, base_lr: float) -> None:
    """Every group at its ``base_lr`` times ``lr / base_lr`` (the schedule's factor at this step)."""
    factor = lr / base_lr
    for group in optimizer.param_groups:
        group["lr"] = group.get("base_lr", base_lr) * factor

"""Mixed precision of the fine-tuning loop: ``[train] amp``.

- ``"bf16"``: the forward pass under bfloat16 autocast; bfloat16 keeps float32's exponent range, so
  the gradients need no scaling.
- ``"fp16"``: the forward pass under float16 autocast (the GPUs before Ampere run it fast; the MSKA
  reference trains this way) with a :class:`torch.amp.GradScaler`: the loss is scaled up before the
  backward pass so that small gradients survive float16, the gradients are unscaled before clipping,
  a step whose gradients overflowed is skipped and the scale lowered. The scaler's state goes into
  ``last.pt`` so that ``--resume`` continues exactly.

torch runs float16 autocast on the CPU too (slowly: it is for checking, not for speed).
"""

from __future__ import annotations

from typing import Any

import torch

#: The autocast dtype of each ``[train] amp`` setting ("none" runs in float32).
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device_type: str, amp: str) -> Any:
    """The autocast context of ``amp`` on ``device_type`` (disabled for ``"none"``)."""
    return torch.autocast(device_type, dtype=AMP_DTYPES.get(amp, torch.bfloat16), enabled=amp in AMP_DTYPES)


def grad_scaler(device_type: str, amp: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for ``"fp16"`` only (a disabled one passes ``step`` straight through)."""
    return torch.amp.GradScaler(device_type, enabled=amp == "fp16")

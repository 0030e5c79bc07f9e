"""Linear maps on the CPU through whichever float32 product kernel is faster on this processor.

``F.linear`` on the CPU runs the BLAS library torch was built with (MKL on x86). On some processors
that library does not use the widest vector units the processor has (MKL on AMD processors with
AVX-512, for one), while oneDNN's JIT kernels, which torch's convolutions run on, do. A linear map
of rows ``[M, in]`` is the same computation as a 1×1 convolution of a channels-last
``[1, in, M, 1]`` image, so on such a processor :func:`linear` routes it through the convolution:
the same float32 arithmetic (results equal up to float rounding), forward and backward, at up to
twice the rate (``python -m bench.cpu_kernels``; bench/RESULTS.md).

Which kernel is faster is measured once per process, on the first large product (a few
milliseconds), unless :func:`set_cpu_products` (or ``MSKA_CPU_PRODUCTS=blas|onednn|auto`` in the
environment) decides. Small products (few rows or small weights) and everything off the CPU, traced,
exported or compiled keep ``F.linear``.

The two kernels round differently (relative differences about 1e-6), so a run resumed in a process
that chose the other kernel continues with the same arithmetic up to that rounding, not bit for bit.
Where the two are close on a processor, ``MSKA_CPU_PRODUCTS`` pins the choice.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.errors import ConfigError

#: Below this many rows, or this many multiply-adds, a product stays with ``F.linear`` (smaller ones
#: ran no faster through the convolution where it was measured).
MIN_ROWS = 256
MIN_WORK = 8_000_000
#: oneDNN must be at least this much faster in the measurement to be chosen.
MARGIN = 1.15
CHOICES = ("auto", "blas", "onednn")

_choice = os.environ.get("MSKA_CPU_PRODUCTS", "auto")
_measured: bool | None = None  # the measurement's verdict: oneDNN faster


def set_cpu_products(choice: str) -> None:
    """``"onednn"``: route large CPU linear maps through oneDNN; ``"blas"``: never; ``"auto"`` (the
    default): measure once which is faster here."""
    global _choice
    if choice not in CHOICES:
        raise ValueError(f"cpu products must be one of {', '.join(CHOICES)}, got {choice!r}")
    _choice = choice


def cpu_products() -> str:
    """What routes large CPU linear maps now: ``"onednn"`` or ``"blas"`` (measuring first under
    ``"auto"``); a :class:`~mska_core.errors.ConfigError` for an unknown ``MSKA_CPU_PRODUCTS``."""
    if _choice not in CHOICES:
        raise ConfigError(f"MSKA_CPU_PRODUCTS={_choice!r} is not a product kernel; "
                          f"set it to one of {', '.join(CHOICES)} or unset it")
    if _choice != "auto":
        return _choice
    return "onednn" if _onednn_is_faster() else "blas"


def _onednn_is_faster() -> bool:
    global _measured
    if _measured is None:
        if not torch.backends.mkldnn.is_available():
            _measured = False
        else:
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(1024, 384, generator=generator)
            weight = torch.randn(384, 384, generator=generator)
            with torch.no_grad():
                blas = _best_of(lambda: F.linear(x, weight))
                onednn = _best_of(lambda: onednn_linear(x, weight, None))
            _measured = blas >= MARGIN * onednn
    return _measured


def _best_of(fn, runs: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` computed as oneDNN's 1×1 convolution of the rows of ``x`` seen as
    a channels-last ``[1, in, M, 1]`` image (no copy for contiguous ``x``), whatever the device or size."""
    rows = x.numel() // x.shape[-1]
    image = x.reshape(1, rows, 1, x.shape[-1]).permute(0, 3, 1, 2)  # [1, in, M, 1], channels-last memory
    out = F.conv2d(image, weight.view(*weight.shape, 1, 1), bias)  # [1, out, M, 1], channels-last memory
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


def routes(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear` takes the convolution for this product."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    rows = x.numel() // max(x.shape[-1], 1)
    if rows < MIN_ROWS or rows * weight.numel() < MIN_WORK:
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    if torch.onnx.is_in_onnx_export():
        return False
    return cpu_products() == "onednn"


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN's convolution where that is faster (see the module)."""
    if routes(x, weight):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class RoutedLinear(nn.Linear):
    """An ``nn.Linear`` whose forward is :func:`linear` (the same parameters and state dict)."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def route_linears(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Linear`` inside ``module`` a :class:`RoutedLinear`, in place (its
    parameters, state dict and outputs are unchanged); returns ``module``."""
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = RoutedLinear
    return module

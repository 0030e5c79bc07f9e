"""Small building blocks shared by the encoder's modules: the convolution + batch-norm unit of the
reference, the sinusoidal position encoding, frame masks, and the channels-last products the fast
path runs on."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.backbones.products import linear
from mska_core.errors import ConfigError

#: Negative slope of the reference's LeakyReLU.
LEAKY_SLOPE = 0.1
#: Below this many rows :func:`dense` puts the weight on the left of its product.
_FEW_ROWS = 128

_FUSED = os.environ.get("MSKA_FUSED_KERNELS", "1") not in ("0", "false", "False", "no")


def use_fused_kernels() -> bool:
    """Whether newly built attention blocks take the fast path (default: yes).

    ``MSKA_FUSED_KERNELS=0`` in the environment, or :func:`set_fused_kernels`, makes them take the
    plain path, which is the reference the fast path is tested against. A built model is switched
    with :meth:`MSKAEncoder.set_fused_kernels <mska_core.encoder.MSKAEncoder.set_fused_kernels>`.
    """
    return _FUSED


def set_fused_kernels(enabled: bool) -> None:
    """Make blocks built from now on take the fast path (``True``) or the plain path (``False``)."""
    global _FUSED
    _FUSED = bool(enabled)


#: The fast path's custom autograd functions, by the name that switches each one off:
#: ``joint_mixing`` (:class:`JointMixing`).
KERNELS = ("joint_mixing",)

_DISABLED: frozenset[str] = frozenset()


def check_kernels(names: Iterable[str]) -> frozenset[str]:
    """``names`` as a frozenset, each one of :data:`KERNELS` (a :class:`ConfigError` otherwise)."""
    names = frozenset(names)
    unknown = sorted(names - set(KERNELS))
    if unknown:
        raise ConfigError(f"unknown encoder kernel(s) {', '.join(map(repr, unknown))}; the kernels are {', '.join(KERNELS)}")
    return names


def disabled_kernels() -> frozenset[str]:
    """The kernels that newly built attention blocks leave off (default: none).

    A block's fast path computes a disabled kernel's step with autograd's own operations (see
    :data:`KERNELS` and ``docs/encoder.md``); the result is the same up to float rounding.
    """
    return _DISABLED


def set_disabled_kernels(names: Iterable[str]) -> None:
    """Make blocks built from now on leave the kernels ``names`` off (an empty set: all on).

    A built model is switched with :meth:`MSKAEncoder.set_disabled_kernels
    <mska_core.encoder.MSKAEncoder.set_disabled_kernels>`.
    """
    global _DISABLED
    _DISABLED = check_kernels(names)


class ConvNorm(nn.Module):
    """A convolution over time (kernel ``kernel``, stride ``stride``) followed by batch norm.

    ``kernel=1`` is a per-joint linear map. Weights keep the reference's ``Conv2d`` shape
    ``[out, in, kernel, 1]`` over ``[N, C, T, V]``; :meth:`forward` is the reference's computation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), stride=(stride, 1), padding=(kernel // 2, 0))
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C_in, T, V]`` to ``[N, C_out, T', V]``."""
        return self.norm(self.conv(x))

    def rows(self, x: Tensor) -> Tensor:
        """A 1×1 unit on channels-last rows ``[M, C_in]``: ``[M, C_out]`` (the same computation)."""
        weight, bias = self.affine()
        mapped = linear(x, weight, bias)
        return batch_norm_rows(mapped, self.norm) if self.training else mapped

    def affine(self) -> tuple[Tensor, Tensor]:
        """``(weight [out, in·kernel], bias [out])`` of the map; in eval mode with the norm folded in."""
        if self.training:
            return self.conv.weight.flatten(1), self.conv.bias
        weight, bias = self.folded()
        return weight.flatten(1), bias

    def folded(self) -> tuple[Tensor, Tensor]:
        """Eval-mode ``(weight [out, in, kernel], bias [out])`` with the batch norm folded in."""
        norm = self.norm
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        weight = self.conv.weight[..., 0] * scale[:, None, None]
        bias = (self.conv.bias - norm.running_mean) * scale + norm.bias
        return weight, bias


def run_kernel(function: type[torch.autograd.Function], *args: Any) -> Tensor:
    """``function.apply(*args)`` with its floating-point tensors in one dtype.

    The kernels' products take their inputs as given, so under autocast (``[train] amp = "bf16"``)
    they run in autocast's dtype with autocast off inside; otherwise in the first tensor's dtype.
    """
    first = next(a for a in args if isinstance(a, Tensor))
    device = first.device.type
    autocast = torch.is_autocast_enabled(device)
    dtype = torch.get_autocast_dtype(device) if autocast else first.dtype
    args = tuple(a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
    if not autocast:
        return function.apply(*args)
    with torch.autocast(device, enabled=False):
        return function.apply(*args)


def joint_scores(x: Tensor, weight: Tensor, joint_bias: Tensor, heads: int, valid: Tensor | None = None) -> Tensor:
    """The attention scores of every head, ``[N, S, U, V]``, from the block input ``x`` ``[N, T, V, C]``.

    With the map ``weight`` ``[2·S·I, C]`` (the queries' rows of every head, then the keys'), its
    per-joint bias ``joint_bias`` ``[2·S·I, V]`` and optional frame weights ``valid`` ``[N, T]``::

        q, k            = split(weight · x + joint_bias)
        scores[n,s,u,v] = sum_{i,t} valid[n,t] q[n,t,u,s,i] k[n,t,v,s,i]

    The queries and keys of every head are one linear map of the rows (through
    :func:`~mska_core.backbones.products.linear`, the CPU's faster product kernel), laid out per
    clip and head as ``[V, T·I]`` by one copy each, and the scores are one batched product;
    autograd's own backward. (A hand-written backward, ``JointScores``, did this with products of
    its own before; measured against this path it lost: ``bench/RESULTS.md``.)
    """
    N, T, V, C = x.shape
    inter = weight.shape[0] // (2 * heads)
    qk = linear(x.reshape(N * T * V, C), weight).view(N, T, V, 2, heads, inter)
    qk = qk + joint_bias.t().reshape(V, 2, heads, inter)
    q, k = qk.unbind(3)  # [N, T, V, S, I] each
    if valid is not None:
        k = k * valid.view(N, T, 1, 1, 1)
    q = q.permute(0, 3, 2, 1, 4).reshape(N * heads, V, T * inter)  # [N·S, U, T·I]
    k = k.permute(0, 3, 2, 1, 4).reshape(N * heads, V, T * inter)  # [N·S, V, T·I]
    return torch.bmm(q, k.transpose(1, 2)).view(N, heads, V, V)


class JointMixing(torch.autograd.Function):
    """Every frame's joints mixed by a clip's attention maps: ``m[n, t, r, c] = sum_u A[n, r, u]
    x[n, t, u, c]`` for ``A`` ``[N, R, U]`` (``R`` rows: a target joint and a head each) and ``x``
    ``[N, T, U, C]``, giving ``[N, T, R, C]``.

    Each clip's map is shared by all of its frames. A broadcast product would copy it once per frame
    (``T·R·U`` numbers, more than the frame data itself when ``R`` is large) and sum the copies'
    gradients back; here each clip is one product batched over frames that reads its map through a
    stride-0 view, and so is the input's gradient. Saves ``A`` and ``x``.
    """

    @staticmethod
    def forward(ctx: Any, maps: Tensor, x: Tensor) -> Tensor:
        N, T, U, C = x.shape
        R = maps.shape[1]
        out = x.new_empty(N, T, R, C)
        for n in range(N):
            torch.bmm(maps[n].expand(T, R, U), x[n], out=out[n])
        ctx.save_for_backward(maps, x)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        maps, x = ctx.saved_tensors
        N, T, U, _ = x.shape
        R = maps.shape[1]
        grad = grad.contiguous()
        grad_maps = torch.empty_like(maps) if ctx.needs_input_grad[0] else None
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[1] else None
        for n in range(N):
            if grad_maps is not None:  # sum_t grad[t] x[t]^T
                torch.sum(torch.bmm(grad[n], x[n].transpose(1, 2)), 0, out=grad_maps[n])
            if grad_x is not None:
                torch.bmm(maps[n].t().expand(T, U, R), grad[n], out=grad_x[n])
        return grad_maps, grad_x


def joint_mixing(maps: Tensor, x: Tensor, *, kernel: bool = True) -> Tensor:
    """:class:`JointMixing`: ``[N, T, R, C]`` from maps ``[N, R, U]`` and frames ``x`` ``[N, T, U, C]``.

    ``kernel=False`` computes the same as autograd's broadcast product of each clip's map with
    its frames.
    """
    if kernel:
        return run_kernel(JointMixing, maps, x)
    return torch.matmul(maps.unsqueeze(1), x)


def batch_norm_rows(y: Tensor, norm: nn.BatchNorm2d) -> Tensor:
    """``norm`` applied to channels-last ``y`` ``[..., C]``, over every other axis.

    The rows are handed to the module as a channels-last ``[1, C, M, 1]`` view, so its own kernel
    (the vectorised channels-last one), running statistics and momentum apply, and its backward is
    one fused pass.
    """
    C = y.shape[-1]
    rows = y.reshape(1, -1, 1, C).permute(0, 3, 1, 2)  # [1, C, M, 1], channels-last memory
    return norm(rows).permute(0, 2, 3, 1).reshape(y.shape)


def sinusoid(positions: int, size: int) -> Tensor:
    """``[positions, size]`` sine (even channels) and cosine (odd channels) position encoding."""
    position = torch.arange(positions, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * -(math.log(10000.0) / size))
    encoding = torch.zeros(positions, size)
    encoding[:, 0::2] = torch.sin(position * rate)
    encoding[:, 1::2] = torch.cos(position * rate[: size // 2])
    return encoding


def frame_mask(lengths: Tensor, frames: int) -> Tensor:
    """``[N, frames]`` bool, true on the first ``lengths[n]`` frames."""
    return torch.arange(frames, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def conv_over_time(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv`` (``padding="same"``, zeros) over ``x`` ``[B, T, C]`` as one product of the
    ``[B·T, C·k]`` windows: ``[B, T, out]``, without leaving the channels-last layout."""
    kernel = conv.kernel_size[0]
    left = (kernel - 1) // 2
    padded = F.pad(x, (0, 0, left, kernel - 1 - left))
    windows = padded.unfold(1, kernel, 1)  # [B, T, C, k]
    return dense(windows.reshape(x.shape[0] * x.shape[1], -1), conv.weight.flatten(1), conv.bias).reshape(
        x.shape[0], x.shape[1], -1
    )


def dense(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` of ``x`` ``[..., in]``, computed as ``(weight · xᵀ)ᵀ`` when there are few rows.

    A VisualHead sees one row per output frame (25 for a 100-frame clip) against weights of up to
    12 MiB; with the weight as the product's left side the CPU kernels stream it once instead of
    packing it. The result is the same up to float rounding.
    """
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] >= _FEW_ROWS or rows.device.type != "cpu":
        return F.linear(x, weight, bias)
    out = torch.mm(weight, rows.t()) if bias is None else torch.addmm(bias.unsqueeze(1), weight, rows.t())
    return out.t().reshape(*x.shape[:-1], weight.shape[0])

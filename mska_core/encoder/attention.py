"""The spatial–temporal attention block of MSKA (arXiv 2405.05672), one stream at a time.

Per head ``s``, with ``x`` of ``C`` channels over ``T`` frames and ``V`` joints::

    q, k    = split(W_qk (x + pe_joint) + b)                               # [S, I, T, V] each
    A[s]    = tanh(sum_{c,t} q[s,c,t,u] k[s,c,t,v] / (I T)) * alpha[s] + G[s]   # [V, V]  (paper)
    A[s]    = softmax_u(alpha[s] sum_{c,t valid} q k / sqrt(I T_valid) + G[s])  # [V, V]  (softmax)
    y       = lrelu(skip_a(x) + BN(W_a concat_s(x A[s])))                  # "attend"
    y       = lrelu(skip_m(x) + BN(W_m y))                                  # "mix"
    out     = lrelu(skip_t(y) + BN(conv_t(y)))                              # temporal conv, kernel k, stride s

The skips are identities, or 1×1 maps with batch norm when the block changes width or stride.

:class:`AttentionBlock` has two implementations of that computation behind one switch, its
``fused`` attribute (default from :func:`~mska_core.encoder.layers.use_fused_kernels`):

- :meth:`AttentionBlock.forward_plain` is the formula above written as the reference writes it,
  channels-first ``[N, C, T, V]``, one ``einsum`` per product, the batch norms as modules. It is the
  reference the fast path is tested against.
- :meth:`AttentionBlock.forward_fused` computes the same thing time-major and channels-last
  ``[N, T, V, C]``: the queries and keys of every head come out of one linear map of the rows (the
  CPU's faster product kernel), laid out per clip and head for the scores, the joints are mixed per
  frame by one batched product whose rows are the attend map's input, the attend map is one product over every head, frame and clip, the batch norms run on
  those rows with the native kernel (one fused backward), and the temporal convolution is a
  channels-last convolution. In eval mode the batch norms are folded into the maps before them and
  the temporal skip into the convolution's centre tap. Nothing is kept between calls.

One step of the fast path is a custom autograd function of :mod:`~mska_core.encoder.layers`
(``joint_mixing``: its backward is written by hand). It can be switched off, the block's
``disabled_kernels`` (default from :func:`~mska_core.encoder.layers.disabled_kernels`): the fast
path then computes that step with autograd's own operations, so that the kernel's gain can be
measured against the same path without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.backbones.products import linear
from mska_core.encoder.layers import (
    LEAKY_SLOPE,
    ConvNorm,
    batch_norm_rows,
    check_kernels,
    disabled_kernels,
    frame_mask,
    joint_mixing,
    joint_scores,
    sinusoid,
    use_fused_kernels,
)

#: Additive bias that hides a joint from softmax attention (finite, so a row never becomes NaN).
HIDDEN_BIAS = -1.0e4


class AttentionBlock(nn.Module):
    """One spatial–temporal attention block of one stream (see the module docstring).

    ``attention="paper"`` is the reference's tanh attention plus the learned global matrix, which
    masks nothing (padded frames enter the scores as in the reference); ``"softmax"`` leaves padded
    frames out of the scores, zeroes them before the temporal convolution (so a clip's outputs do
    not depend on what it is batched with) and hides joints never seen in a clip.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        inter_channels: int,
        num_joints: int,
        *,
        num_heads: int,
        temporal_kernel: int,
        stride: int,
        attention: str = "paper",
        attention_dropout: float = 0.0,
        fused: bool | None = None,
        disabled: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.inter_channels = in_channels, out_channels, inter_channels
        self.num_joints, self.num_heads = num_joints, num_heads
        self.kernel, self.stride = temporal_kernel, stride
        self.attention = attention
        self.attention_dropout = attention_dropout
        self.fused = use_fused_kernels() if fused is None else fused
        self.disabled_kernels = disabled_kernels() if disabled is None else check_kernels(disabled)
        heads = num_heads
        self.qk = nn.Conv2d(in_channels, 2 * heads * inter_channels, 1)
        self.alpha = nn.Parameter(torch.ones(heads))
        self.global_attention = nn.Parameter(torch.full((heads, num_joints, num_joints), 1.0 / num_joints))
        self.attend = ConvNorm(heads * in_channels, out_channels)
        self.mix = ConvNorm(out_channels, out_channels)
        self.temporal = ConvNorm(out_channels, out_channels, temporal_kernel, stride)
        reshapes = in_channels != out_channels or stride != 1
        self.skip_attend = ConvNorm(in_channels, out_channels) if reshapes else None
        self.skip_mix = ConvNorm(in_channels, out_channels) if reshapes else None
        self.skip_temporal = ConvNorm(out_channels, out_channels, 1, stride) if reshapes else None
        # The reference's spatial positional encoding: a sinusoid over the joint index, [C, V].
        self.register_buffer("joint_encoding", sinusoid(num_joints, in_channels).t().contiguous(), persistent=False)

    def output_length(self, length: Any) -> Any:
        """Frames out for ``length`` frames in (an int or a long tensor)."""
        pad = self.kernel // 2
        return (length + 2 * pad - self.kernel) // self.stride + 1

    def forward(self, x: Tensor, lengths: Tensor, hidden: Tensor | None = None) -> Tensor:
        """``x`` ``[N, T, V, C]`` (time-major, channels-last) to ``[N, T', V, C_out]``.

        ``lengths`` ``[N]`` (valid frames) and ``hidden`` ``[N, V]`` (joints never seen) matter to
        softmax attention only.
        """
        if self.fused:
            return self.forward_fused(x, lengths, hidden)
        return self.forward_plain(x, lengths, hidden)

    # -- the plain path: the formula, channels-first ---------------------------------------------

    def forward_plain(self, x: Tensor, lengths: Tensor, hidden: Tensor | None = None) -> Tensor:
        """The block as written in the module docstring; the fast path's reference."""
        x = x.permute(0, 3, 1, 2)  # [N, C, T, V]
        N, C, T, V = x.shape
        S, I = self.num_heads, self.inter_channels
        q, k = self.qk(x + self.joint_encoding.unsqueeze(1)).view(N, 2, S, I, T, V).unbind(1)  # [N, S, I, T, V]
        if self.attention == "paper":
            scores = torch.einsum("nsctu,nsctv->nsuv", q, k) / (I * T)
            attention = torch.tanh(scores) * self.alpha.view(1, S, 1, 1) + self.global_attention
        else:
            attention = self.softmax_weights_plain(q, k, lengths, hidden)
        attention = F.dropout(attention, self.attention_dropout, self.training)  # [N, S, U, V]
        mixed = torch.einsum("nctu,nsuv->nsctv", x, attention).reshape(N, S * C, T, V)
        y = F.leaky_relu(self.skip(self.skip_attend, x) + self.attend(mixed), LEAKY_SLOPE)
        y = F.leaky_relu(self.skip(self.skip_mix, x) + self.mix(y), LEAKY_SLOPE)
        if self.attention == "softmax":
            y = y * frame_mask(lengths, T).to(y.dtype).view(N, 1, T, 1)
        z = F.leaky_relu(self.skip(self.skip_temporal, y) + self.temporal(y), LEAKY_SLOPE)
        return z.permute(0, 2, 3, 1)  # [N, T', V, C_out]

    def softmax_weights_plain(self, q: Tensor, k: Tensor, lengths: Tensor, hidden: Tensor | None) -> Tensor:
        """``[N, S, U, V]``: how much joint ``v`` reads joint ``u``, a distribution over ``u``."""
        N, S, I, T, V = q.shape
        valid = frame_mask(lengths, T).to(q.dtype)  # [N, T]
        frames = lengths.clamp(min=1).to(q.dtype).view(N, 1, 1, 1)
        scores = torch.einsum("nsctu,nsctv,nt->nsuv", q, k, valid)
        logits = scores * self.alpha.view(1, S, 1, 1) * torch.rsqrt(frames * I) + self.global_attention
        if hidden is not None:
            logits = logits + hidden.to(logits.dtype).mul(HIDDEN_BIAS).view(N, 1, V, 1)
        return logits.softmax(dim=2)

    @staticmethod
    def skip(unit: ConvNorm | None, x: Tensor) -> Tensor:
        return x if unit is None else unit(x)

    # -- the fast path: time-major, channels-last ------------------------------------------------

    def forward_fused(self, x: Tensor, lengths: Tensor, hidden: Tensor | None = None) -> Tensor:
        """The same computation as :meth:`forward_plain`, laid out for large products."""
        N, T, V, C = x.shape
        S = self.num_heads
        training = self.training
        rows = x.reshape(N * T * V, C)

        # The scores of every head (see joint_scores); the joint encoding enters as a bias.
        weight = self.qk.weight.flatten(1)  # [2S·I, C]
        joint_bias = torch.addmm(self.qk.bias.unsqueeze(1), weight, self.joint_encoding)  # [2S·I, V]
        if self.attention == "paper":
            scores = joint_scores(x, weight, joint_bias, S)  # [N, S, U, V]
            # The elementwise steps run on [N, V, S, U] (the layout the mixing reads), contiguous, so
            # that every backward sees one layout (compiled graphs rely on it).
            by_target = scores.permute(0, 3, 1, 2).contiguous()  # [N, V, S, U]
            by_target = torch.tanh(by_target / (self.inter_channels * T)) * self.alpha.reshape(S, 1)
            by_target = by_target + self.global_by_target()
        else:
            valid = frame_mask(lengths, T).to(x.dtype)  # [N, T]
            scores = joint_scores(x, weight, joint_bias, S, valid)
            by_target = self.softmax_from_scores(scores, lengths, hidden).permute(0, 3, 1, 2).contiguous()
        by_target = F.dropout(by_target, self.attention_dropout, training)
        # m[n, t, v, s·C + c] = sum_u A[n, s, u, v] x[n, t, u, c]: each clip's map mixes all of its
        # frames in one product, whose rows (v, s·C + c) are what the attend map reads (the
        # reference's head order).
        mixed = joint_mixing(by_target.reshape(N, V * S, V), x, kernel=self.uses("joint_mixing"))
        mixed = mixed.reshape(N * T * V, S * C)

        residual_attend = rows if self.skip_attend is None else self.skip_attend.rows(rows)
        residual_mix = rows if self.skip_mix is None else self.skip_mix.rows(rows)
        attend, attend_bias = self.attend.affine()  # [out, S·C]; the norm folded in eval mode
        if training:
            y = batch_norm_rows(linear(mixed, attend, attend_bias), self.attend.norm) + residual_attend
        else:
            y = linear(mixed, attend, attend_bias).add_(residual_attend)
        y = F.leaky_relu(y, LEAKY_SLOPE, inplace=True)
        # In training out of place: the norm's output is a view, and an in-place step on a view
        # costs the backward a copy of the whole base tensor.
        y = self.mix.rows(y) + residual_mix if training else self.mix.rows(y).add_(residual_mix)
        y = F.leaky_relu(y, LEAKY_SLOPE, inplace=True).reshape(N, T, V, -1)
        if self.attention == "softmax":  # padded frames read as the zeros past a clip's end
            y = y * frame_mask(lengths, T).to(y.dtype).view(N, T, 1, 1)
        return self.temporal_fused(y)

    def uses(self, kernel: str) -> bool:
        """Whether the fast path runs ``kernel`` (one of :data:`~mska_core.encoder.layers.KERNELS`)
        as its custom autograd function, rather than autograd's own operations."""
        return kernel not in self.disabled_kernels

    def global_by_target(self) -> Tensor:
        """The global matrices as ``[V, S, U]``: ``G[s, u, v]`` at ``[v, s, u]``."""
        return self.global_attention.permute(2, 0, 1).contiguous()

    def softmax_from_scores(self, scores: Tensor, lengths: Tensor, hidden: Tensor | None) -> Tensor:
        """``[N, S, U, V]`` softmax weights from the scores over valid frames (as
        :meth:`softmax_weights_plain` computes them from ``q`` and ``k``)."""
        N, S, V, _ = scores.shape
        frames = lengths.clamp(min=1).to(scores.dtype).view(N, 1, 1, 1)
        logits = scores * self.alpha.view(1, S, 1, 1) * torch.rsqrt(frames * self.inter_channels) + self.global_attention
        if hidden is not None:
            logits = logits + hidden.to(logits.dtype).mul(HIDDEN_BIAS).view(N, 1, V, 1)
        return logits.softmax(dim=2)

    def temporal_fused(self, y: Tensor) -> Tensor:
        """The temporal convolution with its skip and LeakyReLU: ``[N, T, V, C]`` to ``[N, T', V, C]``."""
        frames = y.permute(0, 3, 1, 2)  # [N, C, T, V] over channels-last memory
        padding = (self.kernel // 2, 0)
        if self.training:
            # The native channels-last convolution and its own backward.
            z = self.temporal(frames).permute(0, 2, 3, 1)  # [N, T', V, C]
            if self.skip_temporal is not None:
                # A strided 1×1 convolution reads every stride-th frame (as a product: the
                # channels-last strided 1×1 convolution's backward is not reliable on every CPU build).
                picked = y[:, :: self.stride]
                z = z + self.skip_temporal.rows(picked.reshape(-1, y.shape[-1])).view_as(z)
            else:
                z = z + y
            return F.leaky_relu(z, LEAKY_SLOPE).contiguous()
        # Eval: conv(y) + skip(y) is one convolution, the skip joined to the centre tap.
        weight, bias = self.temporal.folded()  # [out, out, k]
        pad = self.kernel // 2
        if self.skip_temporal is not None:
            skip_weight, skip_bias = self.skip_temporal.folded()
            centre, bias = skip_weight[..., 0], bias + skip_bias
        else:
            centre = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        weight = torch.cat([weight[..., :pad], weight[..., pad : pad + 1] + centre.unsqueeze(-1), weight[..., pad + 1 :]], -1)
        weight = weight.unsqueeze(-1).contiguous(memory_format=torch.channels_last)
        z = F.conv2d(frames, weight, bias, stride=(self.stride, 1), padding=padding).permute(0, 2, 3, 1)
        return F.leaky_relu(z, LEAKY_SLOPE, inplace=True).contiguous()

"""The multi-stream encoder: keypoint attention branches, crop branches, fusion and VisualHeads.

The file reads top-down: the batch and output records; the keypoint attention block and the
functions that run it; the keypoint branch; the crop branch; the VisualHead; the encoder; and the
helpers that assemble an encoder from a :class:`~mska_core.config.ModelConfig` and the registry.

Paper mode reproduces the spatial–temporal attention block of MSKA (arXiv 2405.05672) weight for
weight; the parameters carry the reference's shapes so that its checkpoints convert by renaming (see
:mod:`mska_core.encoder.reference`). Per head ``s`` and block, with ``x`` of ``C`` channels over ``T``
frames and ``V`` joints::

    q, k    = split(W_qk (x + pe_joint) + b)                       # [S, I, T, V] each
    A[s]    = tanh(sum_{c,t} q[s,c,t,u] k[s,c,t,v] / (I T)) * alpha[s] + G[s]   # [V, V]
    y       = lrelu(skip_a(x) + BN(W_a concat_s(x A[s])))          # "attend"
    y       = lrelu(skip_m(x) + BN(W_m y))                          # "mix"
    out     = lrelu(skip_t(y) + BN(conv_t(y)))                      # temporal conv, kernel k, stride s

The skips are identities, or 1×1 maps with batch norm when the block changes width or stride.

Activations of the keypoint branches are kept time-major and channels-last, ``[N, T, V, C]``:
each clip's queries and keys are one product laid out so that the scores need no copy, the joints
are mixed per frame in one batched product whose rows are already the attend map's (head, channel)
input, the attend map is one product over all heads and clips, and the temporal convolution is a
channels-last convolution. In eval mode every batch norm is folded into the map before it and the
temporal skip into the convolution's centre tap (kept between inference calls, see
:func:`block_weights`); the result equals the unfused computation up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mska_core.config.schema import PAPER_HEADS, PAPER_STREAMS
from mska_core.errors import ConfigError, DataError, RegistryError

#: Negative slope of the reference's LeakyReLU.
LEAKY_SLOPE = 0.1
#: Below this many rows :func:`dense` puts the weight on the left of its product.
_FEW_ROWS = 128
#: Additive bias that hides a joint from softmax attention (finite, so a row never becomes NaN).
_HIDDEN = -1.0e4


# -- records ---------------------------------------------------------------------------------------


@attrs.frozen
class ClipBatch:
    """A batch of clips for :class:`MSKAEncoder`.

    - ``keypoints``: float ``[B, T, J, C]`` (x, y, confidence) in the model's layout; frames past a
      clip's length are padding.
    - ``lengths``: long ``[B]``, the number of real frames of each clip.
    - ``crops``: optional ``{stream: [B, T, 3, H, W]}`` image crops for streams with a crop backbone.
    """

    keypoints: Tensor
    lengths: Tensor
    crops: Mapping[str, Tensor] | None = None

    def to(self, device: Any) -> ClipBatch:
        """The same batch on ``device``."""
        crops = None if self.crops is None else {k: v.to(device) for k, v in self.crops.items()}
        return ClipBatch(self.keypoints.to(device), self.lengths.to(device), crops)


@attrs.frozen
class EncoderOutput:
    """What :meth:`MSKAEncoder.forward` returns.

    - ``stream_features``: ``{stream: [B, T', C]}`` per-stream features (joint-pooled keypoint
      features, concatenated with crop features where the stream has a crop branch).
    - ``head_inputs``: ``{head: [B, T', D]}`` the concatenated stream features each head reads.
    - ``lengths``: ``[B]`` valid output frames per clip, after the temporal downsampling.
    - ``logits``: ``{head: [B, T', V]}`` gloss logits (CTC, blank is index 0 by convention).
    - ``gloss_features``: ``{head: [B, T', H]}`` VisualHead features before the classifier.
    - ``mask``: ``[B, T']`` bool, true on valid output frames.
    """

    stream_features: dict[str, Tensor]
    head_inputs: dict[str, Tensor]
    lengths: Tensor
    logits: dict[str, Tensor]
    gloss_features: dict[str, Tensor]
    mask: Tensor

    def distillation_targets(self) -> Tensor:
        """``[B, T', V]``: the mean of the heads' softmax probabilities, detached (float32)."""
        probabilities = [logits.float().softmax(-1) for logits in self.logits.values()]
        return torch.stack(probabilities).mean(0).detach()


# -- the keypoint attention block ------------------------------------------------------------------


class ConvNorm(nn.Module):
    """A convolution over time (kernel ``kernel``, stride ``stride``) followed by batch norm.

    ``kernel=1`` is a per-joint linear map. Weights keep the reference's ``Conv2d`` shape
    ``[out, in, kernel, 1]`` over ``[N, C, T, V]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), stride=(stride, 1), padding=(kernel // 2, 0))
        self.norm = nn.BatchNorm2d(out_channels)

    def folded(self) -> tuple[Tensor, Tensor]:
        """Eval-mode ``(weight [out, in, kernel], bias [out])`` with the batch norm folded in."""
        norm = self.norm
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        weight = self.conv.weight[..., 0] * scale[:, None, None]
        bias = (self.conv.bias - norm.running_mean) * scale + norm.bias
        return weight, bias


class AttentionBlock(nn.Module):
    """One spatial–temporal attention block of one stream (see the module docstring).

    ``attention="paper"`` is the reference's tanh attention plus the learned global matrix;
    ``"softmax"`` computes ``softmax(alpha · q·k / sqrt(I·T) + G)`` with
    :func:`torch.nn.functional.scaled_dot_product_attention`, padded frames and missing joints
    masked.
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
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.inter_channels = in_channels, out_channels, inter_channels
        self.num_joints, self.num_heads = num_joints, num_heads
        self.kernel, self.stride = temporal_kernel, stride
        self.attention = attention
        self.attention_dropout = attention_dropout
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
        #: ``(version key, BlockWeights)`` kept between inference calls (see :func:`block_weights`).
        self.cached_weights: tuple[tuple, BlockWeights] | None = None

    def train(self, mode: bool = True) -> AttentionBlock:
        self.cached_weights = None
        return super().train(mode)

    def output_length(self, length: Any) -> Any:
        """Frames out for ``length`` frames in (an int or a long tensor)."""
        pad = self.kernel // 2
        return (length + 2 * pad - self.kernel) // self.stride + 1


def run_block(block: AttentionBlock, x: Tensor, lengths: Tensor, hidden: Tensor | None) -> Tensor:
    """One attention block on ``x`` ``[N, T, V, C]`` (time-major, channels-last): ``[N, T', V, C_out]``.

    ``lengths`` ``[N]`` (valid frames) and ``hidden`` ``[N, V]`` (joints never seen) only matter to
    softmax attention, which masks both; paper attention is the reference's, which masks nothing.
    """
    N, T, V, channels = x.shape
    out = block.out_channels
    training = block.training
    weights = block_weights(block)
    flat = x.view(N * T * V, channels)

    # Queries and keys per clip as [2S, I·T, V] (the map of the frame-major rows): each head's
    # scores are then one product over (channel, frame), with no copy of q or k.
    qk = stack([torch.mm(weights.qk, clip.view(T * V, channels).t()) for clip in x])
    qk = qk.view(N, 2, block.num_heads, -1, V)
    q, k = qk[:, 0], qk[:, 1]  # [N, S, I·T, V], bias-free
    skips = None
    if weights.skip is not None:
        skips = torch.addmm(weights.skip_bias, flat, weights.skip.t()).split(out, -1)
        if training:
            skips = (batch_norm(skips[0], block.skip_attend.norm), batch_norm(skips[1], block.skip_mix.norm))
    residual = skips[0] if skips is not None else flat

    if block.attention == "paper":
        attention = paper_attention(block, weights, x, q, k)  # [N, S, U, V]
        if training and block.attention_dropout > 0:
            attention = F.dropout(attention, block.attention_dropout)
        by_target = attention.permute(0, 3, 1, 2)  # [N, V, S, U]
    else:
        by_target = softmax_attention(block, weights, x, q, k, lengths, hidden).transpose(1, 2)  # [N, V, S, U]
    # m[n, t, v, s] = sum_u A[n, s, u, v] x[n, t, u]: per clip one product batched over frames, whose
    # output rows (v, s·C + c) are what the attend map reads (the reference's order of the heads).
    by_target = by_target.reshape(N, V * block.num_heads, V)
    mixed = stack([torch.matmul(a, clip) for a, clip in zip(by_target, x)]).view(N * T * V, -1)
    if training:
        y = batch_norm(torch.addmm(weights.attend_bias, mixed, weights.attend.t()), block.attend.norm) + residual
    else:
        y = torch.addmm(residual, mixed, weights.attend.t()).add_(weights.attend_bias)
    y = F.leaky_relu(y, LEAKY_SLOPE, inplace=True)
    y = torch.addmm(weights.mix_bias, y, weights.mix.t())
    if training:
        y = batch_norm(y, block.mix.norm)
    y = F.leaky_relu(y.add_(skips[1] if skips is not None else flat), LEAKY_SLOPE, inplace=True)
    return temporal(block, weights, y.view(N, T, V, out))


@attrs.frozen
class BlockWeights:
    """The tensors one pass of an :class:`AttentionBlock` reads, in the layouts its products want.

    In eval mode every batch norm is folded into the map before it and the temporal skip into the
    centre tap of the temporal convolution; in training mode the maps are the raw ones and the norms
    run after them. ``qk`` ``[2·S·I, C]`` is the query/key map (rows head-major, queries first),
    ``attend`` ``[out, S·C]`` the attend map, ``skip`` the attend and mix skips stacked (``None`` when
    both are identities), ``temporal`` the ``[out, out, kernel, 1]`` convolution;
    with ``a``, ``c`` ``[S, V, I]`` the per-joint biases of the queries and keys (the map's bias plus
    the map of the joint encoding), ``query_offset`` ``[S, C, V]`` is ``W_qᵀ cᵀ``, ``key_offset``
    ``[S, V, C]`` is ``a W_k`` and ``bias_product`` ``a cᵀ`` ``[S, V, V]`` (see :func:`score_offsets`).
    """

    qk: Tensor
    attend: Tensor
    attend_bias: Tensor
    skip: Tensor | None
    skip_bias: Tensor | None
    mix: Tensor
    mix_bias: Tensor
    temporal: Tensor
    temporal_bias: Tensor
    query_offset: Tensor
    key_offset: Tensor
    bias_product: Tensor


def block_weights(block: AttentionBlock) -> BlockWeights:
    """The :class:`BlockWeights` of ``block`` for its current mode.

    Inference (eval mode with gradients off) keeps them between calls, keyed on the version
    counters and storage of the block's parameters and buffers, so that an optimiser step,
    ``load_state_dict`` or a move to another device rebuilds them; ``block.train()``/``eval()``
    drops them. Otherwise they are derived on every call (cheap next to the block's products, and
    differentiable).
    """
    if block.training or torch.is_grad_enabled():
        return derive_weights(block)
    key = version_key(block)
    cached = block.cached_weights
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    weights = derive_weights(block)
    block.cached_weights = None if key is None else (key, weights)
    return weights


def version_key(module: nn.Module) -> tuple | None:
    """A key that changes whenever a parameter or buffer of ``module`` is replaced or modified in
    place; ``None`` for inference tensors, which carry no version counter."""
    try:
        return tuple((t.data_ptr(), t._version) for t in (*module.parameters(), *module.buffers()))
    except RuntimeError:
        return None


def derive_weights(block: AttentionBlock) -> BlockWeights:
    training = block.training
    heads = block.num_heads
    qk = block.qk.weight.flatten(1)  # [2S·I, C]
    attend, attend_bias = affine(block.attend, training)  # [out, S·C]
    skip = skip_bias = None
    if block.skip_attend is not None:
        pairs = [affine(block.skip_attend, training), affine(block.skip_mix, training)]
        skip, skip_bias = torch.cat([w for w, _ in pairs]), torch.cat([b for _, b in pairs])
    mix, mix_bias = affine(block.mix, training)
    if training:
        temporal, temporal_bias = block.temporal.conv.weight, block.temporal.conv.bias
    else:
        # conv(y) + skip(y) is one convolution: the skip joins the centre tap.
        weight, temporal_bias = block.temporal.folded()
        pad = block.kernel // 2
        if block.skip_temporal is not None:
            skip_weight, skip_temporal_bias = block.skip_temporal.folded()
            centre, temporal_bias = skip_weight[..., 0], temporal_bias + skip_temporal_bias
        else:
            centre = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        weight = torch.cat([weight[..., :pad], weight[..., pad : pad + 1] + centre.unsqueeze(-1), weight[..., pad + 1 :]], -1)
        # Channels-last, like the activations, so that the convolution does not convert it per call.
        temporal = weight.unsqueeze(-1).contiguous(memory_format=torch.channels_last)
    joint_bias = (qk @ block.joint_encoding).t() + block.qk.bias  # [V, 2S·I]
    joint_bias = joint_bias.view(block.num_joints, 2 * heads, -1).transpose(0, 1)  # [2S, V, I]
    query_bias, key_bias = joint_bias[:heads], joint_bias[heads:]
    query_map, key_map = qk.view(2, heads, -1, qk.shape[1]).unbind(0)  # [S, I, C] each
    return BlockWeights(
        qk=qk, attend=attend, attend_bias=attend_bias, skip=skip, skip_bias=skip_bias, mix=mix, mix_bias=mix_bias,
        temporal=temporal, temporal_bias=temporal_bias,
        query_offset=torch.matmul(query_map.transpose(1, 2), key_bias.transpose(1, 2)),
        key_offset=torch.matmul(query_bias, key_map),
        bias_product=torch.matmul(query_bias, key_bias.transpose(-1, -2)),
    )


def stack(tensors: Sequence[Tensor]) -> Tensor:
    """``torch.stack`` that is a view for a single tensor."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(list(tensors))


def score_offsets(weights: BlockWeights, x: Tensor, frame_weights: Tensor | None) -> Tensor:
    """The constant terms of ``sum_t (q_t[u] + a_u)·(k_t[v] + c_v)``: ``[N, S, U, V]``.

    ``q``, ``k`` are the bias-free maps of ``x`` ``[N, T, V, C]``; ``a``, ``c`` the per-joint biases
    of the queries and keys (the map's bias plus the map of the joint encoding the reference adds to
    ``x``). With ``x̄ = sum_t w_t x_t`` the offsets are
    ``x̄_u W_qᵀ c_v + a_u W_k x̄_v + (sum_t w_t) a_u·c_v``; ``frame_weights`` ``[N, T]`` (valid frames)
    or ``None`` for all frames.
    """
    N, T = x.shape[:2]
    if frame_weights is None:
        pooled, count = x.sum(1), float(T)
    else:
        pooled, count = torch.einsum("ntvc,nt->nvc", x, frame_weights), frame_weights.sum(1).view(N, 1, 1, 1)
    pooled = pooled.unsqueeze(1)  # [N, 1, V, C]
    offsets = torch.matmul(pooled, weights.query_offset)
    offsets = offsets + torch.matmul(weights.key_offset, pooled.transpose(-1, -2))
    return offsets + count * weights.bias_product


def paper_attention(block: AttentionBlock, weights: BlockWeights, x: Tensor, q: Tensor, k: Tensor) -> Tensor:
    """``tanh(q·k / (I T)) · alpha + G`` per head: ``[N, S, U, V]`` from the bias-free ``q``, ``k``
    ``[N, S, I·T, V]`` of ``x``."""
    N, heads, depth, V = q.shape
    offsets = score_offsets(weights, x, None)
    scores = stack([torch.baddbmm(on, qn.transpose(1, 2), kn) for on, qn, kn in zip(offsets, q, k)])  # [N, S, U, V]
    return torch.addcmul(block.global_attention, torch.tanh(scores / depth), block.alpha.view(heads, 1, 1))


def softmax_attention(
    block: AttentionBlock, weights: BlockWeights, x: Tensor, q: Tensor, k: Tensor, lengths: Tensor,
    hidden: Tensor | None,
) -> Tensor:
    """Softmax attention weights over joints from scaled_dot_product_attention: ``[N, S, V, U]``.

    Joint ``v`` reads joint ``u`` with weight ``softmax_u(alpha k_v·q_u / sqrt(I T_valid) + G[u, v])``
    per head, from the bias-free ``q``, ``k`` ``[N, S, I·T, V]`` of ``x``. The value is the identity,
    so the kernel returns the weights themselves (a ``[V, V]`` output instead of one as wide as a
    clip); they then mix the joints in one product, as in paper mode. Padded frames do not enter the
    scores, and joints whose confidence is zero on every frame are hidden unless every joint of the
    clip is.
    """
    N, heads, depth, V = q.shape
    T = x.shape[1]
    inter = depth // T
    valid = frame_mask(lengths, T).to(q.dtype)  # [N, T]
    frames = lengths.clamp(min=1).to(q.dtype).view(N, 1, 1, 1)
    scale = block.alpha.view(1, heads, 1, 1) * torch.rsqrt(frames * inter)  # [N, S, 1, 1]
    # Reading joint v is the query, so k is the query side of the product and q the key side.
    masked = k.view(N, heads, inter, T, V) * (scale.unsqueeze(-1) * valid.view(N, 1, 1, T, 1))
    query = masked.view(N, heads, depth, V).transpose(-1, -2)
    key = q.transpose(-1, -2)
    bias = (score_offsets(weights, x, valid) * scale + block.global_attention).transpose(-1, -2)  # [N, S, V, U]
    if hidden is not None:
        bias = bias + hidden.to(bias.dtype).mul(_HIDDEN).view(N, 1, 1, V)
    identity = torch.eye(V, dtype=query.dtype, device=query.device).expand(N, heads, V, V)
    dropout = block.attention_dropout if block.training else 0.0
    return F.scaled_dot_product_attention(
        query, key, identity, attn_mask=bias.to(query.dtype), dropout_p=dropout, scale=1.0
    )


def temporal(block: AttentionBlock, weights: BlockWeights, y: Tensor) -> Tensor:
    """The temporal convolution with its skip and LeakyReLU: ``[N, T, V, C]`` to ``[N, T', V, C]``."""
    frames = y.permute(0, 3, 1, 2)  # [N, C, T, V] over channels-last memory
    z = F.conv2d(frames, weights.temporal, weights.temporal_bias, stride=(block.stride, 1),
                 padding=(block.kernel // 2, 0)).permute(0, 2, 3, 1)
    if block.training:
        z = batch_norm(z, block.temporal.norm)
        if block.skip_temporal is not None:
            # A strided 1×1 convolution reads every stride-th frame (as a product: the channels-last
            # strided 1×1 convolution's backward is not reliable on every CPU build).
            picked = y[:, :: block.stride].reshape(-1, y.shape[-1])
            z = z + linear_norm(block.skip_temporal, picked, True).view_as(z)
        else:
            z = z + y
    return F.leaky_relu(z, LEAKY_SLOPE, inplace=not block.training).contiguous()


def linear_norm(module: ConvNorm, rows: Tensor, training: bool) -> Tensor:
    """A 1×1 :class:`ConvNorm` on ``rows`` ``[M, C]``: ``[M, out]`` (its norm folded in eval mode)."""
    weight, bias = affine(module, training)
    mapped = torch.addmm(bias, rows, weight.t())
    return batch_norm(mapped, module.norm) if training else mapped


def affine(module: ConvNorm, training: bool) -> tuple[Tensor, Tensor]:
    """``(weight [out, in], bias [out])`` of a 1×1 map; its norm is folded in eval mode."""
    if training:
        return module.conv.weight.flatten(1), module.conv.bias
    weight, bias = module.folded()
    return weight.flatten(1), bias


def batch_norm(y: Tensor, norm: nn.BatchNorm2d) -> Tensor:
    """Training-mode batch norm of channels-last ``y`` ``[..., C]`` over every other axis.

    Updates ``norm``'s running statistics as :class:`torch.nn.BatchNorm2d` does.
    """
    C = y.shape[-1]
    flat = y.reshape(-1, C)
    count = flat.shape[0]
    var, mean = torch.var_mean(flat, dim=0, correction=0)
    scale = norm.weight * torch.rsqrt(var + norm.eps)
    shift = norm.bias - mean * scale
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), factor)
        norm.running_var.lerp_((var * (count / max(count - 1, 1))).to(norm.running_var.dtype), factor)
    return torch.addcmul(shift, y, scale)


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


def hidden_joints(points: Tensor, lengths: Tensor) -> Tensor:
    """``[N, V]`` bool from ``points`` ``[N, T, V, C]``: joints whose confidence (channel 2) is zero
    on every valid frame.

    A clip whose joints are all hidden (the stream is missing) hides none, so that attention stays
    defined; its features then come from the zero-confidence input like any other.
    """
    N, T, V, C = points.shape
    if C < 3:
        return torch.zeros(N, V, dtype=torch.bool, device=points.device)
    valid = frame_mask(lengths, T).view(N, T, 1)
    seen = ((points[..., 2] > 0) & valid).any(dim=1)  # [N, V]
    return ~seen & seen.any(dim=-1, keepdim=True)


# -- the keypoint branch ---------------------------------------------------------------------------


class KeypointBranch(nn.Module):
    """The keypoint encoder of one stream: a 1×1 input map with batch norm and LeakyReLU, then the
    attention blocks; features are averaged over the joints.

    ``joints`` are the stream's indices in the batch's layout (a non-persistent buffer).
    """

    def __init__(self, joints: Sequence[int], model_cfg: Any) -> None:
        super().__init__()
        self.num_joints = len(joints)
        self.in_channels = model_cfg.in_channels
        self.out_channels = model_cfg.channels[-1]
        self.register_buffer("joints", torch.tensor(list(joints), dtype=torch.long), persistent=False)
        self.input_map = ConvNorm(model_cfg.in_channels, model_cfg.channels[0])
        blocks = []
        in_channels = model_cfg.channels[0]
        for out_channels, inter, kernel, stride in zip(
            model_cfg.channels, model_cfg.inter_channels, model_cfg.temporal_kernels, model_cfg.strides
        ):
            blocks.append(
                AttentionBlock(
                    in_channels, out_channels, inter, self.num_joints,
                    num_heads=model_cfg.num_heads, temporal_kernel=kernel, stride=stride,
                    attention=model_cfg.attention, attention_dropout=model_cfg.attention_dropout,
                )
            )
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, points: Tensor, lengths: Tensor) -> Tensor:
        """``points`` ``[N, T, V, C]`` (this stream's joints) and ``lengths`` ``[N]`` to ``[N, T', C_out]``."""
        x = points.contiguous()  # [N, T, V, C]: time-major, channels-last
        N, T, V, C = x.shape
        hidden = hidden_joints(x, lengths) if self.blocks[0].attention == "softmax" else None
        x = linear_norm(self.input_map, x.view(N * T * V, C), self.training)
        x = F.leaky_relu(x, LEAKY_SLOPE, inplace=True).view(N, T, V, -1)
        for block in self.blocks:
            x = run_block(block, x, lengths, hidden)
            lengths = block.output_length(lengths)
        return x.mean(dim=2)


# -- the crop branch -------------------------------------------------------------------------------


class CropBranch(nn.Module):
    """Per-frame image crops through a backbone, projected and pooled in time to the keypoint rate.

    ``backbone`` is any module mapping ``[N, 3, H, W]`` to ``[N, feature_dim]``; only the valid
    frames of each clip go through it. Output frame ``t'`` averages the valid frames
    ``[t'·factor, (t'+1)·factor)``.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim, self.out_dim, self.factor = feature_dim, out_dim, factor
        self.project = nn.Linear(feature_dim, out_dim)

    def forward(self, crops: Tensor, lengths: Tensor, frames_out: int) -> Tensor:
        """``crops`` ``[N, T, 3, H, W]`` to ``[N, frames_out, out_dim]``."""
        N, T = crops.shape[:2]
        valid = frame_mask(lengths, T)
        features = self.project(self.backbone(crops[valid]))  # [n_valid, D]
        per_frame = features.new_zeros(N, T, self.out_dim).masked_scatter(valid.unsqueeze(-1), features)
        span = frames_out * self.factor
        weights = valid.to(per_frame.dtype)
        if span > T:
            per_frame = F.pad(per_frame, (0, 0, 0, span - T))
            weights = F.pad(weights, (0, span - T))
        sums = per_frame[:, :span].reshape(N, frames_out, self.factor, self.out_dim).sum(2)
        counts = weights[:, :span].reshape(N, frames_out, self.factor).sum(2, keepdim=True)
        return sums / counts.clamp(min=1.0)


class StreamBranch(nn.Module):
    """One stream: a keypoint branch and/or a crop branch (either may be ``None``)."""

    def __init__(self, keypoint: nn.Module | None, crop: CropBranch | None) -> None:
        super().__init__()
        self.keypoint = keypoint
        self.crop = crop

    @property
    def out_channels(self) -> int:
        width = getattr(self.keypoint, "out_channels", 0) if self.keypoint is not None else 0
        return width + (self.crop.out_dim if self.crop is not None else 0)


# -- the VisualHead --------------------------------------------------------------------------------


class VisualHead(nn.Module):
    """The reference's recognition head: linear map, masked batch norm, ReLU, sinusoidal positions,
    a convolutional feed-forward block with a residual, layer norm, and a linear gloss classifier."""

    def __init__(self, in_dim: int, vocab_size: int, *, hidden: int, ff: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.in_dim, self.hidden = in_dim, hidden
        self.project = nn.Linear(in_dim, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.dropout = nn.Dropout(dropout)
        self.ff_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ff_expand = nn.Conv1d(hidden, ff, kernel, padding="same")
        self.ff_contract = nn.Conv1d(ff, hidden, kernel, padding="same")
        self.out_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.classifier = nn.Linear(hidden, vocab_size)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, T, D]`` and ``mask`` ``[B, T]`` to ``(features [B, T, H], logits [B, T, V])``."""
        h = self.masked_norm(dense(x, self.project.weight, self.project.bias), mask)
        h = F.relu(h) + sinusoid(h.shape[1], self.hidden).to(device=h.device, dtype=h.dtype)
        h = self.dropout(h)
        f = self.dropout(F.relu(conv_over_time(self.ff_norm(h), self.ff_expand)))
        f = self.dropout(conv_over_time(f, self.ff_contract))
        h = self.out_norm(h + f)
        return h, dense(h, self.classifier.weight, self.classifier.bias)

    def masked_norm(self, h: Tensor, mask: Tensor) -> Tensor:
        """Batch norm whose training statistics come from valid frames only (padding left as is)."""
        norm = self.norm
        if not self.training or int(mask.sum()) < 2:
            return F.batch_norm(h.reshape(-1, self.hidden), norm.running_mean, norm.running_var,
                                norm.weight, norm.bias, False, 0.0, norm.eps).view_as(h)
        selected = norm(h[mask])
        return h.masked_scatter(mask.unsqueeze(-1), selected)


def conv_over_time(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv`` (``padding="same"``, zeros) over ``x`` ``[B, T, C]`` as one product of the
    ``[B·T, C·k]`` windows: ``[B, T, out]``, without leaving the channels-last layout."""
    kernel = conv.kernel_size[0]
    left = (kernel - 1) // 2
    padded = F.pad(x, (0, 0, left, kernel - 1 - left))
    windows = padded.unfold(1, kernel, 1)  # [B, T, C, k]
    return dense(windows.reshape(x.shape[0] * x.shape[1], -1), conv.weight.flatten(1), conv.bias).view(
        x.shape[0], x.shape[1], -1
    )


def dense(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` of ``x`` ``[..., in]``, computed as ``(weight · xᵀ)ᵀ`` when there are few rows.

    A VisualHead sees one row per output frame (25 for a 100-frame clip) against weights of up to
    12 MiB; with the weight as the product's left side the CPU kernels stream it once instead of
    packing it, about a third faster for such shapes. The result is the same up to float rounding.
    """
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] >= _FEW_ROWS or rows.device.type != "cpu":
        return F.linear(x, weight, bias)
    out = torch.mm(weight, rows.t()) if bias is None else torch.addmm(bias.unsqueeze(1), weight, rows.t())
    return out.t().reshape(*x.shape[:-1], weight.shape[0])


# -- the encoder -----------------------------------------------------------------------------------


class MSKAEncoder(nn.Module):
    """The multi-stream encoder: one branch per selected stream, fusion by concatenation, one
    VisualHead per head.

    Build it with :meth:`from_config`. Attributes: ``stream_names``, ``specs`` (name ->
    StreamSpec), ``branches`` (name -> :class:`StreamBranch`), ``heads`` (name -> :class:`VisualHead`),
    ``head_streams`` (name -> stream names), ``vocab_size``. Every parameter exists after
    ``__init__`` and ``state_dict()`` keys never change.
    """

    def __init__(
        self,
        model_cfg: Any,
        specs: Mapping[str, Any],
        *,
        num_joints: int,
        vocab_size: int,
        backbones: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        from mska_core.config import StreamConfig

        backbones = dict(backbones or {})
        self.layout = model_cfg.layout
        self.num_joints = num_joints
        self.in_channels = model_cfg.in_channels
        self.vocab_size = vocab_size
        self.stream_names = list(specs)
        self.specs = dict(specs)
        self.kernels = tuple(model_cfg.temporal_kernels)
        self.strides = tuple(model_cfg.strides)
        self.factor = math.prod(self.strides)
        branches = {}
        for name, spec in self.specs.items():
            stream_cfg = model_cfg.streams.get(name, StreamConfig())
            branches[name] = build_stream(spec, model_cfg, stream_cfg, backbones.get(name), self.factor)
        self.branches = nn.ModuleDict(branches)
        self.head_streams = resolve_heads(model_cfg, self.stream_names)
        self.heads = nn.ModuleDict({
            head: VisualHead(
                sum(self.branches[s].out_channels for s in streams), vocab_size,
                hidden=model_cfg.head_hidden, ff=model_cfg.head_ff, kernel=model_cfg.head_kernel,
                dropout=model_cfg.head_dropout,
            )
            for head, streams in self.head_streams.items()
        })
        self.feature_dropout = nn.Dropout(model_cfg.dropout)
        for name, branch in self.branches.items():
            if model_cfg.streams.get(name, StreamConfig()).freeze:
                branch.requires_grad_(False)

    @classmethod
    def from_config(
        cls,
        model_cfg: Any,
        *,
        vocab_size: int | None = None,
        registry: Any = None,
        backbones: Mapping[str, nn.Module] | None = None,
    ) -> MSKAEncoder:
        """The encoder ``model_cfg`` describes, over the streams the registry supplies.

        ``vocab_size`` overrides ``model_cfg.vocab_size`` (one must be set). ``backbones`` gives
        ready crop backbones by stream; other streams with ``backbone`` set load theirs through
        :func:`mska_core.backbones.load_backbone`.
        """
        if registry is None:
            from mska_core.registry import get_registry

            registry = get_registry()
        vocab = vocab_size if vocab_size is not None else model_cfg.vocab_size
        if vocab is None:
            raise ConfigError("model.vocab_size is not set: set it in [model] or pass vocab_size (e.g. --vocab-size)")
        if vocab <= 0:
            raise ConfigError(f"vocab_size must be positive, got {vocab}")
        try:
            layout = registry.layouts.get(model_cfg.layout)
        except RegistryError as exc:
            raise ConfigError(f"model.layout: {exc}") from None
        specs = select_streams(model_cfg, registry)
        loaded = dict(backbones or {})
        for name in specs:
            stream_cfg = model_cfg.streams.get(name)
            if stream_cfg is not None and stream_cfg.backbone and name not in loaded:
                from mska_core.backbones import load_backbone

                loaded[name] = load_backbone(stream_cfg.backbone, img_size=stream_cfg.img_size, registry=registry)
        return cls(model_cfg, specs, num_joints=layout.num_joints, vocab_size=vocab, backbones=loaded)

    def output_length(self, length: Any) -> Any:
        """Output frames for ``length`` input frames (an int or a long tensor): the blocks' convolutions."""
        for kernel, stride in zip(self.kernels, self.strides):
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        return length

    def forward(self, batch: ClipBatch) -> EncoderOutput:
        """Encode ``batch``; see :class:`EncoderOutput`."""
        keypoints = self.check_keypoints(batch.keypoints)
        B, T = keypoints.shape[:2]
        lengths = batch.lengths.to(keypoints.device).long().clamp(1, T)
        frames_out = self.output_length(T)
        out_lengths = self.output_length(lengths).clamp(1, frames_out)
        mask = frame_mask(out_lengths, frames_out)

        features: dict[str, Tensor] = {}
        for name in self.stream_names:
            branch = self.branches[name]
            if branch.keypoint is None:
                continue
            points = keypoints.index_select(2, self.joint_index(name, keypoints.device))  # [B, T, V, C]
            if isinstance(branch.keypoint, KeypointBranch):
                features[name] = branch.keypoint(points, lengths)
            else:
                features[name] = branch.keypoint(points)
        for name in self.stream_names:
            crop = self.branches[name].crop
            if crop is None:
                continue
            if batch.crops is None or name not in batch.crops:
                raise DataError(
                    f"stream {name!r} has a crop backbone but the batch has no crops for it; "
                    "enable crops in [data] or unset model.streams.{name}.backbone"
                )
            encoded = crop(batch.crops[name], lengths, frames_out)
            features[name] = torch.cat([features[name], encoded], -1) if name in features else encoded
        features = {name: self.feature_dropout(features[name]) for name in self.stream_names}

        head_inputs, logits, gloss_features = {}, {}, {}
        for head, streams in self.head_streams.items():
            fused = torch.cat([features[s] for s in streams], -1) if len(streams) > 1 else features[streams[0]]
            head_inputs[head] = fused
            gloss_features[head], logits[head] = self.heads[head](fused, mask)
        return EncoderOutput(features, head_inputs, out_lengths, logits, gloss_features, mask)

    def joint_index(self, name: str, device: Any) -> Tensor:
        """The joints of stream ``name`` in this model's layout, as a long tensor on ``device``."""
        keypoint = self.branches[name].keypoint
        if isinstance(keypoint, KeypointBranch):
            return keypoint.joints
        return torch.tensor(self.specs[name].joints_for(self.layout), dtype=torch.long, device=device)

    def check_keypoints(self, keypoints: Tensor) -> Tensor:
        if keypoints.dim() != 4:
            raise DataError(f"keypoints must be [B, T, J, C], got shape {tuple(keypoints.shape)}")
        _, T, J, C = keypoints.shape
        if J != self.num_joints or C != self.in_channels:
            raise DataError(
                f"keypoints have {J} joints and {C} channels; layout {self.layout!r} of this model needs "
                f"{self.num_joints} joints and model.in_channels = {self.in_channels}"
            )
        if T == 0:
            raise DataError("keypoints have no frames")
        # Missing detections sometimes arrive as NaN: they become zeros, like an undetected joint.
        return torch.nan_to_num(keypoints.float() if not keypoints.is_floating_point() else keypoints,
                                nan=0.0, posinf=0.0, neginf=0.0)

    def parameter_table(self) -> dict[str, Any]:
        """Parameter counts per stream (keypoint branch, crop backbone, crop projection), per head, and totals."""
        def count(module: nn.Module | None) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        streams = {}
        for name, branch in self.branches.items():
            crop = branch.crop
            entry = {
                "keypoint": count(branch.keypoint),
                "crop_backbone": count(crop.backbone) if crop is not None else 0,
                "crop_projection": count(crop.project) if crop is not None else 0,
                "features": branch.out_channels,
            }
            entry["total"] = entry["keypoint"] + entry["crop_backbone"] + entry["crop_projection"]
            streams[name] = entry
        heads = {
            name: {"streams": list(self.head_streams[name]), "input_dim": head.in_dim, "total": count(head)}
            for name, head in self.heads.items()
        }
        encoder = sum(s["total"] for s in streams.values())
        head_total = sum(h["total"] for h in heads.values())
        return {"vocab_size": self.vocab_size, "streams": streams, "heads": heads,
                "encoder_total": encoder, "heads_total": head_total, "total": count(self)}


# -- constructor helpers ---------------------------------------------------------------------------


def select_streams(model_cfg: Any, registry: Any) -> dict[str, Any]:
    """``{name: StreamSpec}`` of the streams ``model_cfg`` selects, in order."""
    from mska_core.config.checks import selected_streams

    names = selected_streams(model_cfg, registry)
    if not names:
        raise ConfigError(
            f"model: no stream has joints in layout {model_cfg.layout!r}; install a stream plugin or "
            "name streams under [model.streams.<name>]"
        )
    specs = {}
    for name in names:
        try:
            specs[name] = registry.streams.get(name)
        except RegistryError as exc:
            raise ConfigError(f"model.streams.{name}: {exc}") from None
    return specs


def resolve_heads(model_cfg: Any, stream_names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The heads of ``[model.heads]``, or the default scheme for the selected streams.

    Default: the paper's four heads when exactly the paper's four streams are selected; otherwise a
    ``fuse`` head over every stream plus one head per stream (only ``fuse`` for a single stream).
    """
    if model_cfg.heads:
        heads = {name: tuple(head.streams) for name, head in model_cfg.heads.items()}
        for name, streams in heads.items():
            if not streams:
                raise ConfigError(f"model.heads.{name}.streams: a head needs at least one stream")
            for stream in streams:
                if stream not in stream_names:
                    raise ConfigError(
                        f"model.heads.{name}.streams: {stream!r} is not a selected stream; "
                        f"selected: {', '.join(stream_names)}"
                    )
        return heads
    if sorted(stream_names) == sorted(PAPER_STREAMS):
        return dict(PAPER_HEADS)
    heads = {"fuse": tuple(stream_names)}
    if len(stream_names) > 1:
        heads.update({name: (name,) for name in stream_names})
    return heads


def build_stream(spec: Any, model_cfg: Any, stream_cfg: Any, backbone: nn.Module | None, factor: int) -> StreamBranch:
    """The :class:`StreamBranch` of one stream: its keypoint branch (the core's, or the plugin's
    ``build_encoder``) when it has joints in the layout and ``keypoints`` is on; its crop branch
    when a backbone is set."""
    joints = spec.joints_for(model_cfg.layout)
    keypoint: nn.Module | None = None
    if stream_cfg.keypoints and joints:
        if spec.build_encoder is not None:
            keypoint = spec.build_encoder(spec, model_cfg, stream_cfg, model_cfg.layout)
            if not isinstance(getattr(keypoint, "out_channels", None), int):
                raise ConfigError(
                    f"stream {spec.name!r}: the encoder from {spec.provider} has no int attribute out_channels"
                )
        else:
            keypoint = KeypointBranch(joints, model_cfg)
    crop = None
    if stream_cfg.backbone:
        if not spec.crops:
            raise ConfigError(f"model.streams.{spec.name}.backbone: stream {spec.name!r} does not read image crops")
        if backbone is None:
            raise ConfigError(f"model.streams.{spec.name}.backbone: no backbone was loaded for {stream_cfg.backbone!r}")
        crop = CropBranch(backbone, backbone_width(spec.name, backbone), model_cfg.crop_dim, factor)
    elif backbone is not None:
        crop = CropBranch(backbone, backbone_width(spec.name, backbone), model_cfg.crop_dim, factor)
    if keypoint is None and crop is None:
        raise ConfigError(
            f"model.streams.{spec.name}: stream {spec.name!r} has no joints in layout {model_cfg.layout!r} "
            "(or keypoints = false) and no backbone; set a backbone or choose another layout"
        )
    return StreamBranch(keypoint, crop)


def backbone_width(stream: str, backbone: nn.Module) -> int:
    width = getattr(backbone, "feature_dim", None)
    if not isinstance(width, int) or width <= 0:
        raise ConfigError(
            f"stream {stream!r}: the crop backbone {type(backbone).__name__} has no positive int feature_dim; "
            "crop backbones map [N, 3, H, W] to [N, feature_dim]"
        )
    return width


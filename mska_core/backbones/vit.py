"""DINOv2-style ViTs built with timm, and the conversion of every weight layout they accept.

The built model is timm's ``VisionTransformer`` with the DINOv2 settings (patch 14, layer scale,
LayerNorm eps 1e-6, ``vit_*_patch14_reg4_dinov2`` when it has registers), no classifier, and the
class token after the final norm as its output: DINOv2's ``x_norm_clstoken``. It carries
``feature_dim``, ``arch`` and ``arch_config`` so that exports can record how to rebuild it.

Weight layouts, all turned into timm's by :func:`convert_state_dict`:

- official DINOv2 (``mask_token``, ``pos_embed`` of 1 + 37 x 37 tokens, ``register_tokens``,
  SwiGLU ``mlp.w12``/``mlp.w3`` for ViT-g, ``blocks.CHUNK.N.`` when saved with block chunks);
- DINO v1 and DINO-style training checkpoints (a ViT under ``module.backbone.``, ``backbone.``,
  ``teacher.`` ... with a ``head.`` beside it; layer scale absent means a scale of one);
- timm's own and our exports; Lightning ``model.``/``backbone.`` prefixes; ``module.`` (DDP) and
  ``_orig_mod.`` (torch.compile) anywhere.

The position embedding is resampled to the grid of the requested image size: official weights the
way the official ``interpolate_pos_encoding`` does it at run time (so features match the official
model on the same input), timm-layout weights the way timm's ``resample_abs_pos_embed`` does.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mska_core.backbones.archs import ARCHS, CONFIG_KEYS
from mska_core.checkpoints.schema import strip_wrappers
from mska_core.errors import BackboneError

_ROOT_KEY = "patch_embed.proj.weight"
_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.")


def resolve_config(arch: str, **overrides: Any) -> dict[str, Any]:
    """The complete ``arch_config`` of ``arch`` with ``overrides`` applied (``None`` values ignored)."""
    if arch not in ARCHS:
        raise BackboneError(f"unknown built-in architecture {arch!r}; built-in: {', '.join(ARCHS)}")
    unknown = sorted(set(overrides) - set(CONFIG_KEYS))
    if unknown:
        raise BackboneError(
            f"{arch}: unknown arch_config key(s) {', '.join(unknown)}; valid: {', '.join(CONFIG_KEYS)}"
        )
    config = dict(ARCHS[arch][0])
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["img_size"] % config["patch_size"]:
        raise BackboneError(
            f"{arch}: img_size {config['img_size']} is not a multiple of the patch size "
            f"{config['patch_size']}; use e.g. {config['patch_size'] * max(1, config['img_size'] // config['patch_size'])}"
        )
    return config


def crop_attention(device: torch.device | str) -> contextlib.AbstractContextManager:
    """The attention kernel for a crop ViT's forward and backward on ``device``.

    A crop ViT sees a few dozen tokens (65 at 112 px, 17 at 56 px, patch 14). For sequences that
    short, torch's CPU flash-attention kernel costs more than the plain product + softmax + product
    of its math kernel, forward and backward (``python -m bench.cpu_kernels``; bench/RESULTS.md), so
    on the CPU this selects the math kernel; elsewhere it leaves torch's choice. The results are the
    same up to float rounding.
    """
    if torch.device(device).type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def build_vit(arch: str, **arch_config: Any) -> nn.Module:
    """Build ``arch`` (randomly initialised) with ``arch_config`` overriding its defaults.

    The module maps ``[N, 3, H, W]`` to ``[N, embed_dim]`` (the normalised class token) and accepts
    other image sizes than ``img_size`` too (timm's dynamic resizing of the position embedding).
    """
    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import VisionTransformer

    config = resolve_config(arch, **arch_config)
    extra: dict[str, Any] = {}
    mlp_ratio = float(config["mlp_ratio"])
    if config["ffn"] == "swiglu":
        # DINOv2's SwiGLU hidden width, packed as timm's fc1 (= the official w12, two halves)
        hidden = (int(config["embed_dim"] * mlp_ratio * 2 / 3) + 7) // 8 * 8
        mlp_ratio = (2 * hidden + 0.5) / config["embed_dim"]
        extra = {"mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU}
    elif config["ffn"] != "mlp":
        raise BackboneError(f"{arch}: arch_config ffn must be 'mlp' or 'swiglu', got {config['ffn']!r}")
    model = VisionTransformer(
        img_size=config["img_size"],
        patch_size=config["patch_size"],
        embed_dim=config["embed_dim"],
        depth=config["depth"],
        num_heads=config["num_heads"],
        mlp_ratio=mlp_ratio,
        init_values=config["init_values"],
        reg_tokens=config["reg_tokens"],
        no_embed_class=config["reg_tokens"] > 0,
        num_classes=0,
        global_pool="token",
        dynamic_img_size=True,
        drop_path_rate=config["drop_path_rate"],
        **extra,
    )
    model.feature_dim = int(config["embed_dim"])
    model.arch = arch
    model.arch_config = config
    return model


# -- conversion -----------------------------------------------------------------------------------


def find_vit_root(keys: list[str], *, where: str = "state dict") -> str:
    """The prefix under which a ViT's keys live (``""``, ``"backbone."``, ``"teacher.backbone."`` ...)."""
    roots = sorted({k[: -len(_ROOT_KEY)] for k in keys if k.endswith(_ROOT_KEY)}, key=len)
    if not roots:
        sample = ", ".join(keys[:4]) or "no keys"
        raise BackboneError(
            f"{where} holds no ViT weights (no '*{_ROOT_KEY}' key); its keys start with: {sample}"
        )
    if len(roots) == 1:
        return roots[0]
    teachers = [r for r in roots if "teacher" in r]
    if len(teachers) == 1:
        return teachers[0]
    raise BackboneError(
        f"{where} holds several ViTs (under {', '.join(repr(r) for r in roots)}); "
        "save the one you want on its own"
    )


def is_official_layout(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` (a bare ViT) is in the official DINOv2 layout rather than timm's."""
    return (
        "mask_token" in state_dict
        or "register_tokens" in state_dict
        or any(".mlp.w12." in k for k in state_dict)
        or any(_CHUNKED.match(k) for k in state_dict)
    )


def convert_state_dict(
    state_dict: Mapping[str, Any], *, arch: str, img_size: int | None = None
) -> dict[str, Any]:
    """Turn a ViT state dict in any accepted layout into the timm layout ``build_vit(arch)`` makes.

    ``img_size`` sets the grid the position embedding is resampled to (``None`` keeps the weights'
    own grid). Keys outside the ViT (a DINO head, a student beside the teacher) are dropped.
    """
    config = resolve_config(arch)
    flat = strip_wrappers(state_dict)
    root = find_vit_root(list(flat))
    vit = {k[len(root):]: v for k, v in flat.items() if k.startswith(root)}
    grid = None if img_size is None else img_size // int(config["patch_size"])
    if is_official_layout(vit):
        vit = official_to_timm(
            vit,
            grid=grid,
            offset=float(config["interpolate_offset"]),
            antialias=bool(config["interpolate_antialias"]),
        )
    else:
        vit = _timm_resample(vit, grid)
    return _fill_layer_scale(vit, config)


def official_to_timm(
    state_dict: Mapping[str, Any], *, grid: int | None = None, offset: float = 0.1, antialias: bool = False
) -> dict[str, Any]:
    """Rename an official DINOv2 state dict to timm's layout, resampling ``pos_embed`` to ``grid``.

    Written here rather than taken from timm's ``checkpoint_filter_fn`` because it is more correct
    for the released models without registers: they resample position embeddings with an offset of
    0.1 and no antialiasing, which timm's converter does not reproduce. Measured against the
    official ``DinoVisionTransformer`` by ``python -m bench.dinov2_conversion --dinov2-src DIR``:
    timm's conversion gives ViT-S/14 features 2.1 % off at 112 px (0.9 % at 224 px), this one gives
    identical features; with registers both are exact.

    With registers, timm adds no position to the class token (``no_embed_class``), so the official
    class position is folded into ``cls_token``; the registers become ``reg_token``.
    """
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key == "mask_token":
            continue
        key = _CHUNKED.sub(r"blocks.\1.", key)
        key = key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
        out[key] = value
    pos = out["pos_embed"]  # [1, 1 + M*M, D]: class position, then the patch grid
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    if grid is not None:
        patch_pos = resample_official(patch_pos, grid, offset=offset, antialias=antialias)
    if "register_tokens" in out:
        out["reg_token"] = out.pop("register_tokens")
        out["cls_token"] = out["cls_token"] + cls_pos
        out["pos_embed"] = patch_pos
    else:
        out["pos_embed"] = torch.cat([cls_pos, patch_pos], dim=1)
    return out


def timm_to_official(state_dict: Mapping[str, Any], *, embed_dim: int | None = None) -> dict[str, Any]:
    """The reverse of :func:`official_to_timm` (no resampling): timm layout to official DINOv2 keys.

    A timm model with registers has no class position; the official one gets a zero class position
    and the timm class token, which gives the same tokens.
    """
    out = dict(state_dict)
    fc1 = [k for k in out if k.endswith(".mlp.fc1.weight")]
    fc2 = [k for k in out if k.endswith(".mlp.fc2.weight")]
    # SwiGLU packs gate and value in fc1, which is then twice as wide as what fc2 reads
    if fc1 and fc2 and out[fc1[0]].shape[0] == 2 * out[fc2[0]].shape[1]:
        out = {k.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3."): v for k, v in out.items()}
    dim = embed_dim or int(out["cls_token"].shape[-1])
    if "reg_token" in out:
        out["register_tokens"] = out.pop("reg_token")
        pos = out["pos_embed"]
        out["pos_embed"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    out["mask_token"] = torch.zeros(1, dim, dtype=out["cls_token"].dtype)
    return out


def resample_official(patch_pos: torch.Tensor, grid: int, *, offset: float, antialias: bool) -> torch.Tensor:
    """Resample ``[1, M*M, D]`` patch positions to ``[1, grid*grid, D]`` as official DINOv2 does.

    Official ``interpolate_pos_encoding``: bicubic on the ``M x M`` grid; with an offset it passes
    ``scale_factor=(grid + offset) / M`` (not a size, so the sampling positions differ slightly
    from a plain resize), without one ``size=grid``; antialias as configured; float32 inside.
    """
    count, dim = patch_pos.shape[1], patch_pos.shape[2]
    side = math.isqrt(count)
    if side * side != count:
        raise BackboneError(f"pos_embed has {count} patch positions, not a square grid")
    if side == grid:
        return patch_pos
    grid_in = patch_pos.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if offset:
        scale = float(grid + offset) / side
        resized = F.interpolate(grid_in, scale_factor=(scale, scale), mode="bicubic", antialias=antialias)
    else:
        resized = F.interpolate(grid_in, size=(grid, grid), mode="bicubic", antialias=antialias)
    if resized.shape[-2:] != (grid, grid):
        raise BackboneError(f"resampling pos_embed from {side}x{side} gave {tuple(resized.shape[-2:])}, not {grid}x{grid}")
    return resized.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(patch_pos.dtype)


def _timm_resample(state_dict: dict[str, Any], grid: int | None) -> dict[str, Any]:
    pos = state_dict.get("pos_embed")
    if grid is None or pos is None:
        return state_dict
    prefix = 0 if "reg_token" in state_dict else 1  # registers: timm's no_embed_class
    side = math.isqrt(pos.shape[1] - prefix)
    if side == grid or side * side != pos.shape[1] - prefix:
        return state_dict
    from timm.layers import resample_abs_pos_embed

    out = dict(state_dict)
    out["pos_embed"] = resample_abs_pos_embed(pos, new_size=(grid, grid), num_prefix_tokens=prefix)
    return out


def _fill_layer_scale(state_dict: dict[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    # A ViT without layer scale (DINO v1, plain timm) is one whose scale is one everywhere.
    if not config.get("init_values") or any(".ls1." in k for k in state_dict):
        return state_dict
    norm = state_dict.get("norm.weight")
    if norm is None:
        return state_dict
    out = dict(state_dict)
    blocks = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))})
    for index in blocks:
        for name in ("ls1", "ls2"):
            out[f"blocks.{index}.{name}.gamma"] = torch.ones_like(norm)
    return out

"""Official DINOv2 weights give the official model's features.

The reference here is a direct, functional transcription of what facebookresearch/dinov2's
``DinoVisionTransformer.forward_features`` computes from its own state dict (patch conv, class
token, ``interpolate_pos_encoding`` with its offset and antialias settings, registers inserted
after the position embedding, pre-norm blocks with layer scale, final norm, class token). It never
touches timm, so it checks our key conversion and position-embedding resampling independently.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mska_core.backbones import build_arch, load_backbone, official_to_timm, timm_to_official
from mska_core.backbones.vit import resample_official

PATCH = 14


def official_state_dict(dim: int, depth: int, *, reg: int = 0, swiglu: bool = False, grid: int = 37,
                        seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the official key layout (``pos_embed`` of 1 + grid*grid tokens)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "cls_token": rand(1, 1, dim, scale=0.5),
        "pos_embed": rand(1, 1 + grid * grid, dim, scale=0.5),
        "mask_token": torch.zeros(1, dim),
        "patch_embed.proj.weight": rand(dim, 3, PATCH, PATCH),
        "patch_embed.proj.bias": rand(dim),
        "norm.weight": 1 + rand(dim),
        "norm.bias": rand(dim),
    }
    if reg:
        sd["register_tokens"] = rand(1, reg, dim, scale=0.5)
    hidden = (int(dim * 4 * 2 / 3) + 7) // 8 * 8 if swiglu else dim * 4
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "norm1.weight": 1 + rand(dim), p + "norm1.bias": rand(dim),
            p + "attn.qkv.weight": rand(3 * dim, dim, scale=0.2), p + "attn.qkv.bias": rand(3 * dim),
            p + "attn.proj.weight": rand(dim, dim, scale=0.2), p + "attn.proj.bias": rand(dim),
            p + "ls1.gamma": 0.5 + rand(dim), p + "norm2.weight": 1 + rand(dim), p + "norm2.bias": rand(dim),
            p + "ls2.gamma": 0.5 + rand(dim),
        })
        if swiglu:
            sd.update({p + "mlp.w12.weight": rand(2 * hidden, dim, scale=0.2), p + "mlp.w12.bias": rand(2 * hidden),
                       p + "mlp.w3.weight": rand(dim, hidden, scale=0.2), p + "mlp.w3.bias": rand(dim)})
        else:
            sd.update({p + "mlp.fc1.weight": rand(hidden, dim, scale=0.2), p + "mlp.fc1.bias": rand(hidden),
                       p + "mlp.fc2.weight": rand(dim, hidden, scale=0.2), p + "mlp.fc2.bias": rand(dim)})
    return sd


def official_features(sd: dict[str, torch.Tensor], x: torch.Tensor, *, heads: int, offset: float,
                      antialias: bool) -> torch.Tensor:
    """``x_norm_clstoken`` of the official DinoVisionTransformer, computed from its state dict."""
    batch, _, height, width = x.shape
    dim = sd["cls_token"].shape[-1]
    tokens = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat([sd["cls_token"].expand(batch, -1, -1), tokens], dim=1)
    pos = sd["pos_embed"].float()
    count = pos.shape[1] - 1
    side = int(math.sqrt(count))
    rows, cols = height // PATCH, width // PATCH
    if not (tokens.shape[1] - 1 == count and height == width):
        grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        if offset:
            kwargs = {"scale_factor": ((rows + offset) / side, (cols + offset) / side)}
        else:
            kwargs = {"size": (rows, cols)}
        grid = F.interpolate(grid, mode="bicubic", antialias=antialias, **kwargs)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)
    tokens = tokens + pos
    if "register_tokens" in sd:
        regs = sd["register_tokens"].expand(batch, -1, -1)
        tokens = torch.cat([tokens[:, :1], regs, tokens[:, 1:]], dim=1)
    length = tokens.shape[1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        y = F.layer_norm(tokens, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(batch, length, dim)
        tokens = tokens + sd[p + "ls1.gamma"] * F.linear(y, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(tokens, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        if p + "mlp.w12.weight" in sd:
            x1, x2 = F.linear(y, sd[p + "mlp.w12.weight"], sd[p + "mlp.w12.bias"]).chunk(2, dim=-1)
            y = F.linear(F.silu(x1) * x2, sd[p + "mlp.w3.weight"], sd[p + "mlp.w3.bias"])
        else:
            y = F.linear(F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                         sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        tokens = tokens + sd[p + "ls2.gamma"] * y
    tokens = F.layer_norm(tokens, (dim,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return tokens[:, 0]


def _image(size: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("arch", "reg", "offset", "antialias"),
    [("dinov2_vits14", 0, 0.1, False), ("dinov2_vits14_reg", 4, 0.0, True)],
)
def test_official_dinov2_weights_give_official_features_at_112_px(tmp_path, arch, reg, offset, antialias):
    official = official_state_dict(384, 12, reg=reg)
    assert official["pos_embed"].shape == (1, 1370, 384)
    path = tmp_path / f"{arch}_pretrain.pth"
    torch.save(official, path)
    model = load_backbone(f"file::{path}:{arch}", img_size=112).eval()
    x = _image(112)
    with torch.no_grad():
        ours = model(x)
        reference = official_features(official, x, heads=6, offset=offset, antialias=antialias)
    assert ours.shape == (2, 384) and model.feature_dim == 384
    # float32: the two computations differ only by rounding, amplified through 12 random blocks
    torch.testing.assert_close(ours, reference, atol=5e-4, rtol=1e-3)


@pytest.mark.parametrize(
    ("arch", "reg", "offset", "antialias"),
    [("dinov2_vits14", 0, 0.1, False), ("dinov2_vits14_reg", 4, 0.0, True)],
)
def test_official_dinov2_conversion_is_exact_in_float64(arch, reg, offset, antialias):
    from mska_core.checkpoints import load_strict
    from mska_core.registry import get_registry

    official = {k: v.double() for k, v in official_state_dict(384, 12, reg=reg, seed=5).items()}
    model = build_arch(arch, img_size=112).double().eval()
    convert = get_registry().backbone_archs.get(arch).convert_state_dict
    load_strict(model, convert(official, img_size=112), what=arch)
    x = _image(112).double()
    with torch.no_grad():
        ours = model(x)
        reference = official_features(official, x, heads=6, offset=offset, antialias=antialias)
    torch.testing.assert_close(ours, reference, atol=1e-9, rtol=1e-9)


def test_vitg14_swiglu_official_layout_matches_official_features():
    official = official_state_dict(48, 2, swiglu=True)
    model = build_arch("dinov2_vitg14", img_size=112, embed_dim=48, depth=2, num_heads=3).eval()
    from mska_core.checkpoints import load_strict
    from mska_core.registry import get_registry

    convert = get_registry().backbone_archs.get("dinov2_vitg14").convert_state_dict
    load_strict(model, convert(official, img_size=112), what="official vitg14 layout")
    x = _image(112)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), official_features(official, x, heads=3, offset=0.1, antialias=False), atol=2e-5, rtol=1e-4
        )


def test_block_chunked_official_keys_are_accepted():
    official = official_state_dict(48, 2)
    chunked = {k.replace("blocks.1.", "blocks.0.1.").replace("blocks.0.norm", "blocks.0.0.norm")
               .replace("blocks.0.attn", "blocks.0.0.attn").replace("blocks.0.ls", "blocks.0.0.ls")
               .replace("blocks.0.mlp", "blocks.0.0.mlp"): v for k, v in official.items()}
    assert any(k.startswith("blocks.0.1.") for k in chunked)
    assert official_to_timm(chunked).keys() == official_to_timm(official).keys()


def test_interpolation_offset_matters_and_is_reproduced():
    """The official 0.1 offset samples differently from a plain resize; we follow the official one."""
    patch_pos = torch.randn(1, 37 * 37, 8, generator=torch.Generator().manual_seed(3))
    ours = resample_official(patch_pos, 8, offset=0.1, antialias=False)
    grid = patch_pos.reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    official = F.interpolate(grid, scale_factor=(8.1 / 37, 8.1 / 37), mode="bicubic", antialias=False)
    plain = F.interpolate(grid, size=(8, 8), mode="bicubic", antialias=True)
    official = official.permute(0, 2, 3, 1).reshape(1, 64, 8)
    plain = plain.permute(0, 2, 3, 1).reshape(1, 64, 8)
    torch.testing.assert_close(ours, official)
    assert (ours - plain).abs().max() > 1e-3


def test_timm_weights_renamed_to_official_and_back_give_the_same_model(tmp_path):
    timm_model = build_arch("vit_tiny_test").eval()
    official = timm_to_official(timm_model.state_dict())
    assert "mask_token" in official and official["pos_embed"].shape[1] == 1 + 8 * 8
    back = official_to_timm(official)
    assert back.keys() == timm_model.state_dict().keys()
    for key, value in timm_model.state_dict().items():
        torch.testing.assert_close(back[key], value)
    torch.save(official, tmp_path / "official.pth")
    loaded = load_backbone(f"file::{tmp_path / 'official.pth'}:vit_tiny_test").eval()
    x = _image(112)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), timm_model(x))
        torch.testing.assert_close(
            official_features(official, x, heads=3, offset=0.1, antialias=False), timm_model(x), atol=2e-5, rtol=1e-4
        )


def test_registers_round_trip_through_the_official_layout():
    from mska_core.registry import get_registry

    timm_model = build_arch("vit_tiny_test", reg_tokens=4).eval()
    official = timm_to_official(timm_model.state_dict())
    assert official["register_tokens"].shape == (1, 4, 48) and official["pos_embed"].shape[1] == 65
    x = _image(112)
    with torch.no_grad():
        torch.testing.assert_close(
            official_features(official, x, heads=3, offset=0.0, antialias=True), timm_model(x), atol=2e-5, rtol=1e-4
        )
    convert = get_registry().backbone_archs.get("vit_tiny_test").convert_state_dict
    back = convert(official)
    torch.testing.assert_close(back["cls_token"], timm_model.state_dict()["cls_token"])
    torch.testing.assert_close(back["reg_token"], timm_model.state_dict()["reg_token"])

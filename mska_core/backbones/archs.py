"""The architecture table: the DINOv2 ViTs and a tiny ViT for tests (plain data, no torch).

Every entry is the complete ``arch_config`` that :func:`mska_core.backbones.vit.build_vit` takes.
The two interpolation keys record how the official implementation resizes its position embedding
when it sees an image of another size (``interpolate_pos_encoding`` in facebookresearch/dinov2):
the plain models scale by ``(grid + 0.1) / 37`` without antialiasing, the ``_reg`` models resize to
the grid exactly with antialiasing. Weights in the official layout are resampled the same way so
that features match the official model at any image size.
"""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, Any] = {
    "img_size": 518,  # the official release: 37 x 37 patches of 14 px
    "patch_size": 14,
    "mlp_ratio": 4.0,
    "ffn": "mlp",
    "reg_tokens": 0,
    "init_values": 1e-5,
    "drop_path_rate": 0.0,
    "interpolate_offset": 0.1,
    "interpolate_antialias": False,
}
_REG = {"reg_tokens": 4, "interpolate_offset": 0.0, "interpolate_antialias": True}

_SIZES: dict[str, dict[str, Any]] = {
    "dinov2_vits14": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "dinov2_vitb14": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "dinov2_vitl14": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "dinov2_vitg14": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "ffn": "swiglu"},
}

#: name -> (complete default arch_config, description)
ARCHS: dict[str, tuple[dict[str, Any], str]] = {}
for _name, _size in _SIZES.items():
    ARCHS[_name] = ({**_COMMON, **_size}, f"DINOv2 {_name[7:].upper()} (timm ViT, {_size['embed_dim']}-d)")
    ARCHS[f"{_name}_reg"] = (
        {**_COMMON, **_size, **_REG},
        f"DINOv2 {_name[7:].upper()} with 4 registers (timm ViT, {_size['embed_dim']}-d)",
    )
ARCHS["vit_tiny_test"] = (
    {**_COMMON, "img_size": 112, "embed_dim": 48, "depth": 2, "num_heads": 3},
    "a tiny DINOv2-style ViT for tests and quick runs (patch 14, 48-d, 2 blocks)",
)

#: Keys an arch_config may hold.
CONFIG_KEYS: tuple[str, ...] = tuple(ARCHS["dinov2_vits14"][0])

"""Official DINOv2 weights into our ViT: our converter against timm's, judged by the official model.

Builds facebookresearch/dinov2's own ``DinoVisionTransformer`` from a checkout of that repository
(``--dinov2-src DIR``, kept outside this repository: ``git clone
https://github.com/facebookresearch/dinov2``; it needs only torch), gives it random weights in the
official layout, and compares its ``x_norm_clstoken`` with the features of our timm-built ViT loaded
two ways: through :func:`mska_core.backbones.vit.convert_state_dict` and through timm's own
``checkpoint_filter_fn``. Each image size is a column: at the checkpoint's own 518 px no position
resampling happens; at crop sizes (112, 224 px) the official model resamples at run time.

    python -m bench.dinov2_conversion --dinov2-src ../dinov2

prints a table and writes ``bench/dinov2_conversion.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def official_model(src: Path, registers: int) -> torch.nn.Module:
    sys.path.insert(0, str(src))
    from dinov2.models.vision_transformer import vit_small  # the reference's own code

    # the settings of the released ViT-S/14 (dinov2/hub/backbones.py)
    return vit_small(patch_size=14, img_size=518, init_values=1.0, block_chunks=0,
                     num_register_tokens=registers, interpolate_antialias=registers > 0,
                     interpolate_offset=0.0 if registers else 0.1)


def randomise(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator)
            scale = 0.5 if any(k in name for k in ("pos_embed", "cls_token", "register_tokens")) else 0.05
            tensor.copy_((1.0 if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")) else 0.0) + noise * scale)
    return {k: v.clone() for k, v in model.state_dict().items()}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dinov2-src", type=Path, required=True, help="a checkout of facebookresearch/dinov2")
    parser.add_argument("--sizes", default="112,224,518")
    parser.add_argument("--out", type=Path, default=Path("bench/dinov2_conversion.json"))
    args = parser.parse_args(argv)
    from timm.models.vision_transformer import checkpoint_filter_fn

    from mska_core.backbones import build_arch
    from mska_core.backbones.vit import convert_state_dict

    torch.manual_seed(0)
    rows = []
    for registers, arch in ((0, "dinov2_vits14"), (4, "dinov2_vits14_reg")):
        official = official_model(args.dinov2_src, registers).eval()
        state = randomise(official, seed=registers)
        for size in (int(s) for s in args.sizes.split(",")):
            images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
            with torch.no_grad():
                expected = official.forward_features(images)["x_norm_clstoken"]
            row = {"arch": arch, "img_size": size}
            for label, convert in (
                ("ours", lambda model, sd: convert_state_dict(sd, arch=arch, img_size=size)),
                ("timm", lambda model, sd: checkpoint_filter_fn(sd, model)),
            ):
                model = build_arch(arch, img_size=size).eval()
                start = time.perf_counter()
                converted = convert(model, dict(state))
                row[f"{label}_convert_s"] = time.perf_counter() - start
                missing, unexpected = model.load_state_dict(converted, strict=False)
                row[f"{label}_keys_off"] = len(missing) + len(unexpected)
                with torch.no_grad():
                    row[f"{label}_rel"] = relative(model(images), expected)
            rows.append(row)
    header = f"{'arch':<18} {'px':>4} {'ours rel':>10} {'timm rel':>10} {'ours s':>7} {'timm s':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['arch']:<18} {r['img_size']:>4} {r['ours_rel']:>10.2e} {r['timm_rel']:>10.2e} "
              f"{r['ours_convert_s']:>7.3f} {r['timm_convert_s']:>7.3f}")
    args.out.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

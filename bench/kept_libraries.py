"""Hand-written code against the kept library that could replace it, side by side in one process.

Three comparisons, each on speed (interleaved repeats, median, ratio library / ours) and on
correctness (what each accepts, rejects and produces):

- **config**: ``mska_core.config.loader.structure`` against a ``cattrs.Converter`` set up as closely
  to our schema as cattrs allows (``forbid_extra_keys``, a hook for the open ``[losses.*]`` tables),
  on the TOML presets in ``examples/configs/``; then a list of bad inputs, each checked for being
  refused and for a one-line message that names the dotted key.
- **crops**: ``mska_core.data.crops.MultiCrop`` against the same DINO recipe written with
  ``torchvision.transforms.v2`` (RandomResizedCrop, RandomHorizontalFlip, ColorJitter, RandomGrayscale,
  GaussianBlur, RandomSolarize, Normalize), per batch of images of the pretraining defaults; and the
  distribution of what each produces over many draws of one synthetic face crop (what ``mska
  pretrain`` reads by default): the mean and spread of a view's brightness and colourfulness, and the share of grey views.
- **pickle scan**: ``mska_core.checkpoints.files`` (``imported_globals`` + ``unsafe_globals``, the scan
  behind our refusal messages) against ``torch.serialization.get_unsafe_globals_in_checkpoint``, on a
  ViT-S/14 state dict and on files that must be refused; plus what only ours does
  (``check_pickle_bounds``: pickle size, instruction count, storage sizes, allocations).

It prints a table and writes JSON.

    python -m bench.kept_libraries [--repeat 5] [--json bench/results/kept_libraries.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _timed(fn: Any) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def _side_by_side(ours: Any, theirs: Any, repeat: int) -> dict[str, float]:
    a, b = [], []
    for _ in range(repeat):
        a.append(_timed(ours))
        b.append(_timed(theirs))
    ours_ms, theirs_ms = 1000 * statistics.median(a), 1000 * statistics.median(b)
    return {"ours_ms": ours_ms, "library_ms": theirs_ms, "library_over_ours": theirs_ms / ours_ms}


# -- config: TOML -> attrs ---------------------------------------------------------------------------

_BAD_CONFIGS = [
    ("unknown key", {"optim": {"lrr": 1e-3}}, "optim.lrr"),
    ("unknown table", {"trian": {"epochs": 1}}, "trian"),
    ("string for an integer", {"train": {"epochs": "3"}}, "train.epochs"),
    ("boolean for an integer", {"train": {"epochs": True}}, "train.epochs"),
    ("fraction for an integer", {"train": {"epochs": 2.5}}, "train.epochs"),
    ("number for a string", {"run": {"name": 5}}, "run.name"),
    ("infinite float", {"optim": {"lr": float("inf")}}, "optim.lr"),
    ("choice not offered", {"model": {"attention": "fast"}}, "model.attention"),
    ("validator: negative", {"train": {"epochs": -1}}, "train.epochs"),
    ("array for a table", {"model": []}, "model"),
]


def _cattrs_converter() -> Any:
    import attrs
    import cattrs

    from mska_core.config.schema import LossConfig

    converter = cattrs.Converter(forbid_extra_keys=True)

    def open_table(data: Any, _: type) -> LossConfig:  # the one open table: extra keys are options
        if not isinstance(data, dict):
            raise TypeError(f"expected a table, got {type(data).__name__}")
        names = {f.name for f in attrs.fields(LossConfig)} - {"options"}
        known = {k: v for k, v in data.items() if k in names}
        return LossConfig(**known, options={k: v for k, v in data.items() if k not in names})

    converter.register_structure_hook(LossConfig, open_table)
    return converter


def _cattrs_message(exc: BaseException) -> str:
    import cattrs

    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return f"{type(exc).__name__}: {exc}"


def bench_config(repeat: int) -> dict[str, Any]:
    import cattrs  # noqa: F401 - fail early when it is not installed

    from mska_core.config.loader import read_toml, structure
    from mska_core.config.schema import Config
    from mska_core.errors import ConfigError

    converter = _cattrs_converter()
    presets = sorted(Path("examples/configs").glob("*.toml"))
    speed, same = [], {}
    for path in presets:
        data = read_toml(path)
        ours = structure(Config, data, str(path))
        try:
            theirs = converter.structure(data, Config)
            same[path.name] = theirs == ours
        except Exception as exc:  # noqa: BLE001 - recorded as a result
            same[path.name] = f"refused: {_cattrs_message(exc)}"
            continue
        row = _side_by_side(lambda d=data, p=path: [structure(Config, d, str(p)) for _ in range(100)],
                            lambda d=data: [converter.structure(d, Config) for _ in range(100)], repeat)
        speed.append({"preset": path.name, **{k: v / 100 if k.endswith("_ms") else v for k, v in row.items()}})
    errors = []
    for label, data, key in _BAD_CONFIGS:
        try:
            structure(Config, data, "bad.toml")
            ours = None
        except ConfigError as exc:
            ours = str(exc)
        try:
            converter.structure(data, Config)
            theirs = None
        except Exception as exc:  # noqa: BLE001 - recorded as a result
            theirs = _cattrs_message(exc)

        def verdict(message: str | None, key: str = key) -> str:
            if message is None:
                return "accepted"
            named = key in message or ("$." + key) in message or key.replace(".", "']['") in message
            return "one line, names key" if named and "\n" not in message else "refused, key not named"

        errors.append({"input": label, "ours": verdict(ours), "cattrs": verdict(theirs),
                       "ours_message": ours, "cattrs_message": theirs})
    return {"speed": speed, "same_result": same, "errors": errors}


# -- crops: DINO multi-crop --------------------------------------------------------------------------


def _torchvision_multicrop(ours: Any) -> Any:
    """The recipe of ``MultiCrop.recipes`` written with torchvision.transforms.v2, view by view."""
    import torch
    from torchvision.transforms import v2

    def view(recipe: Any) -> Any:
        kernel = 2 * int(round(3 * ours.blur_sigma[1] * recipe.size / 224)) + 1  # covers 3 sigma
        return v2.Compose([
            v2.RandomResizedCrop(recipe.size, scale=recipe.scale, ratio=ours.ratio, antialias=True),
            v2.RandomHorizontalFlip(ours.flip),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([v2.ColorJitter(ours.brightness, ours.contrast, ours.saturation, ours.hue)],
                           p=ours.jitter),
            v2.RandomGrayscale(ours.grayscale),
            v2.RandomApply([v2.GaussianBlur(max(kernel, 3), sigma=tuple(s * recipe.size / 224
                                                                        for s in ours.blur_sigma))],
                           p=recipe.blur),
            v2.RandomSolarize(0.5, p=recipe.solarize),
            v2.Normalize(ours.mean, ours.std),
        ])

    views = [view(recipe) for recipe in ours.recipes()]
    return lambda image: [v(image) for v in views]


def _view_stats(views: list[Any], mean: Any, std: Any) -> dict[str, float]:
    import torch

    x = torch.stack([v * std + mean for v in views])  # back to [0, 1]: [N, 3, H, W]
    brightness = x.mean(dim=(1, 2, 3))
    colour = (x - x.mean(dim=1, keepdim=True)).abs().mean(dim=(1, 2, 3))
    return {"brightness_mean": float(brightness.mean()), "brightness_std": float(brightness.std()),
            "colourfulness_mean": float(colour.mean()), "grey_share": float((colour < 1e-3).float().mean())}


def bench_crops(repeat: int, draws: int) -> dict[str, Any]:
    import torch

    from mska_core.config.schema import PretrainConfig
    from mska_core.data.crops import MultiCrop
    from mska_core.synthetic.render import synthetic_crop

    cfg = PretrainConfig()
    ours = MultiCrop(global_size=cfg.img_size, local_size=max(8, round(cfg.img_size * 0.44)),
                     local_crops=cfg.local_crops, global_scale=tuple(cfg.global_crop_scale),
                     local_scale=tuple(cfg.local_crop_scale), jitter=cfg.color_jitter, grayscale=cfg.grayscale)
    theirs = _torchvision_multicrop(ours)
    batch = [synthetic_crop("face", index, 160, seed=0) for index in range(cfg.batch_size)]  # uint8 [3, H, W]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    speed = _side_by_side(lambda: [ours(image, generator) for image in batch],
                          lambda: [theirs(image) for image in batch], repeat)
    speed["batch"] = len(batch)
    speed["image"] = "synthetic face crops, 160x160"
    mean = torch.tensor(ours.mean).view(3, 1, 1)
    std = torch.tensor(ours.std).view(3, 1, 1)
    image = batch[0]
    ours_views = [ours(image, generator) for _ in range(draws)]
    theirs_views = [theirs(image) for _ in range(draws)]
    stats = {}
    for index, name in ((0, "global 1"), (1, "global 2"), (2, "local")):
        stats[name] = {
            "ours": _view_stats([v[index] for v in ours_views], mean, std),
            "torchvision": _view_stats([v[index] for v in theirs_views], mean, std),
        }
    return {"speed": speed, "distribution": stats, "draws": draws}


# -- pickle scan -------------------------------------------------------------------------------------


class _Exploit:
    def __reduce__(self) -> Any:
        import os

        return (os.system, ("true",))


def bench_pickle_scan(repeat: int, folder: Path) -> dict[str, Any]:
    import argparse as argparse_module

    import timm
    import torch

    from mska_core.checkpoints.files import (
        UnsafeCheckpointError,
        check_pickle_bounds,
        imported_globals,
        pickle_bytes,
        unsafe_globals,
    )

    vit = folder / "vit_s14.pt"
    torch.save(timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=112).state_dict(), vit)
    exploit = folder / "exploit.pt"
    torch.save({"w": torch.zeros(2), "x": _Exploit()}, exploit)
    namespace = folder / "dino.pth"
    torch.save({"teacher": {"w": torch.zeros(2)}, "args": argparse_module.Namespace(lr=0.1)}, namespace)
    legacy = folder / "legacy.pt"
    torch.save({"w": torch.zeros(2), "x": _Exploit()}, legacy, _use_new_zipfile_serialization=False)
    bomb = folder / "bomb.pt"
    # a legacy torch file whose pickle asks for bytearray(10**12): a terabyte for a few bytes of file
    bomb.write_bytes(b"\x80\x02c__builtin__\nbytearray\n\x8a\x06" + (10**12).to_bytes(6, "little") + b"\x85R.")

    def ours(path: Path) -> list[str]:
        return unsafe_globals(imported_globals(pickle_bytes(path)))

    def theirs(path: Path) -> Any:
        try:
            return torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - recorded as a result
            return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"

    def bounded(path: Path) -> str:
        try:
            check_pickle_bounds(path)
            return "passes"
        except UnsafeCheckpointError as exc:
            return "refused: " + str(exc).split("refused before reading: ", 1)[-1].split(";")[0]

    speed = _side_by_side(lambda: ours(vit), lambda: theirs(vit), repeat)
    speed["file"] = f"ViT-S/14 state dict, {vit.stat().st_size / 1e6:.1f} MB"
    speed["ours_with_bounds_ms"] = 1000 * statistics.median(
        _timed(lambda: (check_pickle_bounds(vit), ours(vit))) for _ in range(repeat))
    found = {path.name: {"ours": ours(path), "torch": theirs(path), "bounds (ours only)": bounded(path)}
             for path in (vit, exploit, namespace, legacy, bomb)}
    return {"speed": speed, "found": found}


# -- the command -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--draws", type=int, default=400, help="draws of the photograph for the crop statistics")
    parser.add_argument("--json", default="bench/results/kept_libraries.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "config": bench_config(args.repeat),
            "crops": bench_crops(args.repeat, args.draws),
            "pickle_scan": bench_pickle_scan(args.repeat, Path(tmp)),
        }
    results["machine"] = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1}

    print("speed (median of interleaved repeats; ratio = library / ours, above 1: ours is faster)")
    print(f"{'comparison':44} {'ours ms':>9} {'library ms':>11} {'ratio':>6}")
    for row in results["config"]["speed"]:
        print(f"{'config ' + row['preset'] + ' (cattrs)':44} {row['ours_ms']:9.3f} {row['library_ms']:11.3f} "
              f"{row['library_over_ours']:6.2f}")
    crop = results["crops"]["speed"]
    print(f"{'crops batch ' + str(crop['batch']) + ' (transforms.v2)':44} {crop['ours_ms']:9.1f} "
          f"{crop['library_ms']:11.1f} {crop['library_over_ours']:6.2f}")
    scan = results["pickle_scan"]["speed"]
    print(f"{'pickle globals scan (get_unsafe_globals_...)':44} {scan['ours_ms']:9.2f} {scan['library_ms']:11.2f} "
          f"{scan['library_over_ours']:6.2f}")
    print("\nconfig presets, same Config from both:", results["config"]["same_result"])
    print(f"\n{'bad config input':26} {'ours':24} {'cattrs':24}")
    for row in results["config"]["errors"]:
        print(f"{row['input']:26} {row['ours']:24} {row['cattrs']:24}")
    print(f"\n{'crop view':10} {'side':12} {'bright mean':>11} {'bright sd':>9} {'colour':>7} {'grey':>5}")
    for name, sides in results["crops"]["distribution"].items():
        for side, s in sides.items():
            print(f"{name:10} {side:12} {s['brightness_mean']:11.3f} {s['brightness_std']:9.3f} "
                  f"{s['colourfulness_mean']:7.3f} {s['grey_share']:5.2f}")
    print(f"\n{'file':14} {'ours':30} {'torch':34} bounds (ours only)")
    for name, row in results["pickle_scan"]["found"].items():
        print(f"{name:14} {str(row['ours'])[:30]:30} {str(row['torch'])[:34]:34} {row['bounds (ours only)'][:60]}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

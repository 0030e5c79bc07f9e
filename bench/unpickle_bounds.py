"""What bounding a checkpoint's pickle costs: ``safe_torch_load`` against ``torch.load`` on one file.

Writes real checkpoints in a temporary folder — a DINOv2 ViT-S/14 state dict (timm's
``vit_small_patch14_dinov2``, random weights, no download) and the training state of an AdamW
optimiser over it (three tensors per parameter) — and times, interleaved in one process:

- baseline: ``torch.load(path, weights_only=True)``;
- ours: ``mska_core.checkpoints.safe_torch_load(path)``, which first runs
  ``check_pickle_bounds`` (the pickle's instructions followed symbolically, no code run);
- the check alone.

It prints a table and writes JSON. The files are deleted at the end.

    python -m bench.unpickle_bounds [--repeat 5] [--json bench/results/unpickle_bounds.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path


def _time(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        tick = time.perf_counter()
        fn()
        out.append(time.perf_counter() - tick)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default="bench/results/unpickle_bounds.json")
    args = parser.parse_args()

    import timm
    import torch

    from mska_core.checkpoints.files import check_pickle_bounds, safe_torch_load

    torch.set_num_threads(1)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=112)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "weights.pt"
        torch.save(model.state_dict(), weights)
        optimizer = torch.optim.AdamW(model.parameters())
        model(torch.randn(1, 3, 112, 112)).sum().backward()
        optimizer.step()
        state = Path(folder) / "state.pt"
        torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}, state)
        for name, path in (("ViT-S/14 state dict", weights), ("+ AdamW state", state)):
            base, ours, check = [], [], []
            for _ in range(args.repeat):  # interleaved, so drift hits all three alike
                base += _time(lambda: torch.load(path, map_location="cpu", weights_only=True), 1)
                ours += _time(lambda: safe_torch_load(path), 1)
                check += _time(lambda: check_pickle_bounds(path), 1)
            tensors = len(torch.load(path, weights_only=True, map_location="cpu").get("state_dict", {})) or len(
                torch.load(path, weights_only=True, map_location="cpu"))
            rows.append({
                "file": name, "bytes": path.stat().st_size, "top_level_tensors": tensors,
                "torch_load_ms": 1000 * statistics.median(base), "safe_torch_load_ms": 1000 * statistics.median(ours),
                "check_ms": 1000 * statistics.median(check),
                "ratio": statistics.median(ours) / statistics.median(base),
            })
    print(f"{'file':22} {'MB':>7} {'torch.load ms':>14} {'safe_torch_load ms':>19} {'check ms':>9} {'ratio':>6}")
    for row in rows:
        print(f"{row['file']:22} {row['bytes'] / 1e6:7.1f} {row['torch_load_ms']:14.1f} "
              f"{row['safe_torch_load_ms']:19.1f} {row['check_ms']:9.1f} {row['ratio']:6.2f}")
    result = {"rows": rows, "repeat": args.repeat, "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.machine(), "threads": 1}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

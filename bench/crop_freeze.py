"""What freezing a crop backbone saves: step time, activation memory kept for backward, and optimiser
state, for a crop branch (``mska_core.encoder.crop.CropBranch``) trained whole, with only its last
blocks trainable (``trainable_blocks = N``), and frozen (``freeze``/``trainable_blocks = 0``).

Each mode runs the same fine-tuning step on the same crops: the crop branch (backbone, projection,
pooling to the keypoint rate) on ``B`` clips of ``T`` frames, a loss on its output, backward and an
AdamW step over the trainable parameters. The modes are interleaved step by step, so a loaded machine
slows them alike; the first round warms up and is not counted. Activation memory is the bytes of the
tensors autograd saves for backward during the forward (``torch.autograd.graph.saved_tensors_hooks``),
which is what training keeps beyond inference; on a GPU the peak allocated memory is reported too.
The baseline is the whole backbone trained.

    python -m bench.crop_freeze [--arch dinov2_vits14] [--img-size 112] [--clips 1] [--frames 8] [--rounds 2]

Writes ``bench/results/crop_freeze.json`` and prints a rich table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def make_branch(arch: str, img_size: int, trainable_blocks: int | None, device: torch.device):
    from mska_core.backbones.vit import build_vit
    from mska_core.encoder.crop import CropBranch

    torch.manual_seed(0)
    backbone = build_vit(arch, img_size=img_size)
    branch = CropBranch(backbone, backbone.feature_dim, 256, 4)
    branch.freeze_backbone(trainable_blocks, stream="face")
    branch.to(device).train()
    optimizer = torch.optim.AdamW([p for p in branch.parameters() if p.requires_grad], lr=1e-4)
    return branch, optimizer


def step(branch, optimizer, crops, lengths, device: torch.device) -> tuple[float, int, int]:
    """One training step: (seconds, bytes saved for backward, peak GPU bytes or 0)."""
    saved = 0

    def pack(tensor):
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = branch(crops, lengths, crops.shape[1] // 4)
    out.square().mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return time.perf_counter() - start, saved, peak


def optimizer_bytes(optimizer) -> int:
    return sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values()
               if torch.is_tensor(v))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="dinov2_vits14")
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--clips", type=int, default=1)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--last-blocks", type=int, default=2, help="N of the partly frozen mode")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = {"whole backbone trains (baseline)": None, f"last {args.last_blocks} blocks train": args.last_blocks,
             "frozen (trainable_blocks = 0)": 0}
    built = {name: make_branch(args.arch, args.img_size, blocks, device) for name, blocks in modes.items()}
    crops = torch.randn(args.clips, args.frames, 3, args.img_size, args.img_size, device=device)
    lengths = torch.full((args.clips,), args.frames, device=device)
    times: dict[str, list[float]] = {name: [] for name in modes}
    saved: dict[str, int] = {}
    peaks: dict[str, int] = {}
    for round_ in range(args.rounds + 1):
        for name, (branch, optimizer) in built.items():
            seconds, saved[name], peaks[name] = step(branch, optimizer, crops, lengths, device)
            if round_:
                times[name].append(seconds)
    base = next(iter(modes))
    rows = []
    for name, (branch, optimizer) in built.items():
        median = sorted(times[name])[len(times[name]) // 2]
        rows.append({
            "mode": name,
            "trainable_parameters": sum(p.numel() for p in branch.backbone.parameters() if p.requires_grad),
            "seconds_per_step": median,
            "time_ratio": median / sorted(times[base])[len(times[base]) // 2],
            "saved_for_backward_mib": saved[name] / 2**20,
            "optimizer_state_mib": optimizer_bytes(optimizer) / 2**20,
            "peak_gpu_mib": peaks[name] / 2**20,
        })
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.arch} at {args.img_size} px, {args.clips} clips x {args.frames} frames, {device.type}, "
                        f"{torch.get_num_threads()} threads")
    for column in ("mode", "trainable backbone params", "s/step", "x baseline", "saved for backward MiB",
                   "AdamW state MiB"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for row in rows:
        table.add_row(row["mode"], f"{row['trainable_parameters']:,}", f"{row['seconds_per_step']:.2f}",
                      f"{row['time_ratio']:.2f}", f"{row['saved_for_backward_mib']:.1f}",
                      f"{row['optimizer_state_mib']:.1f}")
    Console().print(table)
    out = ROOT / "bench" / "results" / "crop_freeze.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"arch": args.arch, "img_size": args.img_size, "clips": args.clips,
                               "frames": args.frames, "rounds": args.rounds, "device": device.type,
                               "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "machine": platform.machine(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

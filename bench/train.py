"""Training-step throughput: clips per second of a fine-tuning step, and where the time goes.

For the paper preset (``examples/configs/mska-slr-paper.toml``, or the schema's paper defaults when
that file is absent) and the quickstart model, on synthetic clips, this times full fine-tuning steps
(CTC + self-distillation + translation, AdamW, gradient clipping) split into data (augment + collate),
forward (encoder, decoder and losses), backward and optimiser. The baseline, run side by side in the
same process on the same batches, is the bare encoder step: CTC only, no decoder, plain SGD. CPU always;
a CUDA GPU too when one is present.

    python -m bench.train [--steps N] [--batch-size B]

Writes ``bench/results/train.json`` and prints a rich table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "configs" / "mska-slr-paper.toml"
QUICKSTART = ROOT / "examples" / "configs" / "quickstart.toml"
SYNTHETIC = ["data.synthetic.num_train=64", "data.synthetic.num_dev=4", "data.synthetic.num_test=4"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config_path: Path | None, overrides: list[str], *, full: bool, device: torch.device, steps: int,
            batch_size: int) -> dict:
    from mska_core.config import load_config
    from mska_core.data.collate import Collator
    from mska_core.data.datasets import ClipDataset
    from mska_core.data.vocab import Vocabularies
    from mska_core.registry import get_registry
    from mska_core.synthetic.corpus import make_corpus
    from mska_core.training.loop import build_losses
    from mska_core.training.model import build_model

    if full:
        overrides = overrides + ["losses.translation.weight=1.0"]
    config = load_config(config_path, SYNTHETIC + overrides)
    corpus = make_corpus(config.data.synthetic)
    vocabularies = Vocabularies.from_samples(corpus.train)
    registry = get_registry()
    if full:
        losses = build_losses(config, registry)
    else:
        losses = {"ctc": (registry.losses.get("ctc").build(), 1.0)}
    torch.manual_seed(0)
    model = build_model(config, vocabularies, registry=registry, losses={k: m for k, (m, _) in losses.items()})
    model.to(device).train()
    if full:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    dataset = ClipDataset(corpus.train, vocabularies, config.data.augment, train=True)
    collate = Collator(vocabularies)
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    clips = 0
    for step in range(steps + 1):  # the first step warms up and is not counted
        t0 = time.perf_counter()
        start = (step * batch_size) % (len(dataset) - batch_size)
        batch = collate([dataset[i] for i in range(start, start + batch_size)]).to(device)
        sync(device)
        t1 = time.perf_counter()
        output = model(batch)
        loss = sum(weight * module(output, batch) for module, weight in losses.values())
        sync(device)
        t2 = time.perf_counter()
        loss.backward()
        sync(device)
        t3 = time.perf_counter()
        if full:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        t4 = time.perf_counter()
        if step:
            for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key] += value
            clips += batch.size
    total = sum(times.values())
    return {
        "clips_per_s": clips / total,
        "seconds_per_step": total / steps,
        "share": {k: v / total for k, v in times.items()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "frames_per_clip": float(batch.clips.lengths.float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    models = {
        "paper preset": (PAPER if PAPER.exists() else None, [] if PAPER.exists() else ["train.batch_size=8"]),
        "quickstart": (QUICKSTART, []),
    }
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for name, (path, overrides) in models.items():
            for full in (False, True):
                result = measure(path, overrides, full=full, device=device, steps=args.steps,
                                 batch_size=args.batch_size)
                rows.append({"model": name, "device": device.type,
                             "step": "fine-tuning step" if full else "baseline: encoder + CTC, SGD", **result})
    table = Table(title=f"training step, batch {args.batch_size}, {torch.get_num_threads()} CPU threads")
    for column in ("model", "device", "step", "clips/s", "s/step", "data", "forward", "backward", "optimiser"):
        table.add_column(column, justify="right" if column not in ("model", "device", "step") else "left")
    for row in rows:
        share = row["share"]
        table.add_row(row["model"], row["device"], row["step"], f"{row['clips_per_s']:.2f}",
                      f"{row['seconds_per_step']:.2f}", *(f"{100 * share[k]:.0f}%" for k in share))
    Console().print(table)
    out = ROOT / "bench" / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "batch_size": args.batch_size, "steps": args.steps, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(), "paper_config": str(PAPER.name if PAPER.exists() else "schema defaults"),
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

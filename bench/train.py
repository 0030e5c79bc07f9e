"""Training-step throughput: clips per second of a fine-tuning step, and where the time goes.

For the paper preset (``examples/configs/mska-slr-paper.toml``, or the schema's paper defaults when
that file is absent) and the quickstart model, on synthetic clips, this times full fine-tuning steps
(CTC + self-distillation + translation, AdamW, gradient clipping) split into data (augment + collate),
forward (encoder, decoder and losses), backward and optimiser. The baseline, run side by side in the
same process on the same batches, is the bare encoder step: CTC only, no decoder, plain SGD. CPU always;
a CUDA GPU too when one is present.

    python -m bench.train [--steps N] [--batch-size B] [--crops-only] [--workers W]

Crop-stream rows: the quickstart model with three crop streams (face, both hands) at 112 px on the
tiny ViT, and the paper preset with ViT-S/14 crops at 112 px, trained from JPEG crops on disk in
the layouts ``mska extract`` writes (written by the benchmark into a temporary folder: the synthetic
corpus's clips in our directory format, and per frame and stream a rendered synthetic crop with
camera-like noise, JPEG quality 90), once as packed files (one per clip and stream, the default) and
once as one JPEG file per crop, and (``--crop-formats shards``) as WebDataset shards of the packed
files read by the ``shards`` data source (``--crop-formats``). Each runs real fine-tuning steps with a DataLoader of ``W``
workers (2 by default, as ``train.num_workers``) and reports the time the step waits for its batch
÷ the whole step; the baseline row is the same model with the crops decoded in the training process
(0 workers).

Writes ``bench/results/train.json`` and prints rich tables.
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
    model = build_model(config, vocabularies, registry=registry, losses={k: m for k, (m, _) in losses.items()},
                        texts=[s.text for s in corpus.train])
    model.to(device).train()
    if full:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    dataset = ClipDataset(corpus.train, vocabularies, config.data.augment, train=True)
    collate = Collator.for_model(model, vocabularies)
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


CROP_STREAMS = ("face", "hand_left", "hand_right")


def write_crop_corpus(config, folder: Path, side: int, crop_format: str = "files") -> Path:
    """The synthetic corpus of ``config`` as a directory-format corpus in ``folder`` with JPEG crops of
    ``side`` px for every frame of every clip: ``crops/STREAM/ID/NNNNNN.jpg`` (``files``) or the same
    JPEG bytes in one packed file ``crops/STREAM/ID.crops`` per clip and stream (``packed``)."""
    import io

    import numpy as np
    from PIL import Image

    from mska_core.data.crop_pack import CropPackWriter
    from mska_core.data.directory import write_split
    from mska_core.synthetic.corpus import make_corpus
    from mska_core.synthetic.render import synthetic_crop

    corpus = make_corpus(config.data.synthetic)
    rng = np.random.default_rng(0)
    pool = {kind: [synthetic_crop(kind, i, side, 0).permute(1, 2, 0).numpy() for i in range(16)]
            for kind in ("face", "hand")}
    for split in ("train", "dev", "test"):
        samples = corpus.split(split)
        write_split(folder, split, list(samples))
        for sample in samples:
            for stream in CROP_STREAMS:
                kind = "face" if stream == "face" else "hand"
                out = folder / "crops" / stream / sample.name
                if crop_format == "packed":
                    out.parent.mkdir(parents=True, exist_ok=True)
                    pack = CropPackWriter(out.parent / f"{sample.name}.crops", fsync=False)
                else:
                    out.mkdir(parents=True, exist_ok=True)
                for index in range(sample.num_frames):
                    image = pool[kind][index % 16].astype(np.int16) + rng.normal(0, 6, (side, side, 3)).astype(np.int16)
                    crop = Image.fromarray(image.clip(0, 255).astype(np.uint8))
                    if crop_format == "packed":
                        buffer = io.BytesIO()
                        crop.save(buffer, format="JPEG", quality=90)
                        pack.add(buffer.getvalue(), side)
                    else:
                        crop.save(out / f"{index:06d}.jpg", quality=90)
                if crop_format == "packed":
                    pack.close()
    return folder


def write_crop_shards(folder: Path, dest: Path, size: int = 1000) -> Path:
    """The packed corpus ``folder`` (:func:`write_crop_corpus`) as the WebDataset shards ``mska pack``
    writes, one shard per split under ``dest/SPLIT`` (keypoints in pixels of a ``size`` px square frame,
    which the ``shards`` source normalises back)."""
    import io
    import json as jsonlib
    import tarfile

    import numpy as np

    from mska_core.data.contract import read_annotations
    from mska_core.data.directory import read_keypoint_file

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    for split in ("train", "dev", "test"):
        (dest / split).mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest / split / "shard-000000.tar", "w") as tar:
            for number, row in enumerate(read_annotations(folder / f"{split}.tsv", split)):
                points = read_keypoint_file(folder / split / f"{row.clip_id}.npy").numpy().copy()
                points[..., 0] = (points[..., 0] + 1) / 2 * size
                points[..., 1] = size - (points[..., 1] + 1) / 2 * size
                buffer = io.BytesIO()
                np.save(buffer, points)
                key = f"{number:09d}"
                meta = {"id": row.clip_id, "gloss": row.gloss, "text": row.text, "frames": len(points), "fps": 25,
                        "width": size, "height": size, "layout": "coco_wholebody", "streams": list(CROP_STREAMS)}
                add(tar, f"{key}.json", jsonlib.dumps(meta).encode())
                add(tar, f"{key}.keypoints.npy", buffer.getvalue())
                for stream in CROP_STREAMS:
                    add(tar, f"{key}.{stream}.crops", (folder / "crops" / stream / f"{row.clip_id}.crops").read_bytes())
    return dest


def measure_crops(config_path: Path | None, overrides: list[str], *, arch: str, side: int, device: torch.device,
                  steps: int, batch_size: int, workers: int, crop_format: str = "files") -> dict:
    """Fine-tuning steps of a model whose face and hand streams read JPEG crops from disk (``files``:
    one file per crop; ``packed``: one file per clip and stream) through a DataLoader of ``workers``
    workers: the share of the step spent waiting for the batch."""
    import tempfile

    from torch.utils.data import DataLoader

    from mska_core.backbones.normalization import crop_normalization
    from mska_core.backbones.vit import build_vit
    from mska_core.config import load_config
    from mska_core.data.collate import Collator
    from mska_core.data.crop_files import crop_plan, resolve_crop_sizes
    from mska_core.data.datasets import ClipDataset, load_corpus
    from mska_core.data.vocab import Vocabularies
    from mska_core.registry import get_registry
    from mska_core.training.loop import build_losses
    from mska_core.training.model import build_model

    registry = get_registry()
    with tempfile.TemporaryDirectory(prefix="mska-bench-crops-") as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        torch.save(build_vit(arch, img_size=side).state_dict(), folder / "backbone.pt")
        streams = [f"model.streams.{s}.backbone='file::{folder / 'backbone.pt'}:{arch}'" for s in CROP_STREAMS]
        streams.append("model.streams.body.keypoints=true")  # keep the fourth stream the heads read
        config = load_config(config_path, SYNTHETIC + overrides + streams + [
            "data.crops=true", "data.source='directory'", f"data.path='{folder / 'data'}'", "data.augment.rotation=0.0"])
        write_crop_corpus(config, folder / "data", side, "packed" if crop_format == "shards" else crop_format)
        if crop_format == "shards":  # the same crops in tar shards, read by the shards source
            write_crop_shards(folder / "data", folder / "shards")
            config = load_config(config_path, SYNTHETIC + overrides + streams + [
                "data.crops=true", "data.source='shards'", f"data.path='{folder / 'shards'}'",
                "data.augment.rotation=0.0"])
        corpus = load_corpus(config.data, registry=registry)
        config = resolve_crop_sizes(config, corpus)
        vocabularies = Vocabularies.from_samples(corpus.train)
        losses = build_losses(config, registry)
        model = build_model(config, vocabularies, registry=registry, losses={k: m for k, (m, _) in losses.items()},
                            texts=[s.text for s in corpus.train])
        model.to(device).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        dataset = ClipDataset(corpus.train, vocabularies, config.data.augment, train=True,
                              crops=crop_plan(config, corpus, model.encoder, registry))
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
        batches = [order[(i * batch_size) % (len(order) - batch_size):][:batch_size] for i in range(steps + 1)]
        loader = iter(DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                 collate_fn=Collator.for_model(model, vocabularies, crop_normalization(model.encoder)),
                                 pin_memory=device.type == "cuda"))
        waited = total = 0.0
        frames = images = 0
        for step in range(steps + 1):  # the first step starts the workers and is not counted
            t0 = time.perf_counter()
            batch = next(loader).to(device, non_blocking=True)
            sync(device)
            t1 = time.perf_counter()
            output = model(batch)
            loss = sum(weight * module(output, batch) for module, weight in losses.values())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(device)
            t2 = time.perf_counter()
            if step:
                waited += t1 - t0
                total += t2 - t0
                frames += int(batch.clips.lengths.sum())
                images += int(batch.clips.lengths.sum()) * len(CROP_STREAMS)
    return {"data_over_step": waited / total, "seconds_per_step": total / steps, "data_seconds_per_step": waited / steps,
            "crops_per_s": images / total, "frames_per_clip": frames / (steps * batch_size),
            "parameters": sum(p.numel() for p in model.parameters())}


def crop_rows(args: argparse.Namespace) -> list[dict]:
    models = {
        "quickstart, 3 crop streams, tiny ViT 112 px": (QUICKSTART, [], "vit_tiny_test", args.batch_size,
                                                         args.crop_steps),
        "paper preset, 3 crop streams, ViT-S/14 112 px": (
            PAPER if PAPER.exists() else None,
            ([] if PAPER.exists() else ["train.batch_size=8"]) + [f"data.synthetic.frames_per_gloss={args.paper_frames_per_gloss}"],
            "dinov2_vits14", args.paper_batch_size, args.paper_steps),
    }
    rows = []
    for name, (path, overrides, arch, batch_size, steps) in models.items():
        if not any(name.startswith(wanted) for wanted in args.crop_models):
            continue
        for crop_format in args.crop_formats:
            for workers in (args.workers, 0):
                result = measure_crops(path, overrides, arch=arch, side=112, device=torch.device("cpu"),
                                       steps=steps, batch_size=batch_size, workers=workers, crop_format=crop_format)
                rows.append({"model": name, "crop_format": crop_format, "workers": workers, "batch_size": batch_size,
                             **result})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def print_crop_rows(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"crop streams from JPEG crops on disk, {torch.get_num_threads()} CPU threads")
    for column in ("model", "crops", "batch", "workers", "s/step", "data s/step", "data ÷ step", "crops/s"):
        table.add_column(column, justify="left" if column in ("model", "crops") else "right")
    for row in rows:
        table.add_row(row["model"], row.get("crop_format", "files"), str(row["batch_size"]), str(row["workers"]),
                      f"{row['seconds_per_step']:.2f}",
                      f"{row['data_seconds_per_step']:.3f}", f"{row['data_over_step']:.3f}",
                      f"{row['crops_per_s']:.0f}")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crops-only", action="store_true", help="only the crop-stream rows")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the crop rows")
    parser.add_argument("--crop-steps", type=int, default=3, help="counted steps of each quickstart crop row")
    parser.add_argument("--paper-steps", type=int, default=1, help="counted steps of each paper-preset crop row")
    parser.add_argument("--crop-models", nargs="+", default=["quickstart", "paper"], choices=["quickstart", "paper"],
                        help="which crop rows to run")
    parser.add_argument("--crop-formats", nargs="+", default=["packed", "files"], choices=["packed", "files", "shards"],
                        help="crop storage of the crop rows: packed files per clip and stream, a file per crop, or "
                             "WebDataset shards read by the shards source")
    parser.add_argument("--paper-batch-size", type=int, default=1, help="batch of the paper preset's crop rows")
    parser.add_argument("--paper-frames-per-gloss", type=int, default=3,
                        help="frames per gloss of the paper preset's crop rows (short clips keep a CPU step short)")
    args = parser.parse_args()
    if args.crops_only:
        rows = crop_rows(args)
        print_crop_rows(rows)
        write_results({"crop_rows": rows}, args)
        return
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
    crops = crop_rows(args)
    print_crop_rows(crops)
    write_results({"rows": rows, "crop_rows": crops}, args)


def write_results(results: dict, args: argparse.Namespace) -> None:
    out = ROOT / "bench" / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    if "crop_rows" in results:  # rows of models not run this time are kept
        def key(row: dict) -> tuple:
            return row["model"], row["workers"], row.get("crop_format", "files")

        fresh = {key(row) for row in results["crop_rows"]}
        kept = [row for row in previous.get("crop_rows", []) if key(row) not in fresh]
        results = {**results, "crop_rows": kept + results["crop_rows"]}
    run = {"threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine()}
    if "rows" in results:
        meta = {"batch_size": args.batch_size, "steps": args.steps, **run,
                "paper_config": str(PAPER.name if PAPER.exists() else "schema defaults")}
    else:
        meta = {}
    if "crop_rows" in results:
        meta["crop_run"] = {**run, "workers": args.workers, "quickstart_steps": args.crop_steps,
                            "paper_steps": args.paper_steps, "paper_batch_size": args.paper_batch_size,
                            "paper_frames_per_gloss": args.paper_frames_per_gloss}
    out.write_text(json.dumps({**previous, **meta, **results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""The real path, end to end, on videos this script renders itself (see README.md beside it).

1. render: mp4 videos (PyAV, H.264) of signers from mska-core's synthetic corpus, their pixel
   keypoints as ``keypoints/ID.npy`` and an ``annotations.tsv`` (id, gloss, text);
2. ``mska extract`` each split: keypoints and face / hand crops per frame, a directory-format corpus;
3. ``mska pretrain`` (DINO) a face and a hand crop encoder on the extracted crops, exporting each;
4. ``mska train --use-mska --mska-face-state ... --mska-hand-state ... --face-backbone "file::..."``:
   the crop streams read the extracted crops from disk;
5. ``mska evaluate`` the best checkpoint on the test split;
6. ``mska predict VIDEO`` on the test videos (extraction in memory).

Every step is the real ``mska`` command in a subprocess; each command line is printed before it
runs. ``--lean`` makes everything tiny (the test suite runs it so).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: The frame size of the rendered videos (square, so x and y keep one scale).
FRAME = 192
FPS = 25
BACKGROUND = (96, 104, 112)
FACE, LEFT_HAND, RIGHT_HAND = range(23, 91), range(91, 112), range(112, 133)

#: Sizes of a full run and of a lean one: corpus, crops, DINO steps, fine-tuning.
SETTINGS = {
    "full": dict(num_train=48, num_dev=8, num_test=8, vocab_size=8, frames_per_gloss=8, max_glosses=3,
                 crop_size=28, pretrain_steps=40, epochs=8, batch_size=8, pretrain_set=(), train_set=()),
    "lean": dict(num_train=6, num_dev=2, num_test=2, vocab_size=4, frames_per_gloss=4, max_glosses=2,
                 crop_size=28, pretrain_steps=2, epochs=1, batch_size=3,
                 pretrain_set=("pretrain.probe_every=0", "pretrain.local_crops=1"),
                 train_set=("train.test_beam_size=1", "train.translation_beam_size=1", "train.max_text_length=8")),
}


# --- 1. videos ------------------------------------------------------------------------------------


def to_pixels(points: np.ndarray) -> np.ndarray:
    """Normalised points ``[T, J, 3]`` (x, y in [-1, 1], y up) in a ``FRAME`` square, in pixels: the
    inverse of the normalisation ``mska extract --annotations`` applies."""
    pixels = points.astype(np.float32).copy()
    pixels[..., 0] = (points[..., 0] + 1) / 2 * FRAME
    pixels[..., 1] = (1 - points[..., 1]) / 2 * FRAME
    return pixels


def draw_frame(points: np.ndarray) -> np.ndarray:
    """One RGB frame: the arms as lines, then the face and each hand drawn by mska-core's crop renderer
    where their points are (a part whose points were all dropped is not drawn)."""
    from PIL import Image, ImageDraw

    from mska_core.synthetic.render import CropStyle, render_crop

    frame = Image.new("RGB", (FRAME, FRAME), BACKGROUND)
    draw = ImageDraw.Draw(frame)
    for chain in ((5, 7, 9), (6, 8, 10), (5, 6)):
        seen = [tuple(points[j, :2]) for j in chain if points[j, 2] > 0]
        if len(seen) > 1:
            draw.line(seen, fill=(60, 60, 70), width=5)
    style = CropStyle(background=BACKGROUND, background_end=BACKGROUND)
    for joints, kind in ((FACE, "face"), (LEFT_HAND, "hand"), (RIGHT_HAND, "hand")):
        part = points[list(joints)]
        seen = part[part[:, 2] > 0]
        if len(seen) < 3:
            continue
        low, high = seen[:, :2].min(axis=0), seen[:, :2].max(axis=0)
        side = int(np.ceil(max(float((high - low).max()) * 1.3, 4)))  # the renderer's margin: 0.15 a side
        sprite = render_crop(part, side, kind, style=style).permute(1, 2, 0).numpy()
        centre = (low + high) / 2
        frame.paste(Image.fromarray(sprite), (round(centre[0] - side / 2), round(centre[1] - side / 2)))
    return np.asarray(frame)


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    """Encode RGB frames as H.264 in an mp4 with PyAV."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = FRAME, FRAME, "yuv420p"
        stream.options = {"crf": "18"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def render(work: Path, settings: dict) -> dict[str, list[str]]:
    """``videos/SPLIT/ID.mp4``, ``keypoints/ID.npy`` (pixels) and ``annotations.tsv`` from the synthetic
    corpus; returns the clip ids of each split."""
    from mska_core.config import SyntheticConfig
    from mska_core.synthetic.corpus import make_corpus

    keys = ("num_train", "num_dev", "num_test", "vocab_size", "frames_per_gloss", "max_glosses")
    corpus = make_corpus(SyntheticConfig(min_glosses=1, seed=7, **{k: settings[k] for k in keys}))
    (work / "keypoints").mkdir(parents=True, exist_ok=True)
    lines = ["id\tgloss\ttext"]
    ids: dict[str, list[str]] = {}
    for split in ("train", "dev", "test"):
        (work / "videos" / split).mkdir(parents=True, exist_ok=True)
        ids[split] = []
        for sample in corpus.split(split):
            points = to_pixels(sample.keypoints.numpy())
            np.save(work / "keypoints" / f"{sample.name}.npy", points)
            write_video(work / "videos" / split / f"{sample.name}.mp4", [draw_frame(p) for p in points])
            lines.append(f"{sample.name}\t{sample.gloss}\t{sample.text}")
            ids[split].append(sample.name)
    (work / "annotations.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ids


# --- 2.-6. the mska commands ------------------------------------------------------------------------


def sets(overrides: tuple[str, ...]) -> list[str]:
    """``--set KEY=VALUE`` for each override."""
    return [part for override in overrides for part in ("--set", override)]


def mska(*args: str, log: list, json_out: bool = False) -> dict | list | None:
    """Run ``mska ARGS`` (this interpreter's mska-core) and stop the example if it fails."""
    command = [sys.executable, "-m", "mska_core", *args] + (["--json"] if json_out else [])
    print("$ mska " + " ".join(shlex.quote(a) for a in command[3:]), file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    log.append({"command": args[0], "seconds": round(time.perf_counter() - started, 1)})
    if result.returncode != 0:
        sys.exit(f"real-path: `mska {args[0]}` failed with exit code {result.returncode}")
    return json.loads(result.stdout) if json_out else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="real-path-work", help="where everything is written (a new folder)")
    parser.add_argument("--lean", action="store_true", help="tiny sizes and few steps (a check, not a result)")
    parser.add_argument("--json", action="store_true", help="write a summary as JSON on stdout")
    args = parser.parse_args(argv)
    settings = SETTINGS["lean" if args.lean else "full"]
    work = Path(args.workdir).resolve()
    if work.exists() and any(work.iterdir()):
        sys.exit(f"real-path: --workdir {work} is not empty; give a new folder")
    log: list = []
    started = time.perf_counter()
    print(f"real-path: rendering videos into {work}", file=sys.stderr)
    ids = render(work, settings)
    log.append({"command": "render", "seconds": round(time.perf_counter() - started, 1)})

    out = work / "extracted"
    size = str(settings["crop_size"])
    for split in ("train", "dev", "test"):  # 2. keypoints, crops and the split's table
        mska("extract", str(work / "videos" / split), "--keypoints", str(work / "keypoints"), "--out", str(out),
             "--annotations", str(work / "annotations.tsv"), "--split", split, "--crop-size", size,
             "--no-progress", log=log)

    exports = {}
    for group, folders in (("face", ["face"]), ("hand", ["hand_left", "hand_right"])):  # 3. DINO
        folder = work / f"dino_{group}"
        exports[group] = (folder / f"encoder_{group}.pt", folder / "backbone.pt")
        mska("pretrain", "--stream", group, "--train-dir", *(str(out / "crops" / f) for f in folders),
             "--output-dir", str(folder), "--epochs", "1", "--max-steps", str(settings["pretrain_steps"]),
             "--img-size", size, "--batch-size", "16", "--seed", "0", "--export-checkpoint",
             "--output-path", str(exports[group][0]), "--export-backbone", str(exports[group][1]),
             *sets(settings["pretrain_set"]), log=log)

    face_backbone, hand_backbone = (f"file::{exports[g][1]}" for g in ("face", "hand"))
    summary = mska(  # 4. fine-tune; the crop streams read the extracted crops from disk
        "train", "--config", str(HERE / "real-path.toml"), "--use-mska",
        "--mska-face-state", str(exports["face"][0]), "--mska-hand-state", str(exports["hand"][0]),
        "--face-backbone", face_backbone, "--hand-left-backbone", hand_backbone,
        "--hand-right-backbone", hand_backbone,
        "--set", f"data.path={json.dumps(str(out))}", "--set", f"run.output_dir={json.dumps(str(work / 'runs'))}",
        "--set", f"train.epochs={settings['epochs']}", "--set", f"train.batch_size={settings['batch_size']}",
        *sets(settings["train_set"]), "--no-progress", log=log, json_out=True)
    best = summary["best"]
    predictions = work / "test-predictions.jsonl"  # 5. scores on the test split
    scores = mska("evaluate", "--checkpoint", best, "--split", "test", "--predictions", str(predictions),
                  log=log, json_out=True)
    videos = [str(work / "videos" / "test" / f"{clip}.mp4") for clip in ids["test"]]  # 6. raw videos
    predicted = mska("predict", "--checkpoint", best, *videos, "--keypoints", str(work / "keypoints"),
                     log=log, json_out=True)

    result = {"workdir": str(work), "best": best, "seconds": round(time.perf_counter() - started, 1),
              "steps": log, "test": {k: scores.get(k) for k in ("clips", "wer", "bleu4", "rouge_l")},
              "predictions": predicted}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for step in log:
            print(f"{step['command']:>10}  {step['seconds']:6.1f} s")
        print(f"test: WER {scores.get('wer')}, BLEU-4 {scores.get('bleu4')}; best checkpoint {best}")
        for row in predicted:
            print(f"{Path(row['clip']).name}: {row['gloss']!r} -> {row['translation']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

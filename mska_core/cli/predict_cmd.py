"""``mska predict --checkpoint F CLIP...``: the glosses and translation of keypoint files.

A CLIP is an ``.npy``/``.npz`` file of our directory format (``[T, J, 3]``), or an MSKA pickle entry
written ``FILE.pkl:NAME`` (``FILE.pkl`` alone when the pickle holds one clip).

Every clip is validated as training data is (:mod:`mska_core.data.validate`): under ``--invalid
refuse`` (or the checkpoint's ``[data] invalid = "refuse"``) a clip with NaN/inf values, confidences
outside [0, 1], no frames or a wrong joint count stops the command (exit 2) naming it; under
``repair`` it is repaired, and a clip with no usable point gets no prediction (exit 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mska_core.cli.output import console, emit_json


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict", help="glosses and translation of keypoint clips with a fine-tuned checkpoint",
        description="Recognise and translate keypoint clips: .npy/.npz files [T, J, 3] (our format) or "
                    "MSKA pickle entries FILE:NAME.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="F", help="best.pt or last.pt of a run")
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="keypoint file, or PICKLE:NAME")
    parser.add_argument("--beam-size", type=int, default=None, metavar="N", help="CTC beam width")
    parser.add_argument("--invalid", choices=("refuse", "repair"), default=None,
                        help="a clip with NaN/inf values or confidences outside [0, 1]: refuse it, or repair "
                             "it (default: the checkpoint's [data] invalid); a clip with no usable point is "
                             "never predicted")
    parser.add_argument("--json", action="store_true", help="write the predictions as JSON on stdout")
    parser.set_defaults(run=run)


def read_clip(spec: str, config: Any) -> tuple[str, Any]:
    """``(name, keypoints [T, J, 3])`` of one CLIP argument, normalised as the training data was."""
    from mska_core.data.directory import KEYPOINT_SUFFIXES, read_keypoint_file
    from mska_core.data.pickles import normalize_pixels, read_pickle
    from mska_core.errors import DataError

    path = Path(spec)
    if path.suffix in KEYPOINT_SUFFIXES and path.is_file():
        keypoints = read_keypoint_file(path)
        if config.data.normalize:
            keypoints = normalize_pixels(keypoints, config.data.frame_width, config.data.frame_height)
        return path.stem, keypoints
    file, _, name = spec.rpartition(":") if not path.is_file() else (spec, "", "")
    data = read_pickle(file or spec)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{file or spec}: not an MSKA pickle (a dict of clips)")
    if not name:
        if len(data) != 1:
            raise DataError(f"{spec}: the pickle holds {len(data)} clips; name one as {spec}:NAME "
                            f"(e.g. {spec}:{next(iter(data))})")
        name = next(iter(data))
    if name not in data:
        raise DataError(f"{file}: no clip named {name!r}")
    import torch

    keypoints = torch.as_tensor(data[name]["keypoint"]).float()[..., :3]
    return name, normalize_pixels(keypoints, config.data.frame_width, config.data.frame_height)


def run(args: argparse.Namespace) -> int:
    import torch

    from mska_core.data.augment import select_frames
    from mska_core.data.collate import Collator
    from mska_core.data.datasets import ClipItem
    from mska_core.data.validate import validate_clip
    from mska_core.registry import get_registry
    from mska_core.training.evaluation import predict_batch
    from mska_core.training.loop import crop_size, crop_streams
    from mska_core.training.trained import load_trained

    registry = get_registry()
    trained = load_trained(args.checkpoint, registry=registry)
    config = trained.config
    streams = crop_streams(config)
    specs = [registry.streams.get(name) for name in streams]
    num_joints = registry.layouts.get(config.model.layout).num_joints
    policy = args.invalid or config.data.invalid
    items, unusable = [], []
    for i, spec in enumerate(args.clips):
        name, keypoints = read_clip(spec, config)
        keypoints = validate_clip(keypoints, num_joints=num_joints, policy=policy, label=f"{spec}: clip {name!r}")
        if keypoints is None:
            unusable.append(spec)
            continue
        frames = select_frames(keypoints.shape[0], config.data.augment, None, train=False)
        crops = None
        if streams:
            from mska_core.synthetic.corpus import clip_crops

            crops = clip_crops(keypoints[frames], specs, crop_size(config, streams), config.model.layout)
        items.append(ClipItem(index=i, name=name, keypoints=keypoints[frames], gloss="", text="",
                              gloss_ids=[], text_ids=[], crops=crops))
    predictions = []
    if items:
        batch = Collator(trained.vocabularies)(items)
        with torch.no_grad():
            predictions = predict_batch(
                trained.model, batch, trained.vocabularies, beam_size=args.beam_size or config.train.test_beam_size,
                translation_beam_size=config.train.translation_beam_size,
                max_text_length=config.train.max_text_length,
            )
    by_index = {item.index: p for item, p in zip(items, predictions)}
    rows = []
    for i, spec in enumerate(args.clips):
        p = by_index.get(i)
        if p is None:  # no usable point: no prediction, rather than a guess from nothing
            rows.append({"clip": spec, "name": None, "gloss": None, "glosses": None, "translation": None,
                         "error": "no usable keypoints"})
        else:
            rows.append({"clip": spec, "name": p.name, "gloss": p.gloss, "glosses": p.glosses,
                         "translation": p.translation})
    status = 1 if unusable else 0
    if args.json:
        emit_json(rows)
        return status
    out = console()
    for row in rows:
        out.print(f"[bold]{row['clip']}[/bold]")
        if row["gloss"] is None:
            out.print("  no prediction: no usable keypoints")
            continue
        out.print(f"  gloss:       {row['gloss']}")
        if row["translation"] is not None:
            out.print(f"  translation: {row['translation']}")
    return status

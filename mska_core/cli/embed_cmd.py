"""``mska embed --checkpoint F CLIP|VIDEO...``: fused per-frame features and a clip vector per clip.

Clips and videos are read, validated and prepared exactly as ``mska predict`` reads them (its
:func:`~mska_core.cli.predict_cmd.clip_item`, with its :class:`~mska_core.cli.predict_cmd.VideoReader`
over ``mska extract``'s in-memory extraction and its :class:`~mska_core.cli.predict_cmd.ModelCrops`); the
features are :func:`mska_core.export.embed.embed_batch`'s. ``--out FILE.npz`` writes every array
(:func:`~mska_core.export.embed.save_embeddings`); ``--json`` a summary with the clip vectors.
"""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import console, emit_json


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "embed", help="fused per-frame features and a pooled clip vector of clips or videos",
        description="Encode keypoint clips (.npy/.npz [T, J, 3], PICKLE:NAME) or videos (keypoints from "
                    "--keypoints or --estimator, as mska predict reads them) and give the fused features a "
                    "recognition head reads, per output frame, and their mean over the clip.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="F", help="best.pt or last.pt of a run")
    parser.add_argument("clips", nargs="+", metavar="CLIP|VIDEO",
                        help="keypoint file, PICKLE:NAME, or a video (.mp4, .avi, .mkv, .webm, .mov)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--keypoints", metavar="PATH", help="for videos: keypoint files, as for mska predict")
    source.add_argument("--estimator", metavar="NAME", help="for videos: a registered keypoint estimator")
    parser.add_argument("--head", default=None, metavar="NAME",
                        help="the head whose fused input is embedded (default: fuse, else the head reading the "
                             "most streams)")
    parser.add_argument("--invalid", choices=("refuse", "repair"), default=None,
                        help="a clip with NaN/inf values or confidences outside [0, 1]: refuse or repair it "
                             "(default: the checkpoint's [data] invalid)")
    parser.add_argument("--out", metavar="FILE.npz", help="write every clip's features and vector to FILE.npz")
    parser.add_argument("--json", action="store_true", help="write a summary (with the clip vectors) as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mska_core.cli.predict_cmd import ModelCrops, VideoReader, clip_item, is_video
    from mska_core.data.collate import Collator
    from mska_core.errors import DataError
    from mska_core.export.embed import check_head, embed_batch, save_embeddings
    from mska_core.registry import get_registry
    from mska_core.training.trained import load_trained

    registry = get_registry()
    trained = load_trained(args.checkpoint, registry=registry)
    config, encoder = trained.config, trained.model.encoder
    head = check_head(encoder, args.head)
    crops = ModelCrops.of(trained, registry)
    videos = [spec for spec in args.clips if is_video(spec)]
    if (args.keypoints is not None or args.estimator is not None) and not videos:
        raise DataError("--keypoints and --estimator are for VIDEO arguments; keypoint clips carry their own points")
    reader = VideoReader(args, config, registry, crops) if videos else None
    num_joints = registry.layouts.get(config.model.layout).num_joints
    layouts = {layout.name: layout for layout in registry.layouts}
    collate = Collator(trained.vocabularies, crops.normalization)
    rows: list[dict[str, Any]] = []
    names, embeddings = [], []
    try:
        for spec in args.clips:
            name, frames, item = clip_item(spec, reader=reader, config=config, layouts=layouts,
                                           num_joints=num_joints, policy=args.invalid or config.data.invalid,
                                           crops=crops, trained=trained)
            if item is None:
                rows.append({"clip": spec, "name": name, "error": "no usable keypoints"})
                continue
            (embedding,) = embed_batch(encoder, collate([item]).clips, head=head)
            names.append(name)
            embeddings.append(embedding)
            rows.append({"clip": spec, "name": name, "frames": frames,
                         "frames_encoded": int(item.keypoints.shape[0]), **embedding.summary()})
    finally:
        if reader is not None:
            reader.close()
    if args.out:
        save_embeddings(args.out, names, embeddings)
    status = 1 if any("error" in row for row in rows) else 0
    if args.json:
        emit_json(rows)
        return status
    out = console()
    for row in rows:
        out.print(f"[bold]{row['clip']}[/bold]", soft_wrap=True)
        if "error" in row:
            out.print("  no features: no usable keypoints")
            continue
        out.print(f"  head {row['head']} ({' + '.join(row['streams'])}): {row['feature_frames']} frames x "
                  f"{row['dim']} features, clip vector [{row['dim']}], gloss features [{row['gloss_dim']}]")
    if args.out:
        out.print(f"wrote {args.out}", soft_wrap=True, markup=False)
    return status

"""``mska pack OUT --to DEST --shards N [--split NAME]``: an extraction's clips as WebDataset shards.

Each shard is a tar file of whole clips (metadata, keypoints, packed crops per stream), written
atomically; ``DEST/shards.json`` lists them. :class:`mska_core.data.shards.ClipShards` streams them
across DDP ranks and DataLoader workers, each clip once per epoch (the format is in
:mod:`mska_core.data.contract`).
"""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import emit_json, status_console


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pack", help="an extraction's clips (keypoints, crops) as WebDataset tar shards",
        description=(
            "Write the finished clips of an mska extract output folder into N WebDataset shards (tar files of "
            "whole clips: metadata, keypoints, packed crops per stream), for streaming from shared or object "
            "storage. With --split, only the clips of OUT/SPLIT.tsv, with their gloss and text."
        ),
    )
    parser.add_argument("out", metavar="OUT", help="the output folder of mska extract")
    parser.add_argument("--to", required=True, metavar="DEST", help="folder for the shards")
    parser.add_argument("--shards", type=int, default=1, metavar="N", help="number of shards (default 1)")
    parser.add_argument("--split", metavar="NAME", help="pack only the clips of OUT/NAME.tsv, with their annotations")
    parser.add_argument("--json", action="store_true", help="write a summary as JSON on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mska_core.data.shards import pack_shards

    paths = pack_shards(args.out, args.to, args.shards, split=args.split)
    status_console().print(f"wrote {len(paths)} shard(s) to {args.to}", soft_wrap=True, markup=False)
    if args.json:
        emit_json({"shards": [str(p) for p in paths]})
    return 0

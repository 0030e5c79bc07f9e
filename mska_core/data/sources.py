"""The readers of real data mska-core supplies (the built-in plugin ``core-data``): ``mska-pickle``,
``directory``, ``pose`` and ``shards``. (``synthetic`` is :mod:`mska_core.synthetic.source`, the built-in plugin
``core-synthetic``.)

Each is a :class:`~mska_core.records.DataSource` whose ``open(data, layout)`` reads the three splits
named by the ``[data]`` table in the model's :class:`~mska_core.records.KeypointLayout`. Validation of
the clips (``[data] invalid``) happens after ``open``, in :func:`mska_core.data.datasets.load_corpus`,
for every source alike. See ``docs/data.md`` for the formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mska_core.data.samples import SPLITS, Corpus, Sample
from mska_core.errors import DataError
from mska_core.hookspecs import hookimpl
from mska_core.records import DataSource

#: Split file names of an MSKA data folder when ``[data] train/dev/test`` are not set.
PICKLE_NAMES = {"train": "labels.train", "dev": "labels.dev", "test": "labels.test"}


def _root(data: Any) -> Path:
    """``[data] path``, which must be a folder."""
    if not data.path:
        raise DataError(f"data.path: source {data.source!r} needs the folder that holds its splits")
    root = Path(data.path)
    if not root.is_dir():
        raise DataError(f"data.path: {str(root)!r} is not a folder")
    return root


def open_mska_pickle(data: Any, layout: Any) -> Corpus:
    """MSKA / TwoStream pickles, one per split, normalised as the reference does."""
    from mska_core.data.pickles import load_split

    root = _root(data)
    splits = {
        split: load_split(root / (getattr(data, split) or PICKLE_NAMES[split]), width=data.frame_width,
                          height=data.frame_height, num_joints=layout.num_joints)
        for split in SPLITS
    }
    return Corpus(**splits, source=f"mska-pickle: {root}", layout=layout.name)


def open_directory(data: Any, layout: Any) -> Corpus:
    """Our directory format: ``SPLIT.tsv`` and ``SPLIT/ID.npy`` (or ``.npz``) per clip."""
    from mska_core.data.directory import read_split

    root = _root(data)
    splits = {
        split: read_split(root, split, getattr(data, split), normalize=data.normalize, width=data.frame_width,
                          height=data.frame_height)
        for split in SPLITS
    }
    return Corpus(**splits, source=f"directory: {root}", layout=layout.name)


def open_pose(data: Any, layout: Any) -> Corpus:
    """``.pose`` files: ``SPLIT.tsv`` (id, gloss, text) and ``SPLIT/ID.pose`` or ``ID.pose`` beside the
    tables. Each file is read into the model's layout through the layout's header maps (any header kind
    it reads: docs/data.md), its pixels normalised with the file's own frame size (x / width, flipped
    y / height, to [-1, 1])."""
    from mska_core.data.directory import read_annotations

    root = _root(data)
    splits = {}
    for split in SPLITS:
        tsv = root / (getattr(data, split) or f"{split}.tsv")
        splits[split] = [_pose_sample(root, split, row, layout, tsv)
                         for row in read_annotations(tsv, f"{split} table")]
    return Corpus(**splits, source=f"pose: {root}", layout=layout.name)


def _pose_sample(root: Path, split: str, row: Any, layout: Any, tsv: Path) -> Sample:
    import torch

    from mska_core.data.keypoint_files import read_keypoint_file
    from mska_core.data.contract import normalize_pixels

    candidates = (root / split / f"{row.clip_id}.pose", root / f"{row.clip_id}.pose")
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise DataError(f"{tsv}:{row.line}: no pose file for {row.clip_id!r} (looked for "
                        f"{' and '.join(str(c) for c in candidates)})")
    clip = read_keypoint_file(path, {layout.name: layout}, layout.name)  # through the layout's header maps
    if clip.frame_size is None:
        raise DataError(f"{path}: the pose header has no frame size, so its pixels cannot be normalised")
    keypoints = normalize_pixels(torch.from_numpy(clip.points), *clip.frame_size)
    return Sample(name=row.clip_id, keypoints=keypoints, gloss=row.gloss, text=row.text, path=str(path))


def open_shards(data: Any, layout: Any) -> Corpus:
    """WebDataset shards ``mska pack`` wrote, one folder per split (``PATH/train``, ``PATH/dev``,
    ``PATH/test``, or the folders ``[data] train/dev/test`` name under ``PATH``), indexed once and read
    by random access (:mod:`mska_core.data.shard_index`); keypoints normalised with each clip's frame
    size; crop streams read their crops from the shards."""
    import torch

    from mska_core.data.contract import normalize_pixels
    from mska_core.data.shard_index import ShardCrops, index_shards
    from mska_core.data.shards import shard_paths

    root = _root(data)
    splits: dict[str, list[Sample]] = {}
    members, boxes = {}, {}
    for split in SPLITS:
        folder = root / (getattr(data, split) or split)
        if not folder.is_dir():
            raise DataError(f"data.path: no {split} shards {str(folder)!r}; write them with mska pack OUT --to "
                            f"{folder} --split {split}")
        paths = shard_paths(folder)
        if not paths:
            raise DataError(f"data.path: no shards (*.tar) in {str(folder)!r}; write them with mska pack")
        splits[split] = []
        for clip in index_shards(paths):
            meta = clip.meta
            if meta.get("layout") != layout.name:
                raise DataError(f"{clip.where}: clip {clip.id!r} is in layout {meta.get('layout')!r}, but "
                                f"model.layout is {layout.name!r}; set model.layout = \"{meta.get('layout')}\"")
            keypoints = normalize_pixels(torch.from_numpy(clip.keypoints[..., :3].copy()), meta["width"],
                                         meta["height"])
            splits[split].append(Sample(name=clip.id, keypoints=keypoints, gloss=meta.get("gloss", ""),
                                        text=meta.get("text", ""), path=clip.where))
            members.update({(stream, clip.id): member for stream, member in clip.crops.items()})
            if clip.boxes is not None:
                boxes[clip.id] = clip.boxes
    crops = ShardCrops(members, data.crop_options.missing, str(root), boxes)
    return Corpus(**splits, source=f"shards: {root}", layout=layout.name, crops=crops)


@hookimpl
def mska_data_sources() -> list[DataSource]:
    return [
        DataSource(name="mska-pickle", open=open_mska_pickle,
                   description="MSKA / TwoStream keypoint pickles, one per split"),
        DataSource(name="directory", open=open_directory,
                   description="SPLIT.tsv (id, gloss, text) and SPLIT/ID.npy|.npz keypoints"),
        DataSource(name="pose", open=open_pose,
                   description="SPLIT.tsv (id, gloss, text) and .pose files (pose-format)"),
        DataSource(name="shards", open=open_shards,
                   description="WebDataset shards of mska pack, PATH/SPLIT/*.tar (keypoints and crops)"),
    ]

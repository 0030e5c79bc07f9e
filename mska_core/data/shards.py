"""WebDataset shards of an extraction: written by ``mska pack``, streamed by :class:`ClipShards`.

A shard is a plain tar file (the WebDataset convention: the members of one sample share a key, the
name up to the first dot) holding whole clips: their annotation and metadata, their keypoints, their crop
boxes and their packed crops per stream (the layout is in :mod:`mska_core.data.contract`). Tar files stream from
any storage (a local disk, a network file system, object storage through a mounted path), and any
WebDataset reader reads them too.

:class:`ClipShards` is a torch ``IterableDataset`` that streams them across DDP ranks and DataLoader
workers **without duplicates**: every (rank, worker) reader is one of ``world_size × num_workers``
slots. With at least as many shards as slots, slot ``s`` reads shards ``s, s + slots, ...``; with
fewer, every slot reads every shard and keeps clips ``s, s + slots, ...`` of the whole sequence. Either
way each clip of an epoch is read by exactly one slot. :meth:`ClipShards.set_epoch` reorders the
shards from ``(seed, epoch)``, the same way on every rank, so the split stays a partition.
(Uneven shards leave ranks with different clip counts; a training loop over ranks must allow for it.)
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.data.contract import (
    CONTRACT_VERSION,
    PACKED_SUFFIX,
    SHARD_BOXES,
    SHARD_INDEX,
    SHARD_KEYPOINTS,
    SHARD_META,
    SHARD_NAME,
)
from mska_core.errors import DataError

from torch.utils.data import IterableDataset


@attrs.frozen
class ShardClip:
    """One clip read from a shard: its id, annotation, metadata, pixel keypoints ``float32 [T, J, 3]``
    and, per stream, its packed crop file's bytes (:meth:`crops` decodes frames of it)."""

    id: str
    gloss: str
    text: str
    meta: dict[str, Any]
    keypoints: Any = attrs.field(repr=False)
    packed: dict[str, bytes] = attrs.field(repr=False, factory=dict)

    def crops(self, stream: str, frames: Sequence[int]) -> Any:
        """uint8 ``[len(frames), S, S, 3]`` crops of ``stream`` at ``frames`` (numpy)."""
        import numpy as np

        from mska_core.data.crop_pack import CropPack

        if stream not in self.packed:
            raise DataError(f"clip {self.id!r} has no crops of stream {stream!r} in its shard "
                            f"(it has {', '.join(sorted(self.packed)) or 'none'})")
        return np.stack(CropPack(self.packed[stream], name=f"{self.id}.{stream}{PACKED_SUFFIX}").read(frames))


# --- writing --------------------------------------------------------------------------------------


def pack_shards(out: str | Path, dest: str | Path, shards: int, *, split: str | None = None) -> list[Path]:
    """Write the finished clips of the extraction ``out`` (those of ``SPLIT.tsv`` with ``split``, with
    their gloss and text) into ``shards`` WebDataset shards in ``dest``, each written atomically, and
    ``dest/shards.json``; returns the shards' paths. Clips go to shards in id order, in runs of nearly
    equal length."""
    from mska_core.data.contract import ExtractedLayout, read_all_clips, read_annotations
    from mska_core.io import atomic_open, atomic_write_bytes

    layout = ExtractedLayout(out)
    rows = read_all_clips(layout)
    if split is not None:
        table = read_annotations(layout.root / f"{split}.tsv", f"{split} table")
        notes = {row.clip_id: (row.gloss, row.text) for row in table}
        missing = [clip_id for clip_id in notes if clip_id not in rows]
        if missing:
            raise DataError(f"{layout.root / f'{split}.tsv'}: clip {missing[0]!r} is not a finished clip of "
                            f"{layout.root} (no line in clips.tsv)")
        ids = sorted(notes)
    else:
        notes, ids = {}, sorted(rows)
    if not ids:
        raise DataError(f"{layout.root}: no finished clips to pack (clips.tsv is empty or missing)")
    if shards < 1:
        raise DataError(f"--shards {shards}: give at least 1")
    shards = min(shards, len(ids))
    dest = Path(dest)
    ordinal = {clip_id: number for number, clip_id in enumerate(ids)}
    paths, counts = [], []
    for index in range(shards):
        chunk = ids[index * len(ids) // shards:(index + 1) * len(ids) // shards]
        path = dest / SHARD_NAME.format(index=index)
        with atomic_open(path, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
            for clip_id in chunk:
                gloss, text = notes.get(clip_id, ("", ""))
                _add_clip(tar, layout, rows[clip_id], ordinal[clip_id], gloss, text)
        paths.append(path)
        counts.append(len(chunk))
    streams = sorted({stream for clip_id in ids for stream in rows[clip_id].streams})
    index_data = {"contract_version": CONTRACT_VERSION, "split": split, "streams": streams,
                  "shards": [{"name": p.name, "clips": n} for p, n in zip(paths, counts)]}
    atomic_write_bytes(dest / SHARD_INDEX, (json.dumps(index_data, indent=2) + "\n").encode())
    return paths


def _add_clip(tar: tarfile.TarFile, layout: Any, row: Any, ordinal: int, gloss: str, text: str) -> None:
    key = f"{ordinal:09d}"
    meta = {"id": row.id, "gloss": gloss, "text": text, "frames": row.frames, "fps": row.fps, "width": row.width,
            "height": row.height, "layout": row.layout, "streams": list(row.streams)}
    _add(tar, key + SHARD_META, json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    _add(tar, key + SHARD_KEYPOINTS, layout.keypoints(row.id).read_bytes())
    if layout.boxes(row.id).is_file():
        _add(tar, key + SHARD_BOXES, layout.boxes(row.id).read_bytes())
    for stream in row.streams:
        _add(tar, f"{key}.{stream}{PACKED_SUFFIX}", _packed_bytes(layout, stream, row.id))


def _packed_bytes(layout: Any, stream: str, clip_id: str) -> bytes:
    """A clip's packed crops of ``stream``: its packed file, or its folder of JPEG files packed now."""
    from mska_core.data.contract import crop_frame_name
    from mska_core.data.crop_pack import CropPack, pack_bytes

    pack = layout.crop_pack(stream, clip_id)
    if pack.is_file():
        return pack.read_bytes()
    folder = layout.crop_folder(stream, clip_id)
    if not folder.is_dir():
        raise DataError(f"clip {clip_id!r}, stream {stream!r}: no crops ({pack} or {folder})")
    jpegs = []
    index = 0
    while (folder / crop_frame_name(index)).is_file():
        jpegs.append((folder / crop_frame_name(index)).read_bytes())
        index += 1
    from PIL import Image

    side = Image.open(io.BytesIO(jpegs[0])).width if jpegs else 0
    data = pack_bytes(jpegs, side)
    CropPack(data)  # a whole file
    return data


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# --- reading --------------------------------------------------------------------------------------


def shard_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The shards of ``source``: a folder ``mska pack`` wrote (its ``shards.json`` order, else every
    ``*.tar`` in name order), one tar file, or a list of them."""
    if isinstance(source, (str, Path)):
        root = Path(source)
        if root.is_dir():
            index = root / SHARD_INDEX
            if index.is_file():
                return [root / entry["name"] for entry in json.loads(index.read_text())["shards"]]
            return sorted(root.glob("*.tar"))
        if root.is_file():
            return [root]
        raise DataError(f"shards {str(root)!r} do not exist; give the folder mska pack wrote")
    return [Path(p) for p in source]


class ClipShards(IterableDataset):
    """The clips of WebDataset shards, streamed; each clip once per epoch over every DDP rank and
    DataLoader worker (see the module's docs).

    ``rank`` and ``world_size`` default to ``torch.distributed``'s when it is initialised, else 0 and
    1. Items are :class:`ShardClip` (use ``batch_size=None`` or a collate function of your own).
    """

    def __init__(self, source: str | Path | Sequence[str | Path], *, rank: int | None = None,
                 world_size: int | None = None, seed: int = 0) -> None:
        self.shards = shard_paths(source)
        if not self.shards:
            raise DataError(f"no shards (*.tar) in {source}")
        self.rank, self.world_size = _distributed(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise DataError(f"rank {self.rank} is not within world size {self.world_size}")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reorder the shards for ``epoch`` (call it with the same epoch on every rank)."""
        self.epoch = epoch

    def slot(self) -> tuple[int, int]:
        """``(this reader's slot, number of slots)`` over ranks and DataLoader workers."""
        from torch.utils.data import get_worker_info

        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        return self.rank * workers + worker_id, self.world_size * workers

    def order(self) -> list[Path]:
        """The shards in this epoch's order (the same on every rank)."""
        import torch

        from mska_core.data.crops import sample_seed

        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch))
        return [self.shards[i] for i in torch.randperm(len(self.shards), generator=generator).tolist()]

    def __iter__(self) -> Iterator[ShardClip]:
        slot, slots = self.slot()
        shards = self.order()
        if len(shards) >= slots:
            for path in shards[slot::slots]:
                yield from read_shard(path)
            return
        for position, clip in enumerate(clip for path in shards for clip in read_shard(path)):
            if position % slots == slot:
                yield clip


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return (dist.get_rank() if rank is None else rank,
                dist.get_world_size() if world_size is None else world_size)
    return rank or 0, world_size or 1


def read_shard(path: Path) -> Iterator[ShardClip]:
    """The clips of one shard, streamed in order (members grouped by key)."""
    key, members = None, {}
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                this, _, suffix = name.partition(".")
                if key is not None and this != key:
                    yield _clip(path, key, members)
                    members = {}
                key = this
                handle = tar.extractfile(member)
                members["." + suffix] = handle.read() if handle is not None else b""
    except tarfile.TarError as exc:
        raise DataError(f"{path}: not a readable shard ({exc})") from None
    if key is not None:
        yield _clip(path, key, members)


def _clip(path: Path, key: str, members: dict[str, bytes]) -> ShardClip:
    import numpy as np

    if SHARD_META not in members or SHARD_KEYPOINTS not in members:
        raise DataError(f"{path}: clip {key} lacks {SHARD_META} or {SHARD_KEYPOINTS}")
    meta = json.loads(members[SHARD_META].decode("utf-8"))
    keypoints = np.load(io.BytesIO(members[SHARD_KEYPOINTS]), allow_pickle=False)
    packed = {suffix[1:-len(PACKED_SUFFIX)]: data for suffix, data in members.items() if suffix.endswith(PACKED_SUFFIX)}
    return ShardClip(id=meta["id"], gloss=meta.get("gloss", ""), text=meta.get("text", ""), meta=meta,
                     keypoints=keypoints, packed=packed)

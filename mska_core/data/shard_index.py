"""WebDataset shards read by index: the ``shards`` data source's random access to clips in tar files.

A tar file is random access by offset: every member's bytes lie at a fixed offset given by its header.
:func:`index_shards` walks the headers of each shard once (the members' bytes are skipped, not read),
reads each clip's metadata and keypoints, and keeps where each clip's packed crops of each stream lie
(shard, offset, size). A clip is then read by index like a clip of any other source: the training
loop's seeded batches, its exact resume and its DDP split (each rank its slice of every global batch,
DataLoader workers their batches) stay what they are for every source, so each clip is read exactly once
per epoch over all ranks and workers. :class:`ShardCrops` reads the crops of exactly the frames the
augmentation picks straight from the tar files (the packed crop format, :mod:`mska_core.data.crop_pack`,
read in place), in DataLoader workers.

Only the index (a few numbers per clip and stream) and the keypoints are held in memory; crops stay in
the shards. :class:`~mska_core.data.shards.ClipShards` streams the same shards for readers that want
no index.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.data.contract import PACKED_SUFFIX, SHARD_BOXES, SHARD_KEYPOINTS, SHARD_META
from mska_core.errors import DataError


@attrs.frozen
class ShardMember:
    """Where a member's bytes lie: ``size`` bytes at ``offset`` of the tar file ``path``."""

    path: Path
    offset: int
    size: int

    def read(self) -> bytes:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise DataError(f"{self.path}: a member at byte {self.offset} is cut short (the shard is truncated)")
        return data


@attrs.frozen
class IndexedClip:
    """One clip of a shard: its metadata (``id``, ``gloss``, ``text``, ``width``, ``height``, ``layout``,
    ...), its pixel keypoints ``float32 [T, J, 3]`` and where its packed crops of each stream lie."""

    meta: dict[str, Any]
    keypoints: Any = attrs.field(repr=False)
    crops: dict[str, ShardMember] = attrs.field(factory=dict)
    where: str = ""  # the shard, for messages
    boxes: ShardMember | None = None  # the extraction's boxes/ID.npz (missing flags), where packed

    @property
    def id(self) -> str:
        return str(self.meta["id"])


def index_shards(paths: Sequence[Path]) -> list[IndexedClip]:
    """The clips of the shards ``paths`` in order, indexed (see the module's docs)."""
    clips: list[IndexedClip] = []
    for path in paths:
        clips.extend(_index_shard(Path(path)))
    return clips


def _index_shard(path: Path) -> list[IndexedClip]:
    if not path.is_file():
        raise DataError(f"shard {str(path)!r} does not exist (shards.json lists it); run mska pack again")
    members: dict[str, dict[str, ShardMember]] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, suffix = member.name.rsplit("/", 1)[-1].partition(".")
                if key not in members:
                    members[key] = {}
                    order.append(key)
                members[key]["." + suffix] = ShardMember(path, member.offset_data, member.size)
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: not a readable shard ({exc}); run mska pack again") from None
    return [_indexed(path, key, members[key]) for key in order]


def _indexed(path: Path, key: str, members: dict[str, ShardMember]) -> IndexedClip:
    import numpy as np

    if SHARD_META not in members or SHARD_KEYPOINTS not in members:
        raise DataError(f"{path}: clip {key} lacks {SHARD_META} or {SHARD_KEYPOINTS}; run mska pack again")
    try:
        meta = json.loads(members[SHARD_META].read().decode("utf-8"))
        keypoints = np.load(io.BytesIO(members[SHARD_KEYPOINTS].read()), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: clip {key}: unreadable metadata or keypoints ({exc})") from None
    crops = {suffix[1:-len(PACKED_SUFFIX)]: member for suffix, member in members.items()
             if suffix.endswith(PACKED_SUFFIX)}
    return IndexedClip(meta=meta, keypoints=keypoints, crops=crops, where=str(path), boxes=members.get(SHARD_BOXES))


@attrs.frozen
class ShardCrops:
    """The crops of indexed clips, read from their shards in place; the interface a
    :class:`~mska_core.data.datasets.ClipDataset` reads crops through (that of
    :class:`~mska_core.data.crop_files.CropFolders`). ``members`` maps ``(stream, clip id)`` to where
    that packed crop file lies; ``missing`` is ``[data.crop_options] missing``."""

    members: dict[tuple[str, str], ShardMember]
    missing: str = "error"
    where: str = ""
    boxes: dict[str, ShardMember] = attrs.field(factory=dict)  # clip id -> its boxes member
    _flags: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def _pack(self, stream: str, clip: str) -> Any:
        from mska_core.data.crop_pack import CropPack

        member = self.members.get((stream, clip))
        if member is None:
            raise DataError(self.problem(stream, clip, 0) or f"clip {clip!r}, stream {stream!r}: no crops")
        return CropPack(member.path, name=f"{member.path}:{clip}.{stream}{PACKED_SUFFIX}",
                        region=(member.offset, member.size))

    def problem(self, stream: str, clip: str, num_frames: int) -> str | None:
        """Why ``clip`` (``num_frames`` keypoint frames) cannot read ``stream``'s crops, or ``None``."""
        if (stream, clip) not in self.members:
            return f"clip {clip!r}, stream {stream!r}: the shards in {self.where} hold no crops of it"
        frames = len(self._pack(stream, clip))
        if frames < num_frames:
            return (f"clip {clip!r}, stream {stream!r}: its shard holds {frames} crops, the clip has {num_frames} "
                    "keypoint frames (one crop each)")
        return None

    def scan(self, samples: Sequence[Any], streams: Sequence[str]) -> dict[int, frozenset[str]]:
        """``{clip index: streams without crops}``; under ``missing = "error"`` the first is a
        :class:`~mska_core.errors.DataError`."""
        missing: dict[int, set[str]] = {}
        for index, sample in enumerate(samples):
            for stream in streams:
                problem = self.problem(stream, sample.name, sample.num_frames)
                if problem is None:
                    continue
                if self.missing != "mask":
                    raise DataError(f"{problem}; extract and pack it, or set [data.crop_options] missing = "
                                    "\"mask\" to mask the stream for such clips")
                missing.setdefault(index, set()).add(stream)
        return {index: frozenset(streams) for index, streams in missing.items()}

    def read(self, stream: str, clip: str, frames: Sequence[int]) -> Any:
        """uint8 ``[len(frames), 3, S, S]``: the crops of ``frames`` (repeats allowed)."""
        import numpy as np
        import torch

        wanted = sorted(set(int(f) for f in frames))
        images = self._pack(stream, clip).read(wanted)
        row = {index: i for i, index in enumerate(wanted)}
        position = torch.tensor([row[int(f)] for f in frames], dtype=torch.long)
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)[position].contiguous()

    def found(self, stream: str, clip: str, frames: Sequence[int]) -> Any:
        """bool ``[len(frames)]``: whether ``stream``'s part was found in each of ``frames`` of ``clip``
        (the ``STREAM_missing`` flags of the boxes packed with it); ``None`` without flags."""
        import numpy as np
        import torch

        if clip not in self._flags:
            member = self.boxes.get(clip)
            self._flags[clip] = None
            if member is not None:
                try:
                    with np.load(io.BytesIO(member.read()), allow_pickle=False) as boxes:
                        self._flags[clip] = {name[: -len("_missing")]: np.asarray(boxes[name], dtype=bool)
                                             for name in boxes.files if name.endswith("_missing")}
                except (OSError, ValueError) as exc:
                    raise DataError(f"{member.path}: clip {clip!r}: unreadable boxes ({exc})") from None
        flags = self._flags[clip]
        if not flags or stream not in flags or not len(flags[stream]):
            return None
        missing = flags[stream]
        index = np.clip(np.asarray(frames, dtype=np.int64), 0, len(missing) - 1)
        return torch.from_numpy(~missing[index])

    def image_size(self, samples: Sequence[Any], stream: str) -> int | None:
        """The side of ``stream``'s crops: that of the first clip of ``samples`` that has crops."""
        for sample in samples:
            if (stream, sample.name) in self.members:
                pack = self._pack(stream, sample.name)
                if len(pack):
                    return int(pack.side)
        return None

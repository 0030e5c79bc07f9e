"""Crops for fine-tuning: read from what ``mska extract`` writes, sized for the backbones that read
them, and augmented in space for training (see ``docs/data.md``, "Crops from disk").

::

    CROPS/                      [data.crop_options] path (default: [data] path / "crops")
      STREAM/ID.crops           a clip's crops in one packed file (mska_core.data.crop_pack), or
      STREAM/ID/000000.jpg      one square crop per keypoint frame, frame 0 first (the folder format)

Names and layout are :mod:`mska_core.data.contract`'s. A clip's crops of a stream are in
``CROPS/STREAM/ID.crops`` or ``CROPS/STREAM/ID/`` (for an MSKA pickle entry named ``a/b/ID``,
``CROPS/STREAM/a/b/ID`` or ``CROPS/STREAM/ID``). A :class:`ClipDataset
<mska_core.data.datasets.ClipDataset>` reads, in ``__getitem__`` (so in DataLoader workers), only the
crops of the frames the temporal augmentation picked for the keypoints: crop frame ``i`` is keypoint
frame ``i``. Nothing is kept in memory between items but where each clip's crops are, which is looked
up once per clip and stream (:meth:`CropFolders.locate`), and one :class:`CropFolders` serves a corpus
(:func:`crop_folders`): the crop folders are scanned once per dataset.

Only the ``synthetic`` source renders crops (:attr:`Corpus.render_crops
<mska_core.data.Corpus.render_crops>`); every other source reads them from disk.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.data.contract import PACKED_SUFFIX, crop_frame_index, crop_frame_name
from mska_core.errors import DataError

log = logging.getLogger(__name__)

@attrs.frozen
class ClipCrops:
    """Where one clip's crops of one stream are: a packed file (``packed``) holding ``count`` frames, or
    a folder holding the frames ``present``."""

    path: Path
    packed: bool
    count: int = 0
    present: frozenset[int] = frozenset()

    def first_missing(self, num_frames: int) -> int | None:
        """The first of frames ``0 .. num_frames - 1`` without a crop, or ``None``."""
        if self.packed:
            return None if self.count >= num_frames else self.count
        return next((i for i in range(num_frames) if i not in self.present), None)


@attrs.frozen
class CropFolders:
    """The crops of a corpus under ``root`` (packed files or folders of JPEG files, see the module's
    docs); ``missing`` is what a clip without a stream's crops does: ``"error"`` (a
    :class:`~mska_core.errors.DataError`) or ``"mask"``. Where each clip's crops are is looked up once
    (:meth:`locate`) and kept."""

    root: Path = attrs.field(converter=Path)
    missing: str = "error"
    _found: dict[tuple[str, str], ClipCrops | None] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _flags: dict[str, dict[str, Any] | None] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def candidates(self, stream: str, clip: str) -> list[Path]:
        """Where the crops of ``clip`` for ``stream`` may be (as folders; a packed file is the folder's
        path with ``.crops`` appended), in the order they are looked for."""
        folders = [self.root / stream / clip]
        last = clip.replace("\\", "/").rsplit("/", 1)[-1]
        if last != clip:
            folders.append(self.root / stream / last)
        return folders

    def locate(self, stream: str, clip: str) -> ClipCrops | None:
        """Where ``clip``'s crops of ``stream`` are (a packed file before a folder), or ``None``."""
        key = (stream, clip)
        if key not in self._found:
            self._found[key] = self._look(stream, clip)
        return self._found[key]

    def _look(self, stream: str, clip: str) -> ClipCrops | None:
        from mska_core.data.crop_pack import pack_info

        for candidate in self.candidates(stream, clip):
            pack = Path(f"{candidate}{PACKED_SUFFIX}")
            if pack.is_file():
                count, _ = pack_info(pack)
                return ClipCrops(pack, True, count=count)
            if candidate.is_dir():
                present = frozenset(index for name in os.listdir(candidate)
                                    if (index := crop_frame_index(name)) is not None)
                return ClipCrops(candidate, False, present=present)
        return None

    def folder(self, stream: str, clip: str) -> Path | None:
        """The crop file or folder of ``clip`` for ``stream``, or ``None`` when there is none."""
        found = self.locate(stream, clip)
        return found.path if found is not None else None

    def problem(self, stream: str, clip: str, num_frames: int) -> str | None:
        """Why ``clip`` (``num_frames`` keypoint frames) cannot read ``stream``'s crops, or ``None``."""
        found = self.locate(stream, clip)
        if found is None:
            looked = " and ".join(f"{c}{PACKED_SUFFIX}, {c}" for c in self.candidates(stream, clip))
            return f"clip {clip!r}, stream {stream!r}: no crops (looked for {looked})"
        index = found.first_missing(num_frames)
        if index is None:
            return None
        if found.packed:
            return (f"clip {clip!r}, stream {stream!r}: {found.path} holds {found.count} crops, the clip has "
                    f"{num_frames} keypoint frames (one crop each)")
        return (f"clip {clip!r}, stream {stream!r}: crop {found.path / crop_frame_name(index)} is missing (the "
                f"clip has {num_frames} keypoint frames, one crop each)")

    def scan(self, samples: Sequence[Any], streams: Sequence[str]) -> dict[int, frozenset[str]]:
        """``{clip index: streams without crops}`` of ``samples``; under ``missing = "error"`` the first
        clip without crops is a :class:`~mska_core.errors.DataError` naming clip, stream and path."""
        missing: dict[int, set[str]] = {}
        for index, sample in enumerate(samples):
            for stream in streams:
                problem = self.problem(stream, sample.name, sample.num_frames)
                if problem is None:
                    continue
                if self.missing != "mask":
                    raise DataError(f"{problem}; run mska extract for it, set [data.crop_options] path, or "
                                    "set [data.crop_options] missing = \"mask\" to mask the stream for such clips")
                missing.setdefault(index, set()).add(stream)
        if missing:
            count = sum(len(s) for s in missing.values())
            log.warning("crops: %d clip streams have no crops on disk and are masked (data.crop_options.missing "
                        "= \"mask\"), e.g. %s", count, self._first(samples, missing))
        return {index: frozenset(streams) for index, streams in missing.items()}

    def _first(self, samples: Sequence[Any], missing: Mapping[int, set[str]]) -> str:
        index = min(missing)
        stream = sorted(missing[index])[0]
        return f"clip {samples[index].name!r}, stream {stream!r}"

    def found(self, stream: str, clip: str, frames: Sequence[int]) -> Any:
        """bool ``[len(frames)]``: whether ``stream``'s part was found in each of ``frames`` of ``clip``,
        from ``mska extract``'s ``boxes/ID.npz`` beside the crop folder (its ``STREAM_missing`` flags);
        ``None`` when there are no flags (crops from elsewhere: every crop is taken as found)."""
        import numpy as np
        import torch

        if clip not in self._flags:
            last = clip.replace("\\", "/").rsplit("/", 1)[-1]
            boxes = self.root.parent / "boxes"
            self._flags[clip] = _missing_flags(boxes / f"{clip}.npz") or _missing_flags(boxes / f"{last}.npz")
        flags = self._flags[clip]
        if flags is None or stream not in flags:
            return None
        missing = flags[stream]
        index = np.clip(np.asarray(frames, dtype=np.int64), 0, max(len(missing) - 1, 0))
        return torch.from_numpy(~missing[index]) if len(missing) else None

    def read(self, stream: str, clip: str, frames: Sequence[int]) -> Any:
        """uint8 ``[len(frames), 3, S, S]``: the crops of ``frames`` (indices into the clip's keypoint
        frames, repeats allowed), each frame read and decoded once."""
        import numpy as np
        import torch

        found = self.locate(stream, clip)
        if found is None:
            raise DataError(self.problem(stream, clip, 0) or f"clip {clip!r}, stream {stream!r}: no crops")
        wanted = sorted(set(int(f) for f in frames))
        if found.packed:
            from mska_core.data.crop_pack import CropPack

            try:
                images = CropPack(found.path).read(wanted)
            except DataError as exc:
                raise DataError(f"clip {clip!r}, stream {stream!r}: {exc}") from None
        else:
            images = [_read_jpeg(found.path / crop_frame_name(index), clip, stream) for index in wanted]
        shapes = {image.shape for image in images}
        if len(shapes) != 1 or next(iter(shapes))[0] != next(iter(shapes))[1]:
            raise DataError(f"clip {clip!r}, stream {stream!r}: the crops in {found.path} are not all square and "
                            f"of one size (found {sorted(shape[:2] for shape in shapes)})")
        row = {index: i for i, index in enumerate(wanted)}
        position = torch.tensor([row[int(f)] for f in frames], dtype=torch.long)
        stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # [U, 3, S, S]
        return stacked[position].contiguous()

    def image_size(self, samples: Sequence[Any], stream: str) -> int | None:
        """The side of ``stream``'s crops: that of the first clip of ``samples`` that has crops."""
        from mska_core.data.crop_pack import pack_info

        for sample in samples:
            found = self.locate(stream, sample.name)
            if found is None:
                continue
            if found.packed:
                count, side = pack_info(found.path)
                if count:
                    return int(side)
                continue
            if 0 not in found.present:
                continue
            first = found.path / crop_frame_name(0)
            from PIL import Image

            with Image.open(first) as image:
                width, height = image.size
            if width != height:
                raise DataError(f"{first}: crops must be square, this one is {width}x{height}")
            return int(width)
        return None


def _missing_flags(path: Path) -> dict[str, Any] | None:
    """``{stream: bool [T]}`` missing flags of an extraction's ``boxes/ID.npz``, or ``None`` without one."""
    import numpy as np

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as boxes:
            return {name[: -len("_missing")]: np.asarray(boxes[name], dtype=bool) for name in boxes.files
                    if name.endswith("_missing")}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable boxes file ({exc})") from None


def _read_jpeg(path: Path, clip: str, stream: str) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"clip {clip!r}, stream {stream!r}: crop {path} is missing") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"clip {clip!r}, stream {stream!r}: crop {path} is not a readable image "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def crop_stream_names(config: Any) -> list[str]:
    """Streams that read crops: those with a crop backbone, when ``[data] crops`` is on."""
    if not config.data.crops:
        return []
    return [name for name, stream in config.model.streams.items() if stream.backbone]


#: One :class:`CropFolders` per corpus (by ``id``; an entry goes when its corpus is collected).
_CORPUS_FOLDERS: dict[tuple[int, Path, str], CropFolders] = {}


def crop_folders(data_cfg: Any, corpus: Any) -> CropFolders | None:
    """The crop folders of ``data_cfg`` (``[data.crop_options] path``, else ``[data] path / crops``);
    ``None`` for a source that renders its crops (the synthetic corpus); the source's own crop reader for
    a source that carries its crops (:attr:`Corpus.crops <mska_core.data.samples.Corpus.crops>`, the
    ``shards`` source) unless ``[data.crop_options] path`` is set. Every call for one corpus
    returns the same :class:`CropFolders`, so its crops are looked up once however many times a run
    asks (crop sizes, the crop plan, each split's dataset)."""
    if corpus.render_crops is not None:
        return None
    options = data_cfg.crop_options
    if corpus.crops is not None and not options.path:
        return corpus.crops  # the source carries its crops (the shards source)
    if options.path:
        root = Path(options.path)
        where = "data.crop_options.path"
    elif data_cfg.path:
        root = Path(data_cfg.path) / "crops"
        where = "data.path"
    else:
        raise DataError("data.crop_options.path: the crop streams read crops from disk; set [data.crop_options] "
                        "path to mska extract's OUT/crops folder")
    if not root.is_dir():
        raise DataError(f"{where}: no crop folder {str(root)!r} (mska extract writes OUT/crops/STREAM/ID.crops); "
                        "set [data.crop_options] path to it, or [data] crops = false")
    key = (id(corpus), root, options.missing)
    folders = _CORPUS_FOLDERS.get(key)
    if folders is None:
        folders = _CORPUS_FOLDERS[key] = CropFolders(root, options.missing)
        weakref.finalize(corpus, _CORPUS_FOLDERS.pop, key, None)
    return folders


def data_crop_sizes(config: Any, corpus: Any) -> dict[str, int]:
    """``{stream: side}`` of the crops the data provides for each crop stream: the synthetic corpus's
    ``crop_size`` (it renders at any size), else the size of the crops on disk."""
    streams = crop_stream_names(config)
    folders = crop_folders(config.data, corpus) if streams else None
    sizes = {}
    for stream in streams:
        if folders is None:
            sizes[stream] = config.data.synthetic.crop_size
            continue
        size = folders.image_size(list(corpus.train) + list(corpus.dev) + list(corpus.test), stream)
        if size is not None:
            sizes[stream] = size
    return sizes


def resolve_crop_sizes(config: Any, corpus: Any) -> Any:
    """``config`` with ``img_size`` set, for every crop stream that leaves it unset, to the size of the
    crops the data provides, so the crop backbones are built at that size (a ViT built at one size and
    fed another gives different features). Streams with an ``img_size`` keep it."""
    sizes = data_crop_sizes(config, corpus)
    streams = dict(config.model.streams)
    changed = False
    for name, size in sizes.items():
        if streams[name].img_size is None:
            streams[name] = attrs.evolve(streams[name], img_size=size)
            changed = True
    if not changed:
        return config
    return attrs.evolve(config, model=attrs.evolve(config.model, streams=streams))


@attrs.frozen
class CropPlan:
    """What a :class:`~mska_core.data.datasets.ClipDataset` needs to give its clips crops.

    - ``specs``: the :class:`~mska_core.records.StreamSpec` of the streams that read crops;
    - ``sizes``: ``{stream: side}`` the stream's backbone takes (crops of another size are resized to it);
    - ``folders``: where crops are read from (``None``: the source renders them);
    - ``options``: ``[data.crop_options]`` (the spatial augmentation of training crops).
    """

    specs: tuple[Any, ...] = attrs.field(converter=tuple)
    sizes: dict[str, int]
    folders: CropFolders | None
    options: Any


def crop_plan(config: Any, corpus: Any, encoder: Any, registry: Any) -> CropPlan | None:
    """The crop plan of a run: ``None`` when no stream reads crops.

    Each stream's crops are given at the size its built backbone takes
    (:func:`mska_core.encoder.crop.backbone_image_size`). Crops on disk of another size are resized
    to it, with a notice on stderr (never silently): set ``model.streams.<name>.img_size`` to the
    crops' size, or leave it unset, to avoid the resampling.
    """
    from mska_core.encoder.crop import backbone_image_size

    streams = crop_stream_names(config)
    if not streams:
        return None
    folders = crop_folders(config.data, corpus)
    data_sizes = data_crop_sizes(config, corpus)
    sizes = {}
    for name in streams:
        branch = encoder.branches[name] if name in encoder.branches else None
        built = backbone_image_size(branch.crop.backbone) if branch is not None and branch.crop is not None else None
        size = built or data_sizes.get(name) or config.data.synthetic.crop_size
        if folders is not None and name in data_sizes and data_sizes[name] != size:
            log.warning("notice: stream %r: the crops on disk are %d px but its backbone was built for %d px "
                        "(model.streams.%s.img_size); crops are resized to %d px. Leave img_size unset to build "
                        "the backbone at the crops' size.", name, data_sizes[name], size, name, size)
        sizes[name] = size
    specs = [registry.streams.get(name) for name in streams]
    return CropPlan(specs, sizes, folders, config.data.crop_options)


def spatial_augment(crops: Any, options: Any, generator: Any) -> Any:
    """A random resized crop (area in ``options.scale``) and a colour jitter (``color_jitter``,
    ``hue``) of a clip's crops ``uint8 [T, 3, S, S]``: one draw per clip, the same for every frame,
    seeded from ``generator``; the crops unchanged when both are off."""
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = []
    size = int(crops.shape[-1])
    if tuple(options.scale) != (1.0, 1.0):
        steps.append(v2.RandomResizedCrop(size, scale=tuple(options.scale), ratio=(3 / 4, 4 / 3), antialias=True))
    if options.color_jitter > 0 or options.hue > 0:
        strength = options.color_jitter
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=options.hue))
    if not steps:
        return crops
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return v2.Compose(steps)(crops)


def resize_crops(crops: Any, size: int) -> Any:
    """``crops`` ``[T, 3, S, S]`` resized to ``size`` (antialiased bilinear), unchanged at that size."""
    if crops.shape[-1] == size:
        return crops
    from torchvision.transforms.v2 import functional

    return functional.resize(crops, [size, size], antialias=True)

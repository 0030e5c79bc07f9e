"""From a ``[data]`` table to splits, and from splits to a torch dataset of prepared clips.

- :func:`load_corpus` reads the three splits of the configured source (a registered data source:
  the synthetic corpus, MSKA pickles, our directory format, ``.pose`` files, or a plugin's) and
  validates every clip.
- :class:`ClipDataset` prepares one clip: temporal augmentation (training split only), the gloss
  ids from the run's vocabulary (the text decoder's tokenizer turns the text into ids when
  batching), and the crops of the frames the augmentation picked when the
  model reads crops (read from disk in ``__getitem__``, see :mod:`mska_core.data.crop_files`, or
  rendered by the synthetic source). Every random draw comes from a generator seeded by (run seed,
  epoch, sample index), so an interrupted run that resumes prepares exactly the clips it would have
  prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from torch.utils.data import Dataset

from mska_core.data.samples import Corpus, Sample
from mska_core.errors import DataError

if TYPE_CHECKING:
    from mska_core.data.crop_files import CropPlan
    from mska_core.records import StreamSpec


def load_corpus(data_cfg: Any, *, layout: str = "coco_wholebody", num_joints: int | None = None,
                registry: Any) -> Corpus:
    """The train, dev and test splits of ``data_cfg`` (a :class:`~mska_core.config.DataConfig`),
    validated.

    ``data_cfg.source`` names a registered :class:`~mska_core.records.DataSource` (an unknown name
    lists the registered ones); its ``open`` reads the splits in ``layout`` with ``data_cfg.options``
    checked against the keys the source declares and completed with their defaults, and every clip is then
    checked as :mod:`mska_core.data.validate` describes, under ``data_cfg.invalid``. ``num_joints``
    defaults to the layout's. Sources and layouts are looked up in ``registry``.
    """
    from mska_core.data.validate import validate_corpus
    from mska_core.errors import RegistryError

    try:
        source = registry.data_sources.get(data_cfg.source)
    except RegistryError as exc:
        raise DataError(f"data.source: {exc}") from None
    try:
        layout_record = registry.layouts.get(layout)
    except RegistryError as exc:
        raise DataError(f"model.layout: {exc}") from None
    from mska_core.config.checks import source_options

    corpus = source.open(attrs.evolve(data_cfg, options=source_options(source, data_cfg.options)), layout_record)
    if not isinstance(corpus, Corpus):
        raise DataError(f"data source {source.name!r} ({source.provider}) returned a "
                        f"{type(corpus).__name__}, not a Corpus")
    return validate_corpus(corpus, num_joints=num_joints or layout_record.num_joints, policy=data_cfg.invalid,
                           margin=data_cfg.frame_margin)


@attrs.frozen
class ClipItem:
    """One prepared clip, before batching."""

    index: int
    name: str
    keypoints: Any  # [T, J, 3]
    gloss: str
    text: str
    gloss_ids: list[int]
    crops: dict[str, Any] | None  # {stream: uint8 [T, 3, S, S]}
    missing_crops: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)  # streams masked for this clip
    crop_found: dict[str, Any] | None = None  # {stream: bool [T]}: false where the part was not found (masked)


class ClipDataset(Dataset):
    """A split as a map-style torch dataset of :class:`ClipItem`.

    ``train`` turns on augmentation; :meth:`set_epoch` changes the draws from one epoch to the next.

    Crops come from ``crops`` (a :class:`~mska_core.data.crop_files.CropPlan`): read from the plan's
    crop folders in ``__getitem__`` for the frames the temporal augmentation picked, or rendered by the
    source (``render_crops``, the synthetic corpus's renderer, which draws each stream the crops its crop
    region describes in ``layout``); resized to the size each stream's backbone takes; and augmented
    in space when training (``[data.crop_options]``). ``crop_streams`` and ``crop_size`` say the same
    for rendered crops without a plan.
    """

    def __init__(self, samples: Sequence[Sample], vocabularies: Any, augment_cfg: Any, *, train: bool,
                 seed: int = 0, crop_streams: Sequence[StreamSpec] = (), crop_size: int = 56,
                 layout: str = "coco_wholebody", render_crops: Callable[..., Any] | None = None,
                 crops: CropPlan | None = None) -> None:
        if crops is not None:
            crop_streams = crops.specs
        self.folders = crops.folders if crops is not None else None
        if crop_streams and render_crops is None and self.folders is None:
            names = ", ".join(spec.name for spec in crop_streams)
            raise DataError(
                f"data.crops: streams {names} read crops, but this data source renders none and no crop "
                "folder was given (see [data.crop_options] path); set [data] crops = false or give the crops "
                "mska extract writes"
            )
        self.samples = list(samples)
        self.vocabularies = vocabularies
        self.augment_cfg = augment_cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.crop_streams = tuple(crop_streams)
        self.crop_size = crop_size
        self.sizes = {spec.name: (crops.sizes.get(spec.name, crop_size) if crops is not None else crop_size)
                      for spec in self.crop_streams}
        self.crop_options = crops.options if crops is not None else None
        self.layout = layout
        self.render_crops = render_crops if self.folders is None else None
        self._crops: dict[int, dict[str, Any]] = {}
        self.missing: dict[int, frozenset[str]] = {}
        if self.folders is not None and self.crop_streams:
            self.missing = self.folders.scan(self.samples, [spec.name for spec in self.crop_streams])

    def clip_crops(self, index: int) -> dict[str, Any]:
        """Rendered crops of every frame of clip ``index`` (from its unrotated points), kept after the
        first use: an epoch then only picks frames from them (the synthetic source only)."""
        cached = self._crops.get(index)
        if cached is None:
            cached = {}
            for size in sorted(set(self.sizes.values())):
                specs = [spec for spec in self.crop_streams if self.sizes[spec.name] == size]
                cached.update(self.render_crops(self.samples[index].keypoints, specs, size,  # type: ignore[misc]
                                                self.layout))
            self._crops[index] = cached
        return cached

    def read_crops(self, index: int, frames: Any, generator: Any) -> tuple[dict[str, Any], frozenset[str]]:
        """The crops of clip ``index`` at ``frames`` (the keypoints' frame indices), by stream, and the
        streams masked for it. (:meth:`found_frames` says which of those crops show a found part.)"""
        import torch

        from mska_core.data.crop_files import resize_crops, spatial_augment

        sample = self.samples[index]
        missing = self.missing.get(index, frozenset())
        crops = {}
        if self.folders is None:
            crops = {stream: images[frames] for stream, images in self.clip_crops(index).items()}
        for spec in self.crop_streams:
            name, size = spec.name, self.sizes[spec.name]
            if self.folders is not None:
                if name in missing:
                    crops[name] = torch.zeros(len(frames), 3, size, size, dtype=torch.uint8)
                    continue
                crops[name] = resize_crops(self.folders.read(name, sample.name, frames.tolist()), size)
            if self.train and self.crop_options is not None and name in crops:
                crops[name] = spatial_augment(crops[name], self.crop_options, generator)
        return crops, missing

    def found_frames(self, index: int, frames: Any) -> dict[str, Any] | None:
        """``{stream: bool [len(frames)]}``: whether the stream's part was found in each of ``frames`` of
        clip ``index`` (``mska extract``'s missing flags, :meth:`~mska_core.data.crop_files.CropFolders.found`);
        ``None`` when every crop shows a found part (rendered crops, crops without flags)."""
        if self.folders is None:
            return None
        found = {}
        for spec in self.crop_streams:
            flags = self.folders.found(spec.name, self.samples[index].name, frames.tolist())
            if flags is not None and not bool(flags.all()):
                found[spec.name] = flags
        return found or None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> ClipItem:
        import torch

        from mska_core.data.augment import augment
        from mska_core.data.vocab import gloss_tokens

        sample = self.samples[index]
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**63)
        )
        keypoints, frames = augment(sample.keypoints, self.augment_cfg, generator, train=self.train)
        crops, missing, found = None, frozenset(), None
        if self.crop_streams:
            crops, missing = self.read_crops(index, frames, generator)
            found = self.found_frames(index, frames)
        return ClipItem(
            index=index,
            name=sample.name,
            keypoints=keypoints,
            gloss=sample.gloss,
            text=sample.text,
            gloss_ids=self.vocabularies.gloss.encode(gloss_tokens(sample.gloss)),
            crops=crops,
            missing_crops=missing,
            crop_found=found,
        )

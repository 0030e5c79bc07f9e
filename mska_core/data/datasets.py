"""From a ``[data]`` table to splits, and from splits to a torch dataset of prepared clips.

- :func:`load_corpus` reads the three splits of the configured source (the synthetic corpus, MSKA
  pickles, or our directory format).
- :class:`ClipDataset` prepares one clip: temporal augmentation (training split only), the gloss and
  text ids from the run's vocabularies, and rendered crops when the model reads crops. Every random
  draw comes from a generator seeded by (run seed, epoch, sample index), so an interrupted run that
  resumes prepares exactly the clips it would have prepared.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from torch.utils.data import Dataset

from mska_core.data.samples import SPLITS, Corpus, Sample
from mska_core.errors import DataError

#: Split file names of an MSKA data folder when ``[data] train/dev/test`` are not set.
PICKLE_NAMES = {"train": "labels.train", "dev": "labels.dev", "test": "labels.test"}


def load_corpus(data_cfg: Any, *, layout: str = "coco_wholebody", num_joints: int | None = None) -> Corpus:
    """The train, dev and test splits of ``data_cfg`` (a :class:`~mska_core.config.DataConfig`)."""
    if data_cfg.source == "synthetic":
        from mska_core.synthetic.corpus import make_corpus

        if layout != "coco_wholebody":
            raise DataError(
                f"the synthetic corpus is in layout 'coco_wholebody', but model.layout is {layout!r}; "
                "set model.layout = \"coco_wholebody\" or give [data] source/path"
            )
        return make_corpus(data_cfg.synthetic)
    if not data_cfg.path:
        raise DataError(f"data.path: source {data_cfg.source!r} needs the folder that holds its splits")
    root = Path(data_cfg.path)
    if not root.is_dir():
        raise DataError(f"data.path: {str(root)!r} is not a folder")
    splits: dict[str, list[Sample]] = {}
    for split in SPLITS:
        name = getattr(data_cfg, split)
        if data_cfg.source == "mska-pickle":
            from mska_core.data.pickles import load_split

            splits[split] = load_split(root / (name or PICKLE_NAMES[split]), width=data_cfg.frame_width,
                                       height=data_cfg.frame_height, num_joints=num_joints or 133)
        else:
            from mska_core.data.directory import read_split

            splits[split] = read_split(root, split, name, normalize=data_cfg.normalize,
                                       width=data_cfg.frame_width, height=data_cfg.frame_height)
        _check_joints(splits[split], num_joints, f"{root} ({split})")
    return Corpus(**splits, source=f"{data_cfg.source}: {root}", layout=layout)


def _check_joints(samples: Sequence[Sample], num_joints: int | None, where: str) -> None:
    for sample in samples:
        if num_joints is not None and sample.keypoints.shape[1] != num_joints:
            raise DataError(
                f"{where}: clip {sample.name!r} has {sample.keypoints.shape[1]} joints, the layout has "
                f"{num_joints}; set model.layout to the layout of the data"
            )


@attrs.frozen
class ClipItem:
    """One prepared clip, before batching."""

    index: int
    name: str
    keypoints: Any  # [T, J, 3]
    gloss: str
    text: str
    gloss_ids: list[int]
    text_ids: list[int]
    crops: dict[str, Any] | None  # {stream: uint8 [T, 3, S, S]}


class ClipDataset(Dataset):
    """A split as a map-style torch dataset of :class:`ClipItem`.

    ``train`` turns on augmentation; :meth:`set_epoch` changes the draws from one epoch to the next.
    """

    def __init__(self, samples: Sequence[Sample], vocabularies: Any, augment_cfg: Any, *, train: bool,
                 seed: int = 0, crop_streams: Sequence[str] = (), crop_size: int = 56) -> None:
        self.samples = list(samples)
        self.vocabularies = vocabularies
        self.augment_cfg = augment_cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.crop_streams = tuple(crop_streams)
        self.crop_size = crop_size
        self._crops: dict[int, dict[str, Any]] = {}

    def clip_crops(self, index: int) -> dict[str, Any]:
        """Rendered crops of every frame of clip ``index`` (from its unrotated points), kept after the
        first use: an epoch then only picks frames from them."""
        cached = self._crops.get(index)
        if cached is None:
            from mska_core.synthetic.corpus import clip_crops

            cached = clip_crops(self.samples[index].keypoints, self.crop_streams, self.crop_size)
            self._crops[index] = cached
        return cached

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> ClipItem:
        import torch

        from mska_core.data.augment import augment
        from mska_core.data.vocab import gloss_tokens, text_tokens

        sample = self.samples[index]
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**63)
        )
        keypoints, frames = augment(sample.keypoints, self.augment_cfg, generator, train=self.train)
        crops = None
        if self.crop_streams:
            crops = {stream: images[frames] for stream, images in self.clip_crops(index).items()}
        return ClipItem(
            index=index,
            name=sample.name,
            keypoints=keypoints,
            gloss=sample.gloss,
            text=sample.text,
            gloss_ids=self.vocabularies.gloss.encode(gloss_tokens(sample.gloss)),
            text_ids=self.vocabularies.text.encode(text_tokens(sample.text)),
            crops=crops,
        )

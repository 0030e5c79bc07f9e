"""The records data sources produce: one :class:`Sample` per clip, three splits per corpus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

SPLITS = ("train", "dev", "test")


@attrs.frozen
class Sample:
    """One annotated clip.

    ``keypoints`` is a float tensor ``[T, J, 3]`` (x, y, confidence) with x and y in [-1, 1], y up,
    in the layout of the corpus (``coco_wholebody``: J = 133). ``gloss`` is the white-space separated
    gloss sequence, ``text`` the translation. ``path`` is the file the clip was read from (for
    messages; empty for generated clips).
    """

    name: str
    keypoints: Any = attrs.field(repr=False)  # torch.Tensor [T, J, 3]
    gloss: str
    text: str
    signer: int = 0
    path: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


@attrs.frozen
class Corpus:
    """The three splits of a data source, and where they came from (for messages and the run record).

    - ``train``, ``dev``, ``test``: the splits' :class:`Sample` clips (any iterable; kept as tuples).
    - ``source``: where the clips came from, for messages (``"directory: data/phoenix"``).
    - ``layout``: the keypoint layout of every clip's keypoints (the one ``open`` received).
    - ``render_crops``: leave it ``None``; the synthetic source draws its crops with it.
    """

    train: tuple[Sample, ...] = attrs.field(converter=tuple)
    dev: tuple[Sample, ...] = attrs.field(converter=tuple)
    test: tuple[Sample, ...] = attrs.field(converter=tuple)
    source: str = ""
    layout: str = "coco_wholebody"
    #: How the source draws crops for a clip: ``(keypoints, stream specs, size, layout) -> {stream: uint8
    #: [T, 3, size, size]}``; only the synthetic source has one (real crops come from disk).
    render_crops: Callable[..., Any] | None = attrs.field(default=None, eq=False, repr=False)
    #: Where the source's own crops are read from, when it carries them (the ``shards`` source: a
    #: :class:`~mska_core.data.shard_index.ShardCrops`); ``None``: crops are on disk under the crop folder.
    crops: Any = attrs.field(default=None, eq=False, repr=False)

    def split(self, name: str) -> tuple[Sample, ...]:
        from mska_core.errors import DataError

        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

"""Image crops for DINO pretraining: crop folders and multi-crop augmentation.

- :class:`CropFolder` reads png/jpg files and the frames of packed crop files (``.crops``, what
  ``mska extract`` writes: :mod:`mska_core.data.crop_pack`) found recursively under one or more
  folders with Pillow. A file that is not an image, or that fails to decode, is skipped: the dataset hands out the next
  readable image instead and reports the skipped path, so a run never stops on a bad file and can
  count them at the end. A crop of ``mska extract``'s output (``OUT/crops/STREAM/ID.crops`` or
  ``OUT/crops/STREAM/ID/NNNNNN.jpg``) whose frame ``OUT/boxes/ID.npz`` marks missing (the stream's
  part was not found there: the crop is a held one) is left out, and counted per stream.
- :class:`MultiCrop` turns one image into DINO's views on tensors: two global and N local random
  resized crops with flips, colour jitter, grayscale, Gaussian blur and solarisation.
- :class:`MultiCropDataset` ties a source to the augmentation; the randomness of sample ``i`` in epoch
  ``e`` comes from ``(seed, e, i)`` only, so the views do not depend on worker count or on where a run
  was resumed.

Everything here works on torch tensors; torchvision is not needed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from mska_core.errors import DataError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: ImageNet statistics: DINO and DINOv2 backbones expect inputs normalised with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- sources -------------------------------------------------------------------------------------


@attrs.frozen
class PackedFrame:
    """Frame ``index`` of a packed crop file: one crop, as an image file would be."""

    path: Path
    index: int

    @property
    def name(self) -> str:
        return f"{self.path.name}#{self.index}"

    def __str__(self) -> str:
        return f"{self.path}#{self.index}"


def scan_image_files(folders: Sequence[str | Path]) -> tuple[list[Path | PackedFrame], list[Path]]:
    """The crops under ``folders`` (recursive, sorted): png/jpg files, and every frame of each packed
    crop file; and the other files found there (a packed file without its index among them).

    A missing folder is a :class:`~mska_core.errors.DataError`.
    """
    from mska_core.data.contract import PACKED_SUFFIX
    from mska_core.data.crop_pack import pack_info

    images: list[Path | PackedFrame] = []
    others: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise DataError(f"crop folder {str(root)!r} {what}; give --train-dir a folder of png/jpg crops")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
                continue
            if path.suffix == PACKED_SUFFIX:
                try:
                    count, _ = pack_info(path)
                except DataError:
                    count = -1
                if count >= 0:
                    images.extend(PackedFrame(path, index) for index in range(count))
                    continue
            others.append(path)
    return images, others


def read_image(path: str | Path | PackedFrame) -> torch.Tensor:
    """Decode an image file (or a frame of a packed crop file) with Pillow into a uint8 RGB tensor
    ``[3, H, W]``.

    Raises :class:`~mska_core.errors.DataError` for a file Pillow cannot decode.
    """
    import io

    import numpy as np
    import torch
    from PIL import Image

    try:
        if isinstance(path, PackedFrame):
            from mska_core.data.crop_pack import CropPack

            source: Any = io.BytesIO(CropPack(path.path).jpeg(path.index))
        else:
            source = path
        with Image.open(source) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{path}: empty image")
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _extracted_crop(item: Path | PackedFrame) -> tuple[Path, str, int] | None:
    """``(boxes file, stream, frame)`` of a crop that ``mska extract`` wrote (``OUT/crops/STREAM/ID.crops``
    frame ``i``, or ``OUT/crops/STREAM/ID/NNNNNN.jpg``), or ``None`` for any other image."""
    from mska_core.data.contract import PACKED_SUFFIX, ExtractedLayout, crop_frame_index

    if isinstance(item, PackedFrame):
        stream_folder, clip, index = item.path.parent, item.path.name[: -len(PACKED_SUFFIX)], item.index
    elif (frame := crop_frame_index(item.name)) is not None:
        stream_folder, clip, index = item.parent.parent, item.parent.name, frame
    else:
        return None
    out = ExtractedLayout(stream_folder.parent.parent)
    if stream_folder.parent != out.crops_root:
        return None
    return out.boxes(clip), stream_folder.name, index


def found_crops(images: Sequence[Path | PackedFrame]) -> tuple[list[Path | PackedFrame], dict[str, list[int]]]:
    """The crops of ``images`` whose part was found, and ``{stream: [used, skipped]}`` for the crops of
    ``mska extract`` outputs (those whose frame ``boxes/ID.npz`` marks missing are skipped)."""
    from mska_core.data.crop_files import _missing_flags

    flags: dict[Path, dict[str, Any] | None] = {}
    kept: list[Path | PackedFrame] = []
    counts: dict[str, list[int]] = {}
    for item in images:
        place = _extracted_crop(item)
        if place is not None:
            boxes, stream, index = place
            if boxes not in flags:
                flags[boxes] = _missing_flags(boxes)
            missing = (flags[boxes] or {}).get(stream)
            if missing is not None:
                count = counts.setdefault(stream, [0, 0])
                if index < len(missing) and missing[index]:
                    count[1] += 1
                    continue
                count[0] += 1
        kept.append(item)
    return kept, counts


class CropFolder:
    """The png/jpg crops under one or more folders, without the held crops of frames where the
    stream's part was not found (:func:`found_crops`).

    ``load(i)`` returns image ``i`` and the paths it had to skip to find a readable one (the next
    files in order, wrapping around). Files that are not png/jpg are listed in ``ignored``;
    ``not_found`` gives ``{stream: [used, skipped]}`` for crops of ``mska extract`` outputs.
    """

    def __init__(self, folders: Sequence[str | Path]) -> None:
        self.folders = [Path(f) for f in folders]
        files, self.ignored = scan_image_files(self.folders)
        self.files, self.not_found = found_crops(files)
        where = ", ".join(str(f) for f in self.folders)
        if not self.files and files:
            raise DataError(f"all {len(files)} crops under {where} are of frames where their part was not found "
                            f"({self.counts()}); nothing to pretrain on")
        if not self.files:
            raise DataError(
                f"no png/jpg crops under {where} ({len(self.ignored)} other files); "
                "point --train-dir at the folders of face or hand crops"
            )

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> str:
        """``48 hand_left crops (48 skipped: hand_left not found)`` per stream of ``mska extract`` crops."""
        return "; ".join(f"{used} {stream} crops ({skipped} skipped: {stream} not found)"
                         for stream, (used, skipped) in sorted(self.not_found.items()))

    def describe(self) -> str:
        where = ", ".join(str(f) for f in self.folders)
        counts = self.counts()
        return f"{len(self.files)} image files under {where}" + (f": {counts}" if counts else "")

    def load(self, index: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        skipped: list[str] = []
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            try:
                return read_image(path), tuple(skipped)
            except DataError:
                skipped.append(str(path))
        raise DataError(
            f"none of the {len(self.files)} image files under "
            f"{', '.join(str(f) for f in self.folders)} could be decoded; check the crop folders"
        )


# --- multi-crop augmentation ---------------------------------------------------------------------


@attrs.frozen
class ViewRecipe:
    """How one kind of view is made: crop scale range and the probabilities of each photometric step."""

    size: int
    scale: tuple[float, float]
    blur: float
    solarize: float


@attrs.frozen
class MultiCrop:
    """DINO's multi-crop augmentation on tensors.

    ``__call__(image, generator)`` takes a uint8 ``[3, H, W]`` image and returns ``2 + local_crops``
    normalised float views: two ``global_size`` views (the first always blurred, the second rarely
    blurred and sometimes solarised) and ``local_crops`` views of ``local_size``.

    Written here rather than composed from ``torchvision.transforms.v2`` on measurement (``python -m
    bench.kept_libraries``, figures in bench/RESULTS.md): the same recipe in v2 draws the same
    distribution of views but takes 1.87x as long per batch, and it draws from torch's global RNG where
    this takes a per-sample generator (views independent of worker count and resumption).
    """

    global_size: int
    local_size: int
    local_crops: int
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # at 224 px; scaled with the view size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def recipes(self) -> list[ViewRecipe]:
        first = ViewRecipe(self.global_size, self.global_scale, blur=1.0, solarize=0.0)
        second = ViewRecipe(self.global_size, self.global_scale, blur=0.1, solarize=0.2)
        local = ViewRecipe(self.local_size, self.local_scale, blur=0.5, solarize=0.0)
        return [first, second] + [local] * self.local_crops

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        source = image.float().div_(255.0)
        return [self.view(source, recipe, generator) for recipe in self.recipes()]

    def view(self, image: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator) -> torch.Tensor:
        """One view of a float ``[3, H, W]`` image in ``[0, 1]``."""
        import torch

        def chance(p: float) -> bool:
            return p > 0 and float(torch.rand((), generator=generator)) < p

        x = random_resized_crop(image, recipe.size, recipe.scale, self.ratio, generator)
        if chance(self.flip):
            x = x.flip(-1)
        if chance(self.jitter):
            x = color_jitter(x, self.brightness, self.contrast, self.saturation, self.hue, generator)
        if chance(self.grayscale):
            x = to_grayscale(x).expand(3, -1, -1)
        if chance(recipe.blur):
            low, high = self.blur_sigma
            sigma = (low + (high - low) * float(torch.rand((), generator=generator))) * recipe.size / 224
            x = gaussian_blur(x, sigma)
        if chance(recipe.solarize):
            x = torch.where(x >= 0.5, 1.0 - x, x)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    import torch

    return low + (high - low) * float(torch.rand((), generator=generator))


def random_resized_crop(image: torch.Tensor, size: int, scale: tuple[float, float],
                        ratio: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """A random area (``scale`` of the image, aspect ratio in ``ratio``) resized to ``size``×``size``."""
    import torch.nn.functional as F

    _, height, width = image.shape
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(*scale, generator)
        aspect = math.exp(_uniform(*log_ratio, generator))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(_uniform(0, height - h + 1, generator))
            left = int(_uniform(0, width - w + 1, generator))
            break
    else:  # a centre crop, as large as the ratio range allows
        h, w = height, width
        top, left = 0, 0
    patch = image[:, top:top + h, left:left + w]
    return F.interpolate(patch[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=h > size or w > size)[0].clamp_(0.0, 1.0)


def to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``[1, H, W]`` of an RGB ``[3, H, W]`` image."""
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)


def color_jitter(image: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast, saturation (factors in ``1 ± x``) and hue (a rotation of the
    chroma plane by up to ``hue`` turns), in a random order."""
    import torch

    steps = torch.randperm(4, generator=generator).tolist()
    for step in steps:
        if step == 0 and brightness > 0:
            image = image * _uniform(1 - brightness, 1 + brightness, generator)
        elif step == 1 and contrast > 0:
            mean = to_grayscale(image).mean()
            image = (image - mean) * _uniform(1 - contrast, 1 + contrast, generator) + mean
        elif step == 2 and saturation > 0:
            gray = to_grayscale(image)
            image = (image - gray) * _uniform(1 - saturation, 1 + saturation, generator) + gray
        elif step == 3 and hue > 0:
            image = rotate_hue(image, _uniform(-hue, hue, generator))
        image = image.clamp(0.0, 1.0)
    return image


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@functools.cache
def _yiq_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    return to_yiq, torch.linalg.inv(to_yiq)


def rotate_hue(image: torch.Tensor, turns: float) -> torch.Tensor:
    """Rotate the hue of an RGB ``[3, H, W]`` image by ``turns`` (a fraction of a full turn) in YIQ."""
    import torch

    to_yiq, from_yiq = _yiq_matrices()
    angle = 2 * math.pi * turns
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor(((1.0, 0.0, 0.0), (0.0, c, -s), (0.0, s, c)), dtype=torch.float64)
    matrix = (from_yiq @ rotation @ to_yiq).to(image.dtype)
    return torch.einsum("ij,jhw->ihw", matrix, image)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``[C, H, W]`` image with reflect padding.

    Each axis is blurred by a banded matrix (rows: output pixels, columns: input pixels, the kernel
    folded back at the borders), which is much faster on CPU than a depthwise convolution.
    """
    import torch

    _, height, width = image.shape
    radius = max(1, min(int(math.ceil(3 * sigma)), min(height, width) - 1))
    offsets = torch.arange(-radius, radius + 1)
    kernel = torch.exp(-0.5 * (offsets.to(image.dtype) / max(sigma, 1e-3)) ** 2)
    kernel = kernel / kernel.sum()

    def blur_matrix(n: int) -> torch.Tensor:
        rows = torch.arange(n).unsqueeze(1).expand(n, len(offsets))
        cols = rows + offsets
        cols = torch.where(cols < 0, -cols, cols)
        cols = torch.where(cols > n - 1, 2 * (n - 1) - cols, cols)
        matrix = torch.zeros(n * n, dtype=image.dtype)
        matrix.index_add_(0, (rows * n + cols).reshape(-1), kernel.expand(n, -1).reshape(-1))
        return matrix.view(n, n)

    return blur_matrix(height) @ image @ blur_matrix(width).T


# --- the dataset ---------------------------------------------------------------------------------


def sample_seed(*parts: int) -> int:
    """A 63-bit seed derived from non-negative integers (e.g. run seed, epoch, sample index)."""
    import numpy as np

    words = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class MultiCropDataset:
    """Multi-crop views of a source (:class:`CropFolder` or :class:`mska_core.synthetic.crops.SyntheticCrops`).

    Item ``i`` is ``(views, skipped)``: the list of view tensors and the paths skipped to find a
    readable image. Call :meth:`set_epoch` before each epoch.

    The augmentation of one image runs on a single intra-op thread: its tensors are small, and
    splitting each operation across threads costs more than it saves (on two busy cores, a crop took
    over ten times longer with two threads than with one). The thread count is restored afterwards.
    """

    def __init__(self, source: Any, augment: MultiCrop, seed: int) -> None:
        self.source, self.augment, self.seed = source, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], tuple[str, ...]]:
        import torch

        image, skipped = self.source.load(index)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.augment(image, generator), skipped
        finally:
            torch.set_num_threads(threads)


class EpochShuffle:
    """A sampler whose order is a permutation drawn from ``(seed, epoch)`` (see ``set_epoch``)."""

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.length, generator=generator).tolist())


def collate_views(batch: Sequence[tuple[list[torch.Tensor], tuple[str, ...]]]) -> tuple[list[torch.Tensor], list[str]]:
    """Stack a batch of multi-crop items into one ``[B, 3, S, S]`` tensor per view, plus the skipped paths."""
    import torch

    views = [torch.stack([item[0][v] for item in batch]) for v in range(len(batch[0][0]))]
    skipped = [path for item in batch for path in item[1]]
    return views, skipped

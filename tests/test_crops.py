"""Crop folders (recursive, corrupt files skipped and counted) and multi-crop augmentation on tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mska_core.data.crops import (
    CropFolder,
    EpochShuffle,
    MultiCrop,
    MultiCropDataset,
    collate_views,
    gaussian_blur,
    random_resized_crop,
    read_image,
    rotate_hue,
)
from mska_core.errors import DataError
from mska_core.synthetic.crops import SyntheticCrops
from mska_core.synthetic.render import write_synthetic_crops


def _folder_with_bad_files(root):
    good = write_synthetic_crops(root / "a", "face", 3, 20, seed=0)
    write_synthetic_crops(root / "b" / "deeper", "hand", 2, 20, seed=0)
    (root / "b" / "broken.png").write_bytes(good[0].read_bytes()[:60])  # truncated PNG
    (root / "b" / "fake.jpg").write_text("not an image")
    (root / "notes.txt").write_text("ignored")
    return root


def test_crop_folder_finds_png_and_jpg_recursively_and_ignores_other_files(tmp_path) -> None:
    folder = CropFolder([_folder_with_bad_files(tmp_path)])
    assert len(folder) == 7  # 5 good + 2 bad image files
    assert [p.name for p in folder.ignored] == ["notes.txt"]


def test_corrupt_images_are_skipped_with_the_next_readable_one_served(tmp_path) -> None:
    folder = CropFolder([_folder_with_bad_files(tmp_path)])
    bad = [i for i, p in enumerate(folder.files) if p.name in ("broken.png", "fake.jpg")]
    skipped: set[str] = set()
    for index in range(len(folder)):
        image, skipped_here = folder.load(index)
        assert image.shape == (3, 20, 20) and image.dtype == torch.uint8
        skipped.update(skipped_here)
    assert sorted(skipped) == sorted(str(folder.files[i]) for i in bad)


def test_a_folder_of_only_unreadable_files_is_a_data_error(tmp_path) -> None:
    (tmp_path / "x.png").write_text("nope")
    with pytest.raises(DataError, match="could be decoded"):
        CropFolder([tmp_path]).load(0)


def test_missing_or_empty_folders_are_data_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        CropFolder([tmp_path / "missing"])
    with pytest.raises(DataError, match="no png/jpg crops"):
        CropFolder([tmp_path])


def test_read_image_converts_to_rgb(tmp_path) -> None:
    from PIL import Image

    Image.new("L", (5, 4), 128).save(tmp_path / "gray.jpg")
    image = read_image(tmp_path / "gray.jpg")
    assert image.shape == (3, 4, 5)


def test_multicrop_gives_two_global_and_n_local_normalised_views() -> None:
    augment = MultiCrop(global_size=32, local_size=16, local_crops=3)
    image = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    views = augment(image, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)


def test_views_depend_only_on_seed_epoch_and_index() -> None:
    dataset = MultiCropDataset(SyntheticCrops("face", 4, 24, seed=0), MultiCrop(24, 12, 2), seed=3)
    first = dataset[1][0]
    assert all(torch.equal(a, b) for a, b in zip(first, dataset[1][0]))
    dataset.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(first, dataset[1][0]))


def test_collate_stacks_each_view_and_gathers_skipped_paths() -> None:
    item = ([torch.zeros(3, 8, 8), torch.zeros(3, 4, 4)], ("bad.png",))
    views, skipped = collate_views([item, item])
    assert [tuple(v.shape) for v in views] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert skipped == ["bad.png", "bad.png"]


def test_epoch_shuffle_is_a_permutation_that_changes_with_the_epoch() -> None:
    sampler = EpochShuffle(10, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and first == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_gaussian_blur_matches_a_reflect_padded_convolution() -> None:
    image = torch.rand(3, 17, 23)
    sigma, radius = 1.3, 4
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    expected = F.pad(image[None], (radius,) * 4, mode="reflect")
    expected = F.conv2d(expected, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    expected = F.conv2d(expected, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]
    torch.testing.assert_close(gaussian_blur(image, sigma), expected, atol=1e-5, rtol=1e-5)


def test_hue_rotation_by_a_full_turn_is_the_identity_and_keeps_gray() -> None:
    image = torch.rand(3, 5, 5)
    torch.testing.assert_close(rotate_hue(image, 1.0), image, atol=1e-5, rtol=1e-5)
    gray = torch.full((3, 2, 2), 0.3)
    torch.testing.assert_close(rotate_hue(gray, 0.25), gray, atol=1e-5, rtol=1e-5)


def test_random_resized_crop_covers_the_requested_area_range() -> None:
    image = torch.arange(100.0).view(1, 10, 10).expand(3, 10, 10) / 100
    generator = torch.Generator().manual_seed(0)
    out = random_resized_crop(image, 6, (1.0, 1.0), (1.0, 1.0), generator)
    assert out.shape == (3, 6, 6)
    expected = F.interpolate(image[None], size=(6, 6), mode="bilinear", align_corners=False, antialias=True)[0]
    torch.testing.assert_close(out, expected)
    assert math.isclose(float(out.mean()), float(image.mean()), abs_tol=0.02)


def test_augmentation_runs_on_one_thread_and_restores_the_thread_count() -> None:
    dataset = MultiCropDataset(SyntheticCrops("hand", 2, 24, seed=0), MultiCrop(24, 12, 1), seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        views, _ = dataset[0]
        assert torch.get_num_threads() == 2 and len(views) == 3
    finally:
        torch.set_num_threads(threads)

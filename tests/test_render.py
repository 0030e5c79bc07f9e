"""Rendering face and hand crops from 2-D points, and the synthetic crop generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mska_core.synthetic.render import (
    FACE_EXPRESSIONS,
    HAND_SHAPES,
    CropStyle,
    label_names,
    render_crop,
    synthetic_crop,
    synthetic_crops,
    synthetic_label,
    synthetic_points,
    write_synthetic_crops,
)


@pytest.mark.parametrize("kind, count", [("face", 68), ("hand", 21), ("face", 5), ("hand", 4)])
def test_render_crop_gives_uint8_image_of_requested_size(kind: str, count: int) -> None:
    points = torch.rand(count, 3) + torch.tensor([0.0, 0.0, 0.5])
    crop = render_crop(points, 40, kind)
    assert crop.shape == (3, 40, 40) and crop.dtype == torch.uint8
    assert crop.float().std() > 0  # something was drawn on the background


def test_render_crop_draws_the_points_so_a_different_pose_gives_a_different_crop() -> None:
    rng = np.random.default_rng(0)
    a, b = synthetic_points("face", rng), synthetic_points("face", rng)
    assert not torch.equal(render_crop(a, 48, "face"), render_crop(b, 48, "face"))


def test_points_with_zero_confidence_leave_only_the_background() -> None:
    points = torch.zeros(21, 3)
    crop = render_crop(points, 32, "hand", style=CropStyle(background=(10, 20, 30), background_end=(10, 20, 30)))
    assert torch.equal(crop, torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32))


def test_hand_streams_with_arm_points_use_the_last_21_points() -> None:
    hand = torch.as_tensor(synthetic_points("hand", np.random.default_rng(1)))
    arm = torch.cat([torch.full((6, 2), 50.0), torch.ones(6, 1)], dim=1)  # far away, must be ignored
    assert torch.equal(render_crop(torch.cat([arm, hand]), 32, "hand"), render_crop(hand, 32, "hand"))


def test_y_up_points_render_as_the_vertical_mirror() -> None:
    points = torch.as_tensor(synthetic_points("face", np.random.default_rng(2)))
    flipped = points.clone()
    flipped[:, 1] = -flipped[:, 1]
    style = CropStyle(background=(0, 0, 0), background_end=(0, 0, 0))
    assert torch.equal(render_crop(flipped, 32, "face", y_up=True, style=style),
                       render_crop(points, 32, "face", style=style))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        render_crop(torch.zeros(3, 3), 16, "body")


def test_synthetic_crops_are_deterministic_per_seed_and_index() -> None:
    first = synthetic_crops("face", 3, 32, seed=7)
    assert first.shape == (3, 3, 32, 32)
    assert torch.equal(first, synthetic_crops("face", 3, 32, seed=7))
    assert torch.equal(first[2], synthetic_crop("face", 2, 32, seed=7))  # independent of count
    assert not torch.equal(first, synthetic_crops("face", 3, 32, seed=8))
    assert not torch.equal(first[0], first[1])


def test_a_mirrored_hand_is_the_same_hand_shape_drawn_the_other_way() -> None:
    right, left = synthetic_crop("hand", 0, 32, 0), synthetic_crop("hand", 0, 32, 0, mirror=True)
    assert not torch.equal(right, left)
    assert synthetic_label("hand", 0, 0) == synthetic_label("hand", 0, 0)
    with pytest.raises(ValueError, match="kind must be one of"):
        synthetic_crop("hand_left", 0, 32, 0)  # a stream name is not a sprite


def test_write_synthetic_crops_writes_png_files(tmp_path) -> None:
    from PIL import Image

    paths = write_synthetic_crops(tmp_path / "face", "face", 2, 24, seed=0)
    assert [p.suffix for p in paths] == [".png", ".png"]
    with Image.open(paths[1]) as image:
        array = np.asarray(image)
    assert np.array_equal(array, synthetic_crop("face", 1, 24, 0).permute(1, 2, 0).numpy())


def test_every_synthetic_crop_has_the_label_of_the_expression_or_hand_shape_that_drew_it() -> None:
    assert label_names("face") == tuple(FACE_EXPRESSIONS) and label_names("hand") == tuple(HAND_SHAPES)
    labels = [synthetic_label("hand", i, 3) for i in range(64)]
    assert set(labels) == set(range(len(HAND_SHAPES)))  # every shape occurs
    assert {synthetic_label("face", i, 3) for i in range(64)} == set(range(len(FACE_EXPRESSIONS)))


def test_a_label_fixes_the_pose_class_and_a_wrong_label_is_refused() -> None:
    fists = [synthetic_points("hand", np.random.default_rng(i), label=label_names("hand").index("fist"))
             for i in range(8)]
    flats = [synthetic_points("hand", np.random.default_rng(i), label=label_names("hand").index("flat"))
             for i in range(8)]

    def spread(points):  # fingertips far from the wrist: an open hand
        return float(np.mean([np.linalg.norm(p[[8, 12, 16, 20], :2] - p[0, :2], axis=1).mean() for p in points]))

    assert spread(flats) > 1.3 * spread(fists)
    with pytest.raises(ValueError, match="label must be in 0..5"):
        synthetic_points("face", np.random.default_rng(0), label=6)

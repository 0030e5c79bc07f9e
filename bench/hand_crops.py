"""How much of a hand crop is hand, and how much of the hand is in the crop, at each crop scale.

A hand crop is the square around the hand's own 21 landmarks (``CropRegion`` of ``hand_left`` and
``hand_right``), its side the landmarks' extent times ``scale`` (and at least ``min_size``). Landmarks
are joint centres, so a scale of 1 cuts fingertips and the palm's edge; a large scale brings in the
face, the torso or the other hand. For each scale this measures, on hand images with a known hand
mask:

- **hand share**: the fraction of the crop's pixels that are hand (higher: less of anything else);
- **coverage**: the fraction of the hand's pixels inside the crop (1: nothing of the hand cut off).

Two sets of images:

- **rendered**: the synthetic corpus's hands (``synthetic_points("hand")`` drawn by ``render_crop``,
  every hand shape and pose the corpus draws, mirrored or not), each on a plain background, so the
  mask is exact;
- **real**: scikit-image's photograph of a real person (``skimage.data.astronaut()``), whose right
  hand (a dark glove) lies at the photograph's bottom edge; its 21 landmarks are placed by eye over
  the glove (the same placement as the test recording, ``tests/real_recording.py``), the mask is the
  glove's dark pixels near them. One hand, landmarks by eye: a check on the rendered figure, not a
  measurement of estimators.

    python -m bench.hand_crops [--hands 200] [--json bench/results/hand_crops.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

SCALES = (1.0, 1.1, 1.2, 1.3, 1.4, 1.6, 1.8, 2.0)


def measure(mask: np.ndarray, points: np.ndarray, scale: float, min_size: float = 0.0) -> tuple[float, float]:
    """``(hand share, coverage)`` of the square crop around ``points`` ([21, 2] pixels) at ``scale``
    in an image whose hand pixels are ``mask`` ([H, W] bool); the crop may reach past the image."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    side = max(float((high - low).max()) * scale, min_size)
    x0, y0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    inside = mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    hand = int(inside.sum())
    return hand / max((x1 - x0) * (y1 - y0), 1), hand / max(int(mask.sum()), 1)


def rendered_hands(count: int, size: int = 160) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` synthetic hands: ``(mask [size, size], landmarks [21, 2])`` each."""
    from mska_core.synthetic.render import CropStyle, render_crop, synthetic_points

    background = (128, 128, 128)
    style = CropStyle(skin=(230, 40, 40), ink=(180, 30, 30), background=background, background_end=background)
    rng = np.random.default_rng(0)
    hands = []
    margin = 0.6  # the rendered canvas spans 2.2 times the landmarks' extent: room for every scale
    for index in range(count):
        points = synthetic_points("hand", rng, mirror=bool(index % 2))
        image = render_crop(points, size, "hand", style=style, margin=margin).permute(1, 2, 0).numpy()
        mask = np.abs(image.astype(int) - np.array(background)).sum(-1) > 30
        xy = points[:, :2]
        low, high = xy.min(axis=0), xy.max(axis=0)
        extent = float((high - low).max())
        pixels = (xy - (low + high) / 2) / (extent * (1 + 2 * margin)) * size + size / 2
        hands.append((mask, pixels))
    return hands


#: The test recording's glove landmarks on the 512-px photograph (tests/real_recording.py).
GLOVE_WRIST = (174.0, 484.0)


def real_hand() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's right hand: the glove's dark pixels near the by-eye landmarks, and those landmarks."""
    from skimage import data

    image = data.astronaut().astype(int)
    wx, wy = GLOVE_WRIST
    points = [(wx, wy)]
    for finger in range(5):
        angle = np.pi * (0.55 + 0.12 * finger)
        for joint in range(1, 5):
            points.append((wx + 11 * joint * np.cos(angle), wy + 7 * joint * np.sin(angle)))
    landmarks = np.asarray(points)
    dark = image.max(axis=-1) < 90  # the glove is near black; the suit is orange, the wrist ring silver
    near = np.zeros_like(dark)
    near[440:512, 90:200] = True
    return dark & near, landmarks


def run(hands: int) -> dict[str, Any]:
    sets = {"rendered": rendered_hands(hands), "real": [real_hand()]}
    rows = []
    for name, items in sets.items():
        for scale in SCALES:
            shares, coverages = zip(*(measure(mask, points, scale) for mask, points in items))
            rows.append({"images": name, "hands": len(items), "scale": scale,
                         "hand_share": float(np.mean(shares)), "coverage_mean": float(np.mean(coverages)),
                         "coverage_p10": float(np.percentile(coverages, 10))})
    return {"machine": platform.platform(), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hands", type=int, default=200, help="rendered hands to measure")
    parser.add_argument("--json", type=Path, default=Path("bench/results/hand_crops.json"))
    args = parser.parse_args(argv)
    result = run(args.hands)
    print(f"{'images':<9} {'scale':>5} {'hand share':>10} {'coverage':>9} {'cov. p10':>9}")
    for row in result["rows"]:
        print(f"{row['images']:<9} {row['scale']:>5.1f} {row['hand_share']:>10.3f} {row['coverage_mean']:>9.3f} "
              f"{row['coverage_p10']:>9.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Rendering face and hand crops from 2-D points, and the synthetic crop generator.

The embedded default needs image crops with no download: the synthetic corpus draws one crop per frame
from the frame's face or hand keypoints, and DINO pretraining without ``--train-dir`` draws faces and
hands with random poses, colours and backgrounds. Both go through :func:`render_crop`.

Point conventions (``points`` is ``[P, 3]``: x, y, confidence; image coordinates, y pointing down
unless ``y_up=True``; any scale, since the crop is framed on the points' bounding box):

- ``kind="face"`` with 68 points reads them in the iBUG-68 order that COCO-WholeBody uses for its face
  (indices 23–90): jaw 0–16, brows 17–26, nose 27–35, eyes 36–47, outer lips 48–59, inner lips 60–67.
- ``kind="hand"`` with 21 points reads the usual hand order (COCO-WholeBody 91–111 and 112–132,
  MediaPipe): wrist 0, then four points per finger from the thumb to the little finger. With more
  than 21 points the last 21 are the hand (the MSKA hand streams put six arm and head points first).
- Any other count is drawn generically: an oval (face) or a thick polyline (hand) with a dot per point.

Points with confidence 0 are ignored; with none left the crop is background only. Everything is
deterministic: a crop depends only on its points and :class:`CropStyle`, and the synthetic generator's
crop ``i`` depends only on ``(kind, seed, i)``. Which sprite a stream gets is its crop region's
``render_as`` (:class:`mska_core.records.CropRegion`): the renderer knows no stream names.

Each synthetic crop is drawn from a class: one of :data:`HAND_SHAPES` (finger curls of a small
hand-shape alphabet) or one of :data:`FACE_EXPRESSIONS` (eye and mouth opening, brows), with the pose,
proportions, colours and background varying around it. :func:`synthetic_label` gives that class without
drawing, so held-out synthetic crops can measure how well an encoder separates what generated them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:
    import torch

#: The sprites the renderer draws; a stream's crop region names one in ``render_as``.
KINDS = ("face", "hand")


def _check_kind(kind: str, where: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")


#: Rendering happens at this multiple of the requested size and is then downsampled (anti-aliasing).
_SUPERSAMPLE = 2

_HAND_FINGERS = ((0, 1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
_HAND_PALM = (0, 1, 5, 9, 13, 17)

#: The synthetic hand shapes: curl of the thumb, index, middle, ring and little finger (0 straight,
#: 1 curled into the palm). The label of a synthetic hand crop is the index of its shape here.
HAND_SHAPES: dict[str, tuple[float, float, float, float, float]] = {
    "flat": (0.1, 0.0, 0.0, 0.0, 0.0),
    "fist": (0.8, 1.0, 1.0, 1.0, 1.0),
    "index": (0.8, 0.0, 1.0, 1.0, 1.0),
    "v": (0.8, 0.0, 0.0, 1.0, 1.0),
    "w": (0.8, 0.0, 0.0, 0.0, 1.0),
    "thumb": (0.0, 1.0, 1.0, 1.0, 1.0),
    "l": (0.0, 0.0, 1.0, 1.0, 1.0),
    "y": (0.0, 1.0, 1.0, 1.0, 0.0),
}

#: The synthetic face expressions: (eye opening, mouth opening, mouth width, brow raise), each in the
#: units of the face model (eye and mouth opening 0..1). The label of a synthetic face crop is the
#: index of its expression here.
FACE_EXPRESSIONS: dict[str, tuple[float, float, float, float]] = {
    "neutral": (0.7, 0.0, 0.35, 0.0),
    "eyes_closed": (0.0, 0.0, 0.35, 0.0),
    "open_mouth": (0.6, 0.8, 0.38, 0.0),
    "surprise": (1.0, 1.0, 0.22, 0.1),
    "wide_mouth": (0.3, 0.2, 0.48, -0.05),
    "raised_brows": (1.0, 0.0, 0.3, 0.12),
}

RGB = tuple[int, int, int]


@attrs.frozen
class CropStyle:
    """Colours of a rendered crop: skin, the lines drawn on it, and a two-colour background."""

    skin: RGB = (224, 172, 138)
    ink: RGB = (60, 40, 35)
    background: RGB = (70, 90, 110)
    background_end: RGB = (40, 50, 60)  # the vertical gradient ends here
    clutter: tuple[tuple[float, float, float, RGB], ...] = ()  # (x, y, radius, colour), x,y,r in [0, 1]


def random_style(rng: np.random.Generator) -> CropStyle:
    """A random :class:`CropStyle`: skin tones, dark ink, a gradient background and a few blobs."""
    tone = rng.uniform(0.0, 1.0)
    skin = _mix((255, 219, 190), (110, 70, 50), tone)
    skin = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in skin)
    ink = tuple(int(c * rng.uniform(0.15, 0.45)) for c in skin)
    background = tuple(int(c) for c in rng.integers(0, 256, size=3))
    background_end = tuple(int(np.clip(c + rng.integers(-80, 81), 0, 255)) for c in background)
    clutter = tuple(
        (float(rng.uniform()), float(rng.uniform()), float(rng.uniform(0.05, 0.25)),
         tuple(int(c) for c in rng.integers(0, 256, size=3)))
        for _ in range(int(rng.integers(0, 4)))
    )
    return CropStyle(skin=skin, ink=ink, background=background, background_end=background_end,  # type: ignore[arg-type]
                     clutter=clutter)


def signer_style(rng: np.random.Generator, base: CropStyle | None = None) -> CropStyle:
    """A :class:`CropStyle` near ``base`` (default: :class:`CropStyle`'s colours), as crops of one signer
    in one studio look: skin tone and lighting vary a little, the background a little more, and at
    most one faint blob stands for something else in the frame."""
    base = base or CropStyle()
    light = rng.uniform(0.85, 1.15)
    skin = tuple(int(np.clip(c * light + rng.integers(-12, 13), 0, 255)) for c in base.skin)
    ink = tuple(int(c * rng.uniform(0.2, 0.4)) for c in skin)
    background = tuple(int(np.clip(c * light + rng.integers(-25, 26), 0, 255)) for c in base.background)
    background_end = tuple(int(np.clip(c * light + rng.integers(-25, 26), 0, 255)) for c in base.background_end)
    clutter = tuple(
        (float(rng.uniform()), float(rng.uniform()), float(rng.uniform(0.05, 0.15)),
         tuple(int(np.clip(c + rng.integers(-40, 41), 0, 255)) for c in background))
        for _ in range(int(rng.integers(0, 2)))
    )
    return CropStyle(skin=skin, ink=ink, background=background, background_end=background_end,  # type: ignore[arg-type]
                     clutter=clutter)


def render_crop(points: Any, size: int, kind: str, *, style: CropStyle | None = None,
                y_up: bool = False, margin: float = 0.15) -> torch.Tensor:
    """Draw a ``kind`` crop (``"face"`` or ``"hand"``) around ``points`` ``[P, 3]``.

    Returns a uint8 tensor ``[3, size, size]``. ``margin`` is the border around the points' bounding
    box, as a fraction of its longer side. See the module docstring for the point conventions.
    """
    import torch

    _check_kind(kind, "render_crop")
    array = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"render_crop: points must be [P, 2] or [P, 3], got shape {tuple(array.shape)}")
    if kind == "hand" and len(array) > 21:  # arm and head points come first in the MSKA hand streams
        array = array[-21:]
    image = _render(array, size, kind, style or CropStyle(), y_up, margin)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def label_names(kind: str) -> tuple[str, ...]:
    """The classes of synthetic ``kind`` crops, in label order: :data:`FACE_EXPRESSIONS` or
    :data:`HAND_SHAPES`."""
    _check_kind(kind, "label_names")
    return tuple(FACE_EXPRESSIONS if kind == "face" else HAND_SHAPES)


def synthetic_points(kind: str, rng: np.random.Generator, *, mirror: bool = False,
                     label: int | None = None) -> np.ndarray:
    """Random points ``[P, 3]`` for one ``kind`` crop: a 68-point face or a 21-point hand.

    ``label`` picks the expression or hand shape (see :func:`label_names`); ``None`` draws one from
    ``rng``.
    """
    _check_kind(kind, "synthetic_points")
    names = label_names(kind)
    if label is None:
        label = int(rng.integers(len(names)))
    elif not 0 <= label < len(names):
        raise ValueError(f"synthetic_points: label must be in 0..{len(names) - 1} for {kind}, got {label}")
    if kind == "face":
        return _face_points(rng, FACE_EXPRESSIONS[names[label]])
    return _hand_points(rng, HAND_SHAPES[names[label]], mirror=mirror)


def _synthetic_rng(kind: str, index: int, seed: int) -> tuple[np.random.Generator, int]:
    """The generator and the class of synthetic ``kind`` crop ``index``; the class is the first draw."""
    _check_kind(kind, "synthetic crop")
    rng = np.random.default_rng([int(seed), int(index), KINDS.index(kind)])
    return rng, int(rng.integers(len(label_names(kind))))


def synthetic_label(kind: str, index: int, seed: int) -> int:
    """The class of synthetic ``kind`` crop ``index`` (an index into :func:`label_names` of ``kind``),
    without drawing the crop."""
    return _synthetic_rng(kind, index, seed)[1]


def synthetic_crop(kind: str, index: int, size: int, seed: int, *, mirror: bool = False) -> torch.Tensor:
    """Synthetic ``kind`` crop ``index`` (``"face"`` or ``"hand"``): a uint8 tensor ``[3, size, size]``.

    Depends only on ``(kind, seed, index)``; ``mirror=True`` draws a hand as its mirror image (a left
    hand where the default is a right one). Its class is :func:`synthetic_label` with the same
    arguments. Which kind a stream gets is its crop region's ``render_as``
    (:func:`mska_core.synthetic.crops.sprite_for`).
    """
    rng, label = _synthetic_rng(kind, index, seed)
    points = synthetic_points(kind, rng, mirror=mirror, label=label)
    return render_crop(points, size, kind, style=signer_style(rng), margin=float(rng.uniform(0.08, 0.3)))


def synthetic_crops(kind: str, count: int, size: int, seed: int, *, mirror: bool = False) -> torch.Tensor:
    """``count`` synthetic ``kind`` crops as a uint8 tensor ``[count, 3, size, size]``."""
    import torch

    if count <= 0:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.stack([synthetic_crop(kind, i, size, seed, mirror=mirror) for i in range(count)])


def write_synthetic_crops(folder: Any, kind: str, count: int, size: int, seed: int = 0, *,
                          mirror: bool = False) -> list[Any]:
    """Write ``count`` synthetic ``kind`` crops as PNG files ``KIND_NNNNNN.png`` into ``folder`` (a crop
    folder that ``mska pretrain --train-dir`` reads) and return their paths. Files are written
    atomically."""
    import io
    from pathlib import Path

    from PIL import Image

    from mska_core.io import atomic_write_bytes

    folder = Path(folder)
    paths = []
    for i in range(count):
        crop = synthetic_crop(kind, i, size, seed, mirror=mirror)
        buffer = io.BytesIO()
        Image.fromarray(crop.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        paths.append(atomic_write_bytes(folder / f"{kind}_{i:06d}.png", buffer.getvalue()))
    return paths


# --- drawing -------------------------------------------------------------------------------------


def _render(points: np.ndarray, size: int, kind: str, style: CropStyle, y_up: bool, margin: float) -> Any:
    from PIL import Image, ImageDraw

    canvas = size * _SUPERSAMPLE
    image = _background(canvas, style)
    draw = ImageDraw.Draw(image)
    xy = points[:, :2].copy()
    if y_up:
        xy[:, 1] = -xy[:, 1]
    valid = points[:, 2] > 0 if points.shape[1] > 2 else np.ones(len(points), dtype=bool)
    valid &= np.isfinite(xy).all(axis=1)
    if valid.any():
        frame_points = xy[valid]
        if kind == "face" and len(points) == 68:  # the forehead lies above the brows
            frame_points = np.concatenate([frame_points, _forehead(xy)[None]])
        to_canvas = _framing(frame_points, canvas, margin)
        pixels = to_canvas(xy)
        scale = to_canvas.scale  # type: ignore[attr-defined]
        if kind == "face":
            _draw_face(draw, pixels, valid, scale, style)
        else:
            _draw_hand(draw, pixels, valid, scale, style)
    return image.resize((size, size), Image.Resampling.BOX)


def _background(canvas: int, style: CropStyle) -> Any:
    from PIL import Image, ImageDraw

    ramp = np.linspace(0.0, 1.0, canvas)[:, None, None]
    start = np.asarray(style.background, dtype=np.float64)
    end = np.asarray(style.background_end, dtype=np.float64)
    pixels = np.broadcast_to(start + (end - start) * ramp, (canvas, canvas, 3))
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x, y, radius, colour in style.clutter:
        r = radius * canvas
        draw.ellipse((x * canvas - r, y * canvas - r, x * canvas + r, y * canvas + r), fill=tuple(colour))
    return image


def _framing(points: np.ndarray, canvas: int, margin: float) -> Any:
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    side = max(float((high - low).max()), 1e-6) * (1 + 2 * margin)
    scale = canvas / side

    def to_canvas(xy: np.ndarray) -> np.ndarray:
        return (xy - centre) * scale + canvas / 2

    to_canvas.scale = scale  # type: ignore[attr-defined]
    return to_canvas


def _forehead(xy: np.ndarray) -> np.ndarray:
    brows = xy[17:27].mean(axis=0)
    chin = xy[8]
    return brows + (brows - chin) * 0.45


def _polygon(draw: Any, pixels: np.ndarray, indices: Any, valid: np.ndarray, **kwargs: Any) -> None:
    chosen = [tuple(pixels[i]) for i in indices if valid[i]]
    if len(chosen) >= 3:
        draw.polygon(chosen, **kwargs)


def _line(draw: Any, pixels: np.ndarray, indices: Any, valid: np.ndarray, **kwargs: Any) -> None:
    chosen = [tuple(pixels[i]) for i in indices if valid[i]]
    if len(chosen) >= 2:
        draw.line(chosen, joint="curve", **kwargs)


def _dot(draw: Any, centre: np.ndarray, radius: float, colour: RGB) -> None:
    x, y = centre
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def _draw_face(draw: Any, pixels: np.ndarray, valid: np.ndarray, scale: float, style: CropStyle) -> None:
    width = max(1, int(round(scale * 0.04)))
    if len(pixels) != 68:
        chosen = pixels[valid]
        low, high = chosen.min(axis=0), chosen.max(axis=0)
        draw.ellipse((*low, *high), fill=style.skin, outline=style.ink, width=width)
        for point in chosen:
            _dot(draw, point, width * 1.5, style.ink)
        return
    jaw = pixels[0:17]
    top = pixels[8] + (pixels[17:27].mean(axis=0) - pixels[8]) * 1.45
    centre = np.array([jaw[:, 0].mean(), (pixels[8, 1] + top[1]) / 2])
    half_width = max(float(np.abs(jaw[:, 0] - centre[0]).max()), 1.0)
    half_height = max(float(np.linalg.norm(pixels[8] - top)) / 2, 1.0)
    draw.ellipse((centre[0] - half_width, centre[1] - half_height, centre[0] + half_width,
                  centre[1] + half_height), fill=style.skin, outline=style.ink, width=width)
    _line(draw, pixels, range(17, 22), valid, fill=style.ink, width=width * 2)
    _line(draw, pixels, range(22, 27), valid, fill=style.ink, width=width * 2)
    _line(draw, pixels, range(27, 31), valid, fill=style.ink, width=width)
    _line(draw, pixels, range(31, 36), valid, fill=style.ink, width=width)
    for eye in (range(36, 42), range(42, 48)):
        _polygon(draw, pixels, eye, valid, fill=(245, 245, 240), outline=style.ink)
        if all(valid[i] for i in eye):
            corners = pixels[list(eye)]
            openness = float(np.ptp(corners[:, 1]))
            if openness > width:
                _dot(draw, corners.mean(axis=0), min(openness / 2.2, width * 3.0), (30, 25, 25))
    _polygon(draw, pixels, range(48, 60), valid, fill=(150, 60, 60), outline=style.ink)
    _polygon(draw, pixels, range(60, 68), valid, fill=(60, 20, 25))


def _draw_hand(draw: Any, pixels: np.ndarray, valid: np.ndarray, scale: float, style: CropStyle) -> None:
    finger = max(2, int(round(scale * 0.13)))
    if len(pixels) < 21:
        _line(draw, pixels, range(len(pixels)), valid, fill=style.skin, width=finger)
        for i in range(len(pixels)):
            if valid[i]:
                _dot(draw, pixels[i], finger * 0.3, style.ink)
        return
    _polygon(draw, pixels, _HAND_PALM, valid, fill=style.skin, outline=style.skin)
    _line(draw, pixels, (*_HAND_PALM, 0), valid, fill=style.skin, width=finger)
    for chain in _HAND_FINGERS:
        _line(draw, pixels, chain, valid, fill=style.ink, width=finger + 2 * max(1, finger // 6))
        _line(draw, pixels, chain, valid, fill=style.skin, width=finger)
        for i in chain[1:]:
            if valid[i]:
                _dot(draw, pixels[i], max(1.0, finger * 0.12), style.ink)
    tips = [chain[-1] for chain in _HAND_FINGERS]
    for i in tips:
        if valid[i]:
            _dot(draw, pixels[i], finger * 0.5, style.skin)


# --- synthetic poses -----------------------------------------------------------------------------


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return xy @ np.array([[c, s], [-s, c]])


def _ellipse_arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, n: int) -> np.ndarray:
    t = np.linspace(start, stop, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _face_points(rng: np.random.Generator, expression: tuple[float, float, float, float]) -> np.ndarray:
    """68 iBUG-order points of a face with random shape and head pose around an ``expression``
    (eye opening, mouth opening, mouth width, brow raise; see :data:`FACE_EXPRESSIONS`)."""
    eye, mouth, mouth_w, brow = expression
    width = rng.uniform(0.75, 0.95)
    yaw = rng.uniform(-0.25, 0.25)  # shifts the inner features sideways
    eye_open = float(np.clip(eye + rng.normal(0.0, 0.08), 0.0, 1.0))
    mouth_open = float(np.clip(mouth + rng.normal(0.0, 0.08), 0.0, 1.0))
    mouth_width = float(np.clip(mouth_w + rng.normal(0.0, 0.03), 0.15, 0.55))
    brow_raise = brow + float(rng.normal(0.0, 0.02))
    jaw = _ellipse_arc(0.0, 0.0, width, 1.0, math.pi * 1.05, math.pi * -0.05, 17)
    jaw[:, 1] = np.abs(jaw[:, 1]) * 0.95 + 0.05  # the lower half, y down
    jaw = jaw[::-1]
    brows = []
    for side in (-1, 1):
        cx = side * 0.38 + yaw
        brows.append(_ellipse_arc(cx, -0.38 - brow_raise + 0.08, 0.2, 0.08, math.pi * 1.15, math.pi * 1.85, 5))
    nose = np.concatenate([
        np.stack([np.full(4, yaw * 1.3), np.linspace(-0.25, 0.15, 4)], axis=1),
        _ellipse_arc(yaw * 1.3, 0.17, 0.13, 0.05, math.pi * 0.9, math.pi * 0.1, 5),
    ])
    eyes = []
    for side in (-1, 1):
        cx, half_h = side * 0.38 + yaw, 0.02 + 0.07 * eye_open
        t = np.linspace(math.pi, -math.pi, 7)[:-1]
        eyes.append(np.stack([cx + 0.13 * np.cos(t), -0.2 - half_h * np.sin(t)], axis=1))
    mouth_y = 0.55
    t = np.linspace(math.pi, -math.pi, 13)[:-1]
    outer = np.stack([yaw + mouth_width * np.cos(t), mouth_y - (0.05 + 0.12 * mouth_open) * np.sin(t)], axis=1)
    t = np.linspace(math.pi, -math.pi, 9)[:-1]
    inner = np.stack([yaw + mouth_width * 0.7 * np.cos(t), mouth_y - (0.005 + 0.1 * mouth_open) * np.sin(t)],
                     axis=1)
    xy = np.concatenate([jaw, *brows, nose, *eyes, outer, inner])
    xy = _rotate(xy, rng.uniform(-0.4, 0.4)) * rng.uniform(0.8, 1.2)
    return np.concatenate([xy, np.ones((68, 1))], axis=1)


def _hand_points(rng: np.random.Generator, shape: tuple[float, ...], *, mirror: bool = False) -> np.ndarray:
    """21 points of a right hand (mirrored for the left) in a hand ``shape`` (finger curls, see
    :data:`HAND_SHAPES`) with random proportions, curl noise and rotation."""
    wrist = np.array([0.0, 0.9])
    knuckles = np.array([[-0.3, 0.55], [-0.3, 0.05], [-0.1, -0.02], [0.1, 0.0], [0.28, 0.08]])
    base_angle = np.array([-2.4, -1.75, -1.6, -1.45, -1.3]) + rng.normal(0.0, 0.08, size=5)
    lengths = np.array([[0.25, 0.2, 0.17], [0.3, 0.2, 0.16], [0.33, 0.22, 0.17], [0.3, 0.2, 0.16],
                        [0.24, 0.16, 0.13]]) * rng.uniform(0.9, 1.1)
    curl = np.clip(np.asarray(shape) + rng.normal(0.0, 0.1, size=5), 0.0, 1.0)
    points = [wrist]
    for finger in range(5):
        position, angle = knuckles[finger].copy(), base_angle[finger]
        chain = [position.copy()]
        for joint in range(3):
            angle += curl[finger] * (0.9 if finger else 0.5)
            position = position + lengths[finger, joint] * np.array([math.cos(angle), math.sin(angle)])
            chain.append(position.copy())
        points.extend(chain)
    xy = np.stack(points)  # 1 + 5 * 4 = 21
    if mirror:
        xy[:, 0] = -xy[:, 0]
    xy = _rotate(xy, rng.uniform(-0.8, 0.8)) * rng.uniform(0.8, 1.2)
    return np.concatenate([xy, np.ones((21, 1))], axis=1)

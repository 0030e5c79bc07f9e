"""The embedded synthetic corpus: every command runs with no download.

A seeded generator makes a gloss vocabulary, sentences of ``min_glosses``–``max_glosses`` glosses, a
translation per sentence, and COCO-WholeBody keypoint clips ``[T, 133, 3]`` whose motion encodes the
glosses:

- each gloss has its own *sign*: for each hand a place in the signing space, a movement (circles,
  oscillations, a stroke) and a hand shape (fist, flat, point, V), chosen so that no two glosses share
  one hand's sign; and a facial component (mouth opening, brow raise, head nod);
- a clip is a short rest, the glosses' signs one after the other (each lasting about
  ``frames_per_gloss`` frames at the signer's own pace), and a rest; elbows, eyes and the rest of the
  body follow the hands and the head;
- signers differ in size, position and pace; every point carries noise, and hands drop out now and
  then (confidence 0), as they do with real pose estimators;
- the translation replaces each gloss by its fixed words (``RAIN`` -> ``it rains``), so a decoder
  can learn it from the recognised glosses.

Coordinates are already what the reference's normalisation produces: x and y in [-1, 1], y up.
With ``[data] crops = true``, crops are rendered from the clip's points by
:mod:`mska_core.synthetic.render` for every stream whose crop region names a sprite (see
:func:`clip_crops`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mska_core.data.samples import Corpus, Sample
from mska_core.errors import DataError

if TYPE_CHECKING:
    from mska_core.records import StreamSpec

#: Gloss names and their translations; beyond this list glosses are called SIGN<n> -> sign<n>.
LEXICON: tuple[tuple[str, str], ...] = (
    ("TOMORROW", "tomorrow"), ("RAIN", "it rains"), ("SUN", "sunny"), ("NORTH", "in the north"),
    ("SOUTH", "in the south"), ("WIND", "windy"), ("COLD", "cold"), ("WARM", "warm"),
    ("CLOUD", "cloudy"), ("SNOW", "it snows"), ("DAY", "during the day"), ("NIGHT", "at night"),
    ("MORNING", "in the morning"), ("STRONG", "strong"), ("WEAK", "weak"), ("FOG", "foggy"),
    ("STORM", "a storm"), ("COAST", "on the coast"), ("MOUNTAIN", "in the mountains"),
    ("TODAY", "today"), ("WEST", "in the west"), ("EAST", "in the east"), ("DRY", "dry"),
    ("FRIENDLY", "pleasant"), ("DEGREES", "degrees"), ("ZERO", "zero"), ("TEN", "ten"),
    ("TWENTY", "twenty"), ("FRIDAY", "on friday"), ("WEEKEND", "at the weekend"),
    ("THUNDER", "thunder"), ("SHOWER", "showers"), ("ICE", "icy"), ("HIGH", "high pressure"),
    ("LOW", "low pressure"), ("REGION", "in places"), ("LATER", "later"), ("MILD", "mild"),
    ("CLEAR", "clear skies"), ("HAIL", "hail"),
)

LOCATIONS = ((0.0, -0.10), (0.05, 0.42), (0.42, -0.02), (0.22, -0.42), (0.30, 0.22))
MOVEMENTS = ("circle", "circle_back", "vertical", "horizontal", "stroke", "twist")
SHAPES = ("fist", "flat", "point", "vee")
MAX_VOCAB = len(LOCATIONS) * len(MOVEMENTS) * len(SHAPES)
REST_FRAMES = 2
NUM_SIGNERS = 8

_HEAD = (0.0, 0.55)
_SHOULDER = (0.32, 0.12)
_REST = (0.25, -0.62)


def lexicon(vocab_size: int) -> list[tuple[str, str]]:
    """The first ``vocab_size`` (gloss, words) pairs."""
    if vocab_size > MAX_VOCAB:
        raise DataError(
            f"data.synthetic.vocab_size: at most {MAX_VOCAB} glosses have distinct signs, got {vocab_size}"
        )
    extra = [(f"SIGN{i}", f"sign{i}") for i in range(len(LEXICON), vocab_size)]
    return list(LEXICON[:vocab_size]) + extra


def make_corpus(cfg: Any) -> Corpus:
    """The synthetic corpus of a :class:`~mska_core.config.SyntheticConfig` (deterministic in its seed)."""
    import torch

    if cfg.min_glosses > cfg.max_glosses:
        raise DataError(
            f"data.synthetic: min_glosses ({cfg.min_glosses}) is larger than max_glosses ({cfg.max_glosses})"
        )
    words = lexicon(cfg.vocab_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    signs = _assign_signs(cfg.vocab_size, gen)
    signers = [_signer(i, cfg.seed) for i in range(NUM_SIGNERS)]
    splits = {}
    for split, count in (("train", cfg.num_train), ("dev", cfg.num_dev), ("test", cfg.num_test)):
        samples = []
        for i in range(count):
            glosses = _sentence(cfg, gen)
            signer = int(torch.randint(NUM_SIGNERS, (1,), generator=gen))
            keypoints = _clip(glosses, signs, signers[signer], cfg.frames_per_gloss, gen)
            samples.append(
                Sample(
                    name=f"{split}-{i:05d}",
                    keypoints=keypoints,
                    gloss=" ".join(words[g][0] for g in glosses),
                    text=" ".join(words[g][1] for g in glosses),
                    signer=signer,
                )
            )
        splits[split] = samples
    return Corpus(**splits, source=f"synthetic (seed {cfg.seed})", layout="coco_wholebody", render_crops=clip_crops)


def _sentence(cfg: Any, gen: Any) -> list[int]:
    import torch

    length = int(torch.randint(cfg.min_glosses, cfg.max_glosses + 1, (1,), generator=gen))
    glosses: list[int] = []
    while len(glosses) < length:
        g = int(torch.randint(cfg.vocab_size, (1,), generator=gen))
        if not glosses or g != glosses[-1]:  # no gloss twice in a row
            glosses.append(g)
    return glosses


def _assign_signs(vocab_size: int, gen: Any) -> list[dict[str, Any]]:
    """Per gloss: a (place, movement, shape) per hand, unique per hand, and a facial component."""
    import torch

    combos = [(p, m, s) for p in range(len(LOCATIONS)) for m in range(len(MOVEMENTS)) for s in range(len(SHAPES))]
    right = torch.randperm(len(combos), generator=gen)[:vocab_size].tolist()
    left = torch.randperm(len(combos), generator=gen)[:vocab_size].tolist()
    signs = []
    for g in range(vocab_size):
        phase = float(torch.rand(1, generator=gen)) * 2 * math.pi
        signs.append({
            "right": combos[right[g]],
            "left": combos[left[g]],
            "mouth": g % 4,
            "brow": (g // 4) % 5,
            "phase": phase,
        })
    return signs


def _signer(index: int, seed: int) -> dict[str, float]:
    import torch

    gen = torch.Generator().manual_seed(seed * 1000 + index + 1)
    u = torch.rand(4, generator=gen).tolist()
    return {
        "scale": 0.9 + 0.2 * u[0],
        "dx": 0.1 * (u[1] - 0.5),
        "dy": 0.1 * (u[2] - 0.5),
        "pace": 0.85 + 0.3 * u[3],
    }


def _clip(glosses: list[int], signs: list[dict[str, Any]], signer: dict[str, float], frames_per_gloss: int,
          gen: Any) -> Any:
    """Keypoints ``[T, 133, 3]`` of a sentence."""
    import torch

    segments = [_rest(REST_FRAMES)]
    for g in glosses:
        jitter = 0.9 + 0.2 * float(torch.rand(1, generator=gen))
        length = max(4, round(frames_per_gloss * signer["pace"] * jitter))
        segments.append(_sign(signs[g], length))
    segments.append(_rest(REST_FRAMES))
    track = {k: torch.cat([s[k] for s in segments]) for k in segments[0]}
    points = _skeleton(track)  # [T, 133, 2]
    points = points * signer["scale"] + torch.tensor([signer["dx"], signer["dy"]])
    points = points + 0.008 * torch.randn(points.shape, generator=gen)
    conf = torch.ones(points.shape[:2])
    conf[:, 11:23] = 0.0  # hips, legs and feet are out of frame
    t = points.shape[0]
    for joints in (range(91, 112), range(112, 133)):  # a hand the estimator missed
        missed = torch.rand(t, generator=gen) < 0.02
        conf[missed.nonzero().flatten()[:, None], torch.tensor(list(joints))] = 0.0
    points = points * (conf[..., None] > 0)
    return torch.cat([points.clamp(-1.0, 1.0), conf[..., None]], dim=-1).to(torch.float32)


def _rest(length: int) -> dict[str, Any]:
    import torch

    zeros = torch.zeros(length)
    return {
        "right": torch.tensor([-_REST[0], _REST[1]]).repeat(length, 1),
        "left": torch.tensor([_REST[0], _REST[1]]).repeat(length, 1),
        "right_shape": torch.full((length,), 0, dtype=torch.long),
        "left_shape": torch.full((length,), 0, dtype=torch.long),
        "right_angle": zeros.clone(),
        "left_angle": zeros.clone(),
        "mouth": zeros.clone(),
        "brow": zeros.clone(),
        "nod": zeros.clone(),
    }


def _movement(kind: str, t: Any, phase: float) -> tuple[Any, Any, Any]:
    """Offsets ``[L, 2]`` of the wrist and a hand rotation ``[L]`` over one sign, t in [0, 1]."""
    import torch

    a = 0.12
    zero = torch.zeros_like(t)
    w = 2 * math.pi * t
    if kind == "circle":
        return a * torch.cos(w + phase), a * torch.sin(w + phase), zero
    if kind == "circle_back":
        return a * torch.cos(-w + phase), a * torch.sin(-w + phase), zero
    if kind == "vertical":
        return zero, a * torch.sin(2 * w), zero
    if kind == "horizontal":
        return a * torch.sin(2 * w), zero, zero
    if kind == "stroke":
        return a * (2 * t - 1), -a * (2 * t - 1), zero
    return zero, zero, 0.9 * torch.sin(2 * w)  # twist: the wrist turns in place


def _sign(sign: dict[str, Any], length: int) -> dict[str, Any]:
    import torch

    t = torch.linspace(0.0, 1.0, length)
    out: dict[str, Any] = {}
    for hand, mirror in (("right", -1.0), ("left", 1.0)):
        place, move, shape = sign[hand]
        dx, dy, angle = _movement(MOVEMENTS[move], t, sign["phase"])
        x0, y0 = LOCATIONS[place]
        out[hand] = torch.stack([mirror * (x0 + dx), y0 + dy], dim=-1)
        out[f"{hand}_shape"] = torch.full((length,), shape, dtype=torch.long)
        out[f"{hand}_angle"] = angle
    bump = torch.sin(math.pi * t)
    out["mouth"] = 0.012 * sign["mouth"] * bump * (1 + 0.5 * torch.sin(6 * math.pi * t))
    out["brow"] = 0.015 * (sign["brow"] % 3) * bump
    out["nod"] = 0.03 * (sign["brow"] // 3) * torch.sin(4 * math.pi * t)
    return out


# Finger directions (radians, 0 = pointing up) and the 4 segment lengths of each finger.
_FINGER_ANGLES = (-1.1, -0.35, 0.0, 0.3, 0.6)
_SEGMENTS = (0.025, 0.02, 0.016, 0.013)
# How far each finger (thumb..pinky) is extended in each shape (1 extended, 0.25 curled).
_EXTENSION = {
    0: (0.4, 0.25, 0.25, 0.25, 0.25),  # fist
    1: (1.0, 1.0, 1.0, 1.0, 1.0),  # flat
    2: (0.4, 1.0, 0.25, 0.25, 0.25),  # point
    3: (0.4, 1.0, 1.0, 0.25, 0.25),  # vee
}


def _hand(wrist: Any, shape: Any, angle: Any, mirror: float) -> Any:
    """The 21 points ``[L, 21, 2]`` of a hand at ``wrist`` ``[L, 2]`` (wrist, then 4 per finger)."""
    import torch

    ext = torch.tensor([_EXTENSION[i] for i in range(len(SHAPES))])[shape]  # [L, 5]
    theta = mirror * torch.tensor(_FINGER_ANGLES) + angle[:, None]  # [L, 5]
    root = wrist[:, None] + 0.03 * torch.stack([torch.sin(theta), torch.cos(theta)], -1)  # [L, 5, 2]
    k = torch.arange(1, len(_SEGMENTS) + 1)
    bend = theta[..., None] + mirror * (1 - ext)[..., None] * 1.2 * k  # [L, 5, 4]
    step = (torch.tensor(_SEGMENTS) * ext[..., None])[..., None] * torch.stack(
        [torch.sin(bend), torch.cos(bend)], -1
    )  # [L, 5, 4, 2]
    fingers = root[:, :, None] + step.cumsum(dim=2)
    return torch.cat([wrist[:, None], fingers.flatten(1, 2)], dim=1)


@functools.cache
def _face_template() -> tuple[Any, Any]:
    """The 68 face points ``[68, 2]`` (300W order) around the origin, and each point's group
    (0 fixed, 1 brow, 2 lower lip, 3 upper lip)."""
    import torch

    rx, ry = 0.14, 0.18
    pts = []
    jaw = torch.linspace(math.pi * 1.05, math.pi * 1.95, 17).tolist()
    pts += [(rx * math.cos(a), ry * math.sin(a) * 0.9, 0) for a in jaw]
    pts += [(-0.1 + 0.02 * i, 0.07 + 0.01 * (2 - abs(i - 2)), 1) for i in range(5)]  # left brow
    pts += [(0.02 + 0.02 * i, 0.07 + 0.01 * (2 - abs(i - 2)), 1) for i in range(5)]  # right brow
    pts += [(0.0, 0.04 - 0.02 * i, 0) for i in range(4)]  # nose bridge
    pts += [(-0.02 + 0.01 * i, -0.05, 0) for i in range(5)]  # nose base
    for cx in (-0.05, 0.05):  # eyes
        pts += [(cx + 0.02 * math.cos(a), 0.03 + 0.008 * math.sin(a), 0)
                for a in torch.linspace(math.pi, -math.pi * 2 / 3, 6).tolist()]
    outer = torch.linspace(math.pi, -math.pi * 5 / 6, 12).tolist()
    pts += [(0.045 * math.cos(a), -0.1 + 0.015 * math.sin(a), 2 if math.sin(a) < 0 else 3) for a in outer]
    inner = torch.linspace(math.pi, -math.pi * 3 / 4, 8).tolist()
    pts += [(0.03 * math.cos(a), -0.1 + 0.006 * math.sin(a), 2 if math.sin(a) < 0 else 3) for a in inner]
    return torch.tensor([(x, y) for x, y, _ in pts]), torch.tensor([g for _, _, g in pts])


def _face(center: Any, mouth: Any, brow: Any) -> Any:
    """The 68 face points ``[L, 68, 2]`` around ``center`` ``[L, 2]``, brows and mouth moving."""
    import torch

    base, group = _face_template()
    shift = torch.zeros(center.shape[0], 68, 2)
    shift[:, group == 1, 1] = brow[:, None]
    shift[:, group == 2, 1] = -mouth[:, None]  # lower lip opens
    shift[:, :17, 1] -= 0.5 * mouth[:, None]  # the jaw follows
    return center[:, None, :] + base[None] + shift


def _skeleton(track: dict[str, Any]) -> Any:
    """COCO-WholeBody points ``[T, 133, 2]`` from the hand, face and head tracks."""
    import torch

    t = track["mouth"].shape[0]
    pts = torch.zeros(t, 133, 2)
    head = torch.tensor(_HEAD).repeat(t, 1)
    head[:, 1] += track["nod"]
    pts[:, 0] = head + torch.tensor([0.0, -0.02])  # nose
    pts[:, 1] = head + torch.tensor([0.05, 0.03])  # left eye
    pts[:, 2] = head + torch.tensor([-0.05, 0.03])
    pts[:, 3] = head + torch.tensor([0.13, 0.0])  # left ear
    pts[:, 4] = head + torch.tensor([-0.13, 0.0])
    for side, mirror, (sh, el, wr) in (("left", 1.0, (5, 7, 9)), ("right", -1.0, (6, 8, 10))):
        shoulder = torch.tensor([mirror * _SHOULDER[0], _SHOULDER[1]]).repeat(t, 1)
        wrist = track[side]
        elbow = (shoulder + wrist) / 2 + torch.tensor([mirror * 0.12, -0.08])
        pts[:, sh], pts[:, el], pts[:, wr] = shoulder, elbow, wrist
        first = 91 if side == "left" else 112
        pts[:, first:first + 21] = _hand(wrist, track[f"{side}_shape"], track[f"{side}_angle"], mirror)
    pts[:, 11] = torch.tensor([0.2, -0.9])  # hips, knees, ankles, feet: below the frame
    pts[:, 12] = torch.tensor([-0.2, -0.9])
    pts[:, 23:91] = _face(head, track["mouth"], track["brow"])
    return pts


def clip_crops(keypoints: Any, streams: Sequence[StreamSpec], size: int,
               layout: str = "coco_wholebody") -> dict[str, Any]:
    """Rendered crops ``{stream: uint8 [T, 3, size, size]}`` of a clip ``[T, J, 3]`` in ``layout``.

    A stream gets crops when its :class:`~mska_core.records.CropRegion` names a sprite (``render_as``)
    and has joints in ``layout``: each frame's crop is that sprite drawn from those joints. Other
    streams are skipped; no stream name is known here.
    """
    import torch

    from mska_core.synthetic.render import render_crop

    crops = {}
    for spec in streams:
        region = spec.crop_region
        joints = region.joints_for(layout) if region is not None and region.render_as else ()
        if not joints:
            continue
        points = keypoints[:, list(joints)]  # [T, P, 3]
        sprite = region.render_as
        crops[spec.name] = torch.stack([render_crop(frame, size, sprite, y_up=True) for frame in points])
    return crops

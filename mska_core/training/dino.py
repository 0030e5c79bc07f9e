"""DINO pretraining of a crop encoder for one stream (``mska pretrain``).

The pieces read top-down: the DINO head, the multi-crop wrapper that runs a backbone over the views,
:class:`DINO` (student, EMA teacher and losses as one object), the measurements, the schedules, and
:func:`pretrain`, a short loop over them that stands on the training scaffold
(:mod:`mska_core.training.scaffold`, :mod:`~mska_core.training.runfolder`,
:mod:`~mska_core.training.distributed`).

- Student and teacher share one architecture: a backbone from the registry's archs
  (``build_arch(arch, img_size=...)``) or from a spec (``load_backbone``), plus a DINO head whose
  prototype layer is weight-normalised. The teacher is an exponential moving average of the student;
  its momentum rises from ``momentum_teacher`` to 1 on a cosine.
- The learning rate warms up linearly for ``warmup_epochs`` and then follows a cosine down to
  ``min_lr``; weight decay follows a cosine from ``weight_decay`` to ``weight_decay_end`` (biases and
  norms are never decayed); the teacher temperature warms up from ``warmup_teacher_temp``; gradients
  are clipped to ``grad_clip``; the prototypes are frozen for the first ``freeze_last_layer_epochs``.
  All schedules are functions of the global step, held by one object, :class:`Schedules`.
- The losses come from the registry: ``dino`` (its centre is a buffer) and ``koleo`` on the student's
  features of the global views, weighted by ``koleo_weight``.
- Measurements that tell a learning run from a collapsed one: each step records the teacher's target
  entropy (``log(out_dim)`` when collapsed to uniform) and the per-dimension std of the student's
  features; every ``probe_every`` epochs, :class:`Probe` measures the k-NN accuracy of the teacher's
  backbone on held-out synthetic crops labelled with the expression or hand shape that drew them,
  against the initial backbone's figure as the baseline.
- Records in ``output_dir``: ``config.toml``, ``metrics.jsonl`` (one line per step and one summary per
  epoch), ``checkpoint.pt`` (the whole training state, each epoch, atomic) and ``skipped.txt`` when
  crop files could not be read. ``--resume`` restores every piece of state, including the random
  number generators, and continues with the same losses as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mska_core.backbones.products import route_linears
from mska_core.backbones.vit import crop_attention
from mska_core.config import Config, PretrainConfig, save_config, unstructure
from mska_core.errors import ConfigError, MskaError
from mska_core.losses.dino import entropy
from mska_core.run_files import PRETRAIN_STATE, RunFiles
from mska_core.training.scaffold import (
    CosineSchedule,
    MetricsLog,
    ProgressDisplay,
    rng_state,
    seed_everything,
    set_rng_state,
)


#: Local crops cover about this fraction of the global crop's side (DINOv2: 98 px of 224).
LOCAL_TO_GLOBAL = 0.4375


# --- the model -----------------------------------------------------------------------------------


class DINOHead(nn.Module):
    """MLP projection, L2 normalisation and a weight-normalised prototype layer.

    ``in_dim -> hidden_dim (x n_layers - 1, GELU) -> bottleneck_dim -> normalise -> out_dim``. With
    ``norm_last_layer`` the weight-norm gain of the prototypes is fixed at 1.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden_dim: int = 512, bottleneck_dim: int = 128,
                 n_layers: int = 3, norm_last_layer: bool = True) -> None:
        super().__init__()
        if n_layers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(n_layers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = torch.nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck_dim, out_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            gain.fill_(1.0)
        gain.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class MultiCropModel(nn.Module):
    """A backbone and a DINO head over a list of views; views of one size run as one batch, their
    attention through :func:`~mska_core.backbones.vit.crop_attention` and their linear maps through
    :func:`~mska_core.backbones.products.linear` (the faster float32 product kernel of the CPU).

    ``forward(views) -> (logits [n_views * B, out_dim], features [n_views * B, D])``.
    """

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone = route_linears(backbone)
        self.head = route_linears(head)

    def forward(self, views: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = []
        start = 0
        with crop_attention(views[0].device):
            while start < len(views):
                stop = start + 1
                while stop < len(views) and views[stop].shape[-2:] == views[start].shape[-2:]:
                    stop += 1
                features.append(self.backbone(torch.cat(list(views[start:stop]))))
                start = stop
        features_all = torch.cat(features)
        return self.head(features_all), features_all


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student``, parameter by parameter."""
    teacher_params = list(teacher.parameters())
    student_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(teacher_params, momentum)
    torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)


class DINO(nn.Module):
    """DINO self-distillation as one model: a student, its EMA teacher and the losses.

    - :meth:`forward_backward` runs the teacher on the two global views and the student on every view,
      computes the DINO loss (plus ``koleo_weight`` times KoLeo on the student's features of the global
      views, one batch of views at a time) at the step's teacher temperature (from
      :class:`Schedules`), back-propagates it into the student and returns the step's figures.
    - The optimiser is the caller's; between its ``zero_grad`` and ``step`` come
      :meth:`clip_gradients` and, while the prototypes are frozen, :meth:`cancel_last_layer_gradients`.
    - :meth:`update_teacher` then moves the teacher towards the student.

    The teacher never trains: it starts as a copy of the student and stays in eval mode.
    """

    def __init__(self, backbone: nn.Module, head: DINOHead, dino_loss: nn.Module, *,
                 koleo_loss: nn.Module | None = None, koleo_weight: float = 0.0) -> None:
        super().__init__()
        self.student = MultiCropModel(backbone, head)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.dino_loss = dino_loss
        self.koleo_loss = koleo_loss
        self.koleo_weight = koleo_weight

    def train(self, mode: bool = True) -> DINO:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward_backward(self, views: Sequence[torch.Tensor], teacher_temp: float) -> dict[str, float]:
        """One step's forward and backward passes over ``views`` (global views first, each ``[B, 3, S, S]``),
        the teacher's targets sharpened by ``teacher_temp``.

        Returns ``loss`` (the total), ``dino``, ``koleo``, ``teacher_temp``, ``teacher_entropy`` (of the
        teacher's targets; ``log(out_dim)`` when they are uniform) and ``feature_std`` (of the student's
        features of the global views; near 0 when every image gets one feature).
        """
        batch = views[0].shape[0]
        with torch.no_grad():
            teacher_logits, _ = self.teacher(views[:2])  # [2 B, out_dim]
            targets = self.dino_loss.teacher_probabilities(teacher_logits, temperature=teacher_temp)
            teacher_entropy = float(entropy(targets))
        student_logits, features = self.student(views)  # [n_views B, out_dim], [n_views B, D]
        dino = self.dino_loss(student_logits, teacher_logits, temperature=teacher_temp)
        loss = dino
        koleo = torch.zeros(())
        if self.koleo_loss is not None:
            koleo = sum(self.koleo_loss(chunk) for chunk in features[: 2 * batch].chunk(2))
            loss = loss + self.koleo_weight * koleo
        loss.backward()
        return {"loss": float(loss.detach()), "dino": float(dino.detach()), "koleo": float(koleo.detach()),
                "teacher_temp": teacher_temp, "teacher_entropy": teacher_entropy,
                "feature_std": feature_std(features[: 2 * batch])}

    def clip_gradients(self, max_norm: float) -> None:
        """Clip the student's gradient norm to ``max_norm`` (0: no clipping)."""
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), max_norm)

    def cancel_last_layer_gradients(self) -> None:
        """Drop the prototypes' gradients, so that the optimiser step leaves them as they are."""
        for param in self.student.head.last_layer.parameters():
            param.grad = None

    def update_teacher(self, momentum: float) -> None:
        """``teacher = momentum * teacher + (1 - momentum) * student``."""
        ema_update(self.teacher, self.student, momentum)

    def param_groups(self) -> list[dict[str, Any]]:
        """The student's trainable parameters for the optimiser: weights decayed, biases and norms
        (one-dimensional parameters) in a second group with no weight decay."""
        decayed, plain = [], []
        for name, param in self.student.named_parameters():
            if not param.requires_grad:
                continue
            (plain if param.ndim <= 1 or name.endswith(".bias") else decayed).append(param)
        return [{"params": decayed}, {"params": plain, "weight_decay": 0.0}]

    def training_state(self) -> dict[str, Any]:
        """The checkpoint fields of the model: ``state_dict`` (the student), ``teacher`` and ``loss``
        (the DINO loss's centre)."""
        return {"state_dict": self.student.state_dict(), "teacher": self.teacher.state_dict(),
                "loss": self.dino_loss.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`training_state` recorded."""
        self.student.load_state_dict(state["state_dict"])
        self.teacher.load_state_dict(state["teacher"])
        self.dino_loss.load_state_dict(state["loss"])


def build_dino(cfg: PretrainConfig, registry: Any) -> DINO:
    """The :class:`DINO` model of ``[pretrain]``: backbone (:func:`build_backbone`), head and the
    registry's ``dino`` and ``koleo`` losses."""
    backbone = build_backbone(cfg, registry)
    head = DINOHead(int(backbone.feature_dim), cfg.out_dim, hidden_dim=cfg.head_hidden_dim,
                    bottleneck_dim=cfg.head_bottleneck_dim, n_layers=cfg.head_layers,
                    norm_last_layer=cfg.norm_last_layer)
    dino_loss = registry.losses.get("dino").build(
        out_dim=cfg.out_dim, n_global=2, student_temp=cfg.student_temp, teacher_temp=cfg.teacher_temp,
        warmup_teacher_temp=cfg.warmup_teacher_temp, warmup_teacher_temp_epochs=cfg.warmup_teacher_temp_epochs,
        center_momentum=cfg.center_momentum, centering=cfg.centering,
    )
    koleo_loss = registry.losses.get("koleo").build() if cfg.koleo_weight > 0 else None
    return DINO(backbone, head, dino_loss, koleo_loss=koleo_loss, koleo_weight=cfg.koleo_weight)


def build_optimizer(model: DINO, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW over :meth:`DINO.param_groups` at ``cfg.lr`` and ``cfg.weight_decay`` (the schedules
    then set both every step), with torch's fused kernel where torch has it (CPU and CUDA): one pass
    over each parameter instead of a dozen (``python -m bench.cpu_kernels``; bench/RESULTS.md)."""
    fused = next(model.student.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(model.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping the optimiser's own kernel choice (a checkpoint
    written before the fused kernel records none, and loading it would switch the kernel off)."""
    kernels = [(group.get("fused"), group.get("foreach")) for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, (fused, foreach) in zip(optimizer.param_groups, kernels):
        group["fused"], group["foreach"] = fused, foreach


# --- measurements --------------------------------------------------------------------------------


def feature_std(features: torch.Tensor) -> float:
    """The per-dimension standard deviation of ``features`` ``[N, D]`` across the batch, averaged over
    the dimensions: near 0 when every image gets the same feature."""
    if features.shape[0] < 2:
        return 0.0
    return float(features.detach().float().std(dim=0).mean())


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, *, k: int = 10, temperature: float = 0.07) -> float:
    """Leave-one-out weighted k-NN accuracy of ``features`` ``[N, D]`` with ``labels`` ``[N]``.

    DINO's k-NN protocol: cosine similarity, the ``k`` nearest other samples vote for their label with
    weight ``exp(similarity / temperature)``.
    """
    x = F.normalize(features.detach().float(), dim=-1)
    similarity = x @ x.T
    similarity.fill_diagonal_(-float("inf"))  # never one's own neighbour
    k = min(k, x.shape[0] - 1)
    top, index = similarity.topk(k, dim=1)
    n_classes = int(labels.max()) + 1
    votes = torch.zeros(x.shape[0], n_classes)
    votes.scatter_add_(1, labels[index], torch.exp(top / temperature))
    return float((votes.argmax(dim=1) == labels).float().mean())


class Probe:
    """k-NN accuracy of a backbone's features on held-out labelled synthetic crops.

    The crops are ``count`` synthetic ``kind`` crops (``"face"`` or ``"hand"``) drawn with ``seed``
    from index ``start`` on (pass the size of the training set, so that none was trained on), labelled
    with the face expression or hand shape that generated them
    (:func:`mska_core.synthetic.render.synthetic_label`), at ``size`` px without augmentation and
    normalised like the views.
    """

    def __init__(self, kind: str, count: int, size: int, seed: int, start: int = 0) -> None:
        from mska_core.data.crops import IMAGENET_MEAN, IMAGENET_STD
        from mska_core.synthetic.render import synthetic_crop, synthetic_label

        indices = range(start, start + count)
        images = torch.stack([synthetic_crop(kind, i, size, seed) for i in indices]).float() / 255.0
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.images = (images - mean) / std  # [count, 3, size, size]
        self.labels = torch.tensor([synthetic_label(kind, i, seed) for i in indices])

    @torch.no_grad()
    def features(self, backbone: nn.Module, batch_size: int = 64) -> torch.Tensor:
        """The backbone's features of the probe crops, ``[count, D]``, in eval mode."""
        was_training = backbone.training
        backbone.eval()
        device = next(backbone.parameters()).device
        try:
            return torch.cat([backbone(chunk.to(device)).float().cpu() for chunk in self.images.split(batch_size)])
        finally:
            backbone.train(was_training)

    def __call__(self, backbone: nn.Module) -> float:
        """The k-NN accuracy of ``backbone`` on the probe crops."""
        return knn_accuracy(self.features(backbone), self.labels)



# --- schedules -----------------------------------------------------------------------------------


@attrs.frozen
class ScheduledValues:
    """What the schedules give one optimiser step."""

    lr: float
    weight_decay: float
    momentum: float  # of the teacher's EMA
    teacher_temp: float
    freeze_last_layer: bool  # the prototypes keep their weights this step


@attrs.frozen
class Schedules:
    """Every value of a DINO run that changes with the global step, in one object: learning rate,
    weight decay, teacher momentum and teacher temperature, each a
    :class:`~mska_core.training.scaffold.CosineSchedule` over the whole run, and the steps during
    which the prototypes are frozen. :meth:`at` gives them all for one step.

    - learning rate: linear warm-up from 0 over ``warmup_epochs``, then a cosine to ``min_lr``;
    - weight decay: a cosine from ``weight_decay`` to ``weight_decay_end``;
    - teacher momentum: a cosine from ``momentum_teacher`` to 1;
    - teacher temperature: linear from ``warmup_teacher_temp`` to ``teacher_temp`` over
      ``warmup_teacher_temp_epochs`` (a fraction of an epoch allowed), then constant;
    - the prototypes (the head's last layer) do not move during the first ``freeze_last_layer_epochs``.
    """

    lr: CosineSchedule
    weight_decay: CosineSchedule
    momentum: CosineSchedule
    teacher_temp: CosineSchedule
    freeze_last_layer_steps: float = 0.0

    @classmethod
    def from_config(cls, cfg: PretrainConfig, steps_per_epoch: int) -> Schedules:
        total = cfg.epochs * steps_per_epoch
        return cls(
            lr=CosineSchedule(cfg.lr, cfg.min_lr, total, warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch))),
            weight_decay=CosineSchedule(cfg.weight_decay, cfg.weight_decay_end, total),
            momentum=CosineSchedule(cfg.momentum_teacher, 1.0, total),
            teacher_temp=CosineSchedule(cfg.teacher_temp, cfg.teacher_temp, total,
                                        warmup_steps=cfg.warmup_teacher_temp_epochs * steps_per_epoch,
                                        warmup_start=cfg.warmup_teacher_temp),
            freeze_last_layer_steps=cfg.freeze_last_layer_epochs * steps_per_epoch,
        )

    def at(self, step: int) -> ScheduledValues:
        """Every scheduled value of optimiser step ``step`` (0-based)."""
        return ScheduledValues(lr=self.lr(step), weight_decay=self.weight_decay(step), momentum=self.momentum(step),
                               teacher_temp=self.teacher_temp(step),
                               freeze_last_layer=step < self.freeze_last_layer_steps)


# --- the run -------------------------------------------------------------------------------------


@attrs.frozen
class PretrainResult:
    """What a pretraining run produced."""

    output_dir: Path
    checkpoint: Path
    metrics: Path
    stream: str
    epochs: int  # completed epochs
    global_step: int
    min_loss: float | None
    exported: tuple[Path, ...]
    skipped: tuple[str, ...]  # crop files that could not be decoded
    ignored: int  # files in the crop folders that are not png/jpg


def resolve_stream(name: str, registry: Any) -> str:
    """Check that ``name`` is a registered stream or weight group and return it."""
    valid = {spec.name for spec in registry.streams} | {spec.weight_group for spec in registry.streams}
    if name not in valid:
        from mska_core.registry import suggest

        raise ConfigError(
            f"pretrain.stream: {name!r} is neither a registered stream nor a weight group"
            f"{suggest(name, sorted(valid))}; valid: {', '.join(sorted(valid))}"
        )
    return name


def build_backbone(cfg: PretrainConfig, registry: Any) -> nn.Module:
    """The student's backbone: ``cfg.backbone`` through ``load_backbone`` or ``cfg.arch`` through
    ``build_arch``, at ``cfg.img_size``."""
    from mska_core.backbones import build_arch, load_backbone

    if cfg.backbone:
        return load_backbone(cfg.backbone, img_size=cfg.img_size, registry=registry)
    options: dict[str, Any] = {"img_size": cfg.img_size}
    if cfg.layer_scale_init is not None:
        options["init_values"] = cfg.layer_scale_init
    return build_arch(cfg.arch, registry=registry, **options)


def local_size(cfg: PretrainConfig, backbone: nn.Module) -> int:
    """``cfg.local_img_size``, or about 0.44 of the global size rounded to the backbone's patch size."""
    if cfg.local_img_size is not None:
        return cfg.local_img_size
    patch = int((getattr(backbone, "arch_config", None) or {}).get("patch_size", 14))
    return patch * max(1, round(cfg.img_size * LOCAL_TO_GLOBAL / patch))


def crop_source(cfg: PretrainConfig, seed: int, sprite: str | None) -> Any:
    """The crop folders of ``cfg.train_dirs``, else synthetic ``sprite`` crops (the stream's
    ``render_as``, see :func:`synthetic_sprite`)."""
    from mska_core.data.crops import CropFolder
    from mska_core.synthetic.crops import SyntheticCrops

    if cfg.train_dirs:
        return CropFolder(cfg.train_dirs)
    return SyntheticCrops(sprite, cfg.synthetic_images, cfg.img_size, seed)


def synthetic_sprite(cfg: PretrainConfig, stream: str, registry: Any) -> str | None:
    """The sprite of ``stream`` (:func:`mska_core.synthetic.crops.sprite_for`), checked before anything
    is written: pretraining without ``--train-dir`` needs one."""
    from mska_core.synthetic.crops import sprite_for

    found = sprite_for(stream, registry)
    if found is None and not cfg.train_dirs:
        raise ConfigError(
            f"pretrain.stream: {stream!r} declares no crop region with a sprite (render_as) to draw "
            "synthetic crops from; give --train-dir, a folder of crops"
        )
    return found


def make_probe(cfg: PretrainConfig, sprite: str | None, seed: int) -> Probe | None:
    """The k-NN probe of a run: ``cfg.probe_images`` held-out synthetic ``sprite`` crops (from index
    ``cfg.synthetic_images`` on, so never a training crop), or ``None`` when ``probe_every`` is 0 or the
    stream has no sprite."""
    if cfg.probe_every <= 0 or cfg.probe_images < 2 or sprite is None:
        return None
    return Probe(sprite, cfg.probe_images, cfg.img_size, seed, start=cfg.synthetic_images)



@attrs.frozen
class CropData:
    """The multi-crop training data of a run: crop source, augmentation, dataset, sampler and loader."""

    source: Any
    augment: Any
    dataset: Any
    sampler: Any
    loader: Any

    @classmethod
    def build(cls, cfg: PretrainConfig, seed: int, sprite: str | None, backbone: nn.Module) -> CropData:
        from torch.utils.data import DataLoader

        from mska_core.data.crops import EpochShuffle, MultiCrop, MultiCropDataset, collate_views

        source = crop_source(cfg, seed, sprite)
        augment = MultiCrop(global_size=cfg.img_size, local_size=local_size(cfg, backbone),
                            local_crops=cfg.local_crops, global_scale=cfg.global_crop_scale,
                            local_scale=cfg.local_crop_scale, jitter=cfg.color_jitter, grayscale=cfg.grayscale)
        dataset = MultiCropDataset(source, augment, seed)
        sampler = EpochShuffle(len(dataset), seed)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_views,
                            num_workers=cfg.num_workers, drop_last=len(dataset) >= cfg.batch_size)
        return cls(source, augment, dataset, sampler, loader)

    def set_epoch(self, epoch: int) -> None:
        """The order and the augmentation of ``epoch`` (both drawn from the seed and the epoch)."""
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)


@attrs.define
class EpochMeter:
    """What one epoch's steps measured, for its summary record."""

    losses: list[float] = attrs.Factory(list)
    entropies: list[float] = attrs.Factory(list)
    feature_stds: list[float] = attrs.Factory(list)
    images: int = 0
    data_s: float = 0.0
    step_s: float = 0.0

    def add(self, parts: dict[str, float], images: int, data_s: float, step_s: float) -> None:
        self.losses.append(parts["loss"])
        self.entropies.append(parts["teacher_entropy"])
        self.feature_stds.append(parts["feature_std"])
        self.images += images
        self.data_s += data_s
        self.step_s += step_s

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.data_s + self.step_s, 1e-9)

    def summary(self, epoch: int, step: int, min_loss: float | None, skipped: int) -> dict[str, Any]:
        """The epoch's ``"summary": true`` record; ``min_loss`` is the lowest epoch loss before it."""
        loss = _mean(self.losses) if self.losses else 0.0
        return {"epoch": epoch + 1, "step": step, "summary": True, "loss": loss,
                "min_loss": loss if min_loss is None else min(min_loss, loss), "images_per_s": self.images_per_s,
                "data_s": self.data_s, "step_s": self.step_s, "skipped": skipped,
                "teacher_entropy": _mean(self.entropies), "feature_std": _mean(self.feature_stds)}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


#: What ``--resume`` reads from ``checkpoint.pt``.
RESUME_KEYS = ("state_dict", "teacher", "loss", "optimizer", "rng", "epoch", "global_step", "min_loss", "config")


def pretrain(config: Config, *, registry: Any = None, console: Any = None, extend: bool = False) -> PretrainResult:
    """Run DINO pretraining as ``config.pretrain`` says; see the module docstring.

    The output folder is locked while the run writes it; a folder that holds a checkpoint is refused
    unless ``pretrain.resume`` is set, and a resume whose config differs incompatibly from the stored
    one is refused (``extend=True`` lets ``pretrain.epochs`` grow). ``registry`` supplies the
    architectures, losses and checkpoint formats, and its plugins are recorded in every checkpoint
    and export; the process-wide one when none is given (this is a Python entry point, as
    ``mska pretrain`` is).
    """
    from mska_core.checkpoints import make_payload, save_checkpoint
    from mska_core.registry import get_registry, registry_for
    from mska_core.training import distributed
    from mska_core.training.runfolder import RunFolder

    registry = registry_for(config.plugins, registry if registry is not None else get_registry())
    cfg, seed = config.pretrain, config.run.seed
    stream = resolve_stream(cfg.stream, registry)
    sprite = synthetic_sprite(cfg, stream, registry)
    _, device = distributed.setup(config.run.device, single_process="mska pretrain")
    say = console.print if console is not None else (lambda text: None)
    files = RunFiles(cfg.output_dir, state_name=PRETRAIN_STATE)
    output_dir, checkpoint_path = files.folder, files.state
    with RunFolder(files, loop="pretrain") as folder:
        # pretrain.resume may stay set in a config that is run again: with nothing to resume, it starts
        resuming = folder.open(resume=cfg.resume, missing_ok=True)
        state = None
        if resuming:
            state = folder.read_state(RESUME_KEYS, unstructure(config), registry=registry, extend=extend)
        seed_everything(seed)

        # set-up: model, data, schedules, optimiser, records
        model = build_dino(cfg, registry).to(device)
        data = CropData.build(cfg, seed, sprite, model.student.backbone)
        steps_per_epoch = len(data.loader)
        schedules = Schedules.from_config(cfg, steps_per_epoch)
        optimizer = build_optimizer(model, cfg)
        metrics = MetricsLog(files.metrics)
        save_config(config, files.config)  # after the set-up: a refused one writes nothing
        start_epoch, global_step, min_loss, skipped = 0, 0, None, set()
        if state is not None:
            model.load_training_state(state)
            load_optimizer_state(optimizer, state["optimizer"])
            set_rng_state(state["rng"])
            start_epoch, global_step, min_loss = int(state["epoch"]), int(state["global_step"]), state["min_loss"]
            skipped.update(state.get("skipped", []))
            metrics.resume(global_step)
            say(f"resuming from {checkpoint_path} after epoch {start_epoch} (step {global_step})")
        elif cfg.resume:
            say(f"no {checkpoint_path} to resume from; starting a new run")
        backbone = model.student.backbone
        arch = getattr(backbone, "arch", None) or cfg.arch
        arch_config = dict(getattr(backbone, "arch_config", None) or {})
        say(f"DINO pretraining of stream [bold]{stream}[/bold]: {arch} at {cfg.img_size} px "
            f"(+{cfg.local_crops} local crops of {data.augment.local_size} px), {data.source.describe()}, "
            f"batch {cfg.batch_size}, {steps_per_epoch} steps per epoch, {cfg.epochs} epochs, on {device}")
        probe = make_probe(cfg, sprite, seed)
        probe_init = None  # the initial backbone's figure, recorded with the first epoch's summary
        if probe is not None and start_epoch == 0 and global_step == 0:
            probe_init = probe(model.teacher.backbone)
            say(f"k-NN probe of the initial backbone on {len(probe.labels)} held-out synthetic {sprite} "
                f"crops: {probe_init:.3f}")

        # the loop
        from mska_core.training.trackers import Trackers

        trackers = Trackers(config.run.loggers, output_dir, config, registry)
        display = ProgressDisplay(console, enabled=cfg.progress, transient=False)
        display.begin("pretrain", cfg.epochs * steps_per_epoch, completed=global_step)
        probe_shown, stopped = "-", False
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if cfg.max_steps is not None and global_step >= cfg.max_steps:
                    stopped = True
                    break
                data.set_epoch(epoch)
                model.train()
                meter = EpochMeter()
                tick = time.perf_counter()
                for index, (views, batch_skipped) in enumerate(data.loader):
                    loaded = time.perf_counter()
                    skipped.update(batch_skipped)
                    views = [v.to(device, non_blocking=True) for v in views]
                    scheduled = schedules.at(global_step)
                    apply_schedules(optimizer, scheduled.lr, scheduled.weight_decay)
                    optimizer.zero_grad(set_to_none=True)
                    parts = model.forward_backward(views, scheduled.teacher_temp)
                    if not math.isfinite(parts["loss"]):
                        raise MskaError(
                            f"pretraining diverged at epoch {epoch + 1}, step {global_step + 1} (loss "
                            f"{parts['loss']}); lower pretrain.lr or raise pretrain.warmup_epochs"
                        )
                    model.clip_gradients(cfg.grad_clip)
                    if scheduled.freeze_last_layer:
                        model.cancel_last_layer_gradients()
                    optimizer.step()
                    model.update_teacher(scheduled.momentum)
                    global_step += 1

                    done = time.perf_counter()
                    meter.add(parts, views[0].shape[0], loaded - tick, done - loaded)
                    record = {"epoch": epoch + 1, "step": global_step, "loss": parts["loss"],
                                    "dino": parts["dino"], "koleo": parts["koleo"], "lr": scheduled.lr,
                                    "weight_decay": scheduled.weight_decay, "momentum": scheduled.momentum,
                                    "teacher_temp": parts["teacher_temp"],
                                    "teacher_entropy": parts["teacher_entropy"],
                                    "feature_std": parts["feature_std"]}
                    metrics.append(record)
                    trackers.log(record, global_step)
                    display.advance(f"loss {parts['loss']:.4f}  teacher H {parts['teacher_entropy']:.2f}  "
                                    f"lr {scheduled.lr:.2e}  {views[0].shape[0] / max(done - tick, 1e-9):.1f} img/s  "
                                    f"probe {probe_shown}", description=f"epoch {epoch + 1}/{cfg.epochs}")
                    tick = time.perf_counter()
                    if cfg.max_steps is not None and global_step >= cfg.max_steps and index + 1 < steps_per_epoch:
                        stopped = True
                        break
                if stopped:  # a partial epoch is neither summarised nor checkpointed
                    break

                summary = meter.summary(epoch, global_step, min_loss, len(skipped))
                min_loss = summary["min_loss"]
                if probe is not None and ((epoch + 1) % cfg.probe_every == 0 or epoch + 1 == cfg.epochs):
                    summary["probe"] = probe(model.teacher.backbone)
                    if probe_init is not None:
                        summary["probe_init"], probe_init = probe_init, None
                    probe_shown = f"{summary['probe']:.3f}"
                metrics.append(summary)
                metrics.sync()
                trackers.log(summary, global_step)
                save_checkpoint(make_payload(
                    "training-state", stream=stream, arch=arch, arch_config=arch_config, min_loss=min_loss,
                    epoch=epoch + 1, global_step=global_step, config=unstructure(config),
                    optimizer=optimizer.state_dict(), rng=rng_state(), skipped=sorted(skipped),
                    registry=registry, **model.training_state(),
                ), checkpoint_path, registry=registry)
                measured = f"  probe {summary['probe']:.3f}" if "probe" in summary else ""
                say(f"epoch {epoch + 1}/{cfg.epochs}  loss {summary['loss']:.4f}  min {min_loss:.4f}  "
                    f"teacher H {summary['teacher_entropy']:.2f}/{math.log(cfg.out_dim):.2f}{measured}  "
                    f"{meter.images_per_s:.1f} img/s  (data {meter.data_s:.1f}s, step {meter.step_s:.1f}s)")
        finally:
            display.close()
            trackers.close()
        if stopped:
            metrics.flush()
            say(f"stopped after step {global_step} (pretrain.max_steps)")
        if skipped:
            from mska_core.io import atomic_write_bytes

            atomic_write_bytes(files.skipped, "".join(f"{p}\n" for p in sorted(skipped)).encode())

        # exports: the teacher's backbone
        completed = min(cfg.epochs, max(start_epoch, global_step // max(steps_per_epoch, 1)))
        exported = export(model.teacher.backbone, cfg, registry=registry, file_format=config.run.format,
                          stream=stream, arch=arch, arch_config=arch_config,
                          min_loss=min_loss, epoch=completed, global_step=global_step, config=unstructure(config))
    return PretrainResult(output_dir=output_dir, checkpoint=checkpoint_path, metrics=metrics.path, stream=stream,
                          epochs=completed, global_step=global_step, min_loss=min_loss, exported=tuple(exported),
                          skipped=tuple(sorted(skipped)), ignored=len(getattr(data.source, "ignored", ())))


def apply_schedules(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Set every group's learning rate, and the weight decay of the first (decayed) group."""
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = lr
        if i == 0:
            group["weight_decay"] = weight_decay


def export(backbone: nn.Module, cfg: PretrainConfig, *, registry: Any, file_format: str = "mska",
           **fields: Any) -> list[Path]:
    """Write the teacher's ``backbone`` as ``--export-checkpoint`` (a stream-encoder payload) and
    ``--export-backbone`` (a backbone payload) ask, recording the plugins of ``registry`` and the
    identity of the streams the export is for; the paths written. The default export name takes the
    suffix and format of ``file_format`` (``[run] format``); a path given keeps the format its suffix
    names."""
    from mska_core.checkpoints import make_payload, output_suffix, save_checkpoint
    from mska_core.config.identity import stream_identity

    stream = fields.get("stream")
    fields["providers"] = {"streams": {spec.name: stream_identity(spec) for spec in registry.streams
                                       if stream in (spec.name, spec.weight_group)}}
    state_dict = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    exported: list[Path] = []
    output_path = export_path(cfg, suffix=output_suffix(file_format, registry=registry))
    if output_path is not None:
        written_as = None if cfg.output_path else file_format  # a path given: the format of its suffix
        exported.append(save_checkpoint(make_payload("stream-encoder", state_dict, registry=registry, **fields),
                                        output_path, format=written_as, registry=registry))
    if cfg.export_backbone:
        exported.append(save_checkpoint(make_payload("backbone", state_dict, registry=registry, **fields),
                                        Path(cfg.export_backbone), registry=registry))
    return exported



def export_path(cfg: PretrainConfig, suffix: str = ".pt") -> Path | None:
    """Where ``--export-checkpoint`` writes: ``output_path``, else ``<output_dir>/encoder_<stream>``
    with ``suffix`` (that of ``[run] format``); ``None`` when no stream-encoder export was asked for
    (``output_path`` alone asks for one)."""
    if cfg.output_path:
        return Path(cfg.output_path)
    if cfg.export_checkpoint:
        return Path(cfg.output_dir) / f"encoder_{cfg.stream}{suffix}"
    return None

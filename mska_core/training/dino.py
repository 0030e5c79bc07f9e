"""DINO pretraining of a crop encoder for one stream (``mska pretrain``).

The pieces read top-down: the DINO head, the student/teacher wrapper that runs a backbone over the
multi-crop views, the schedules, and :func:`pretrain`, the loop with its records.

- Student and teacher share one architecture: a backbone from the registry's archs
  (``build_arch(arch, img_size=...)``) or from a spec (``load_backbone``), plus a DINO head whose
  prototype layer is weight-normalised. The teacher is an exponential moving average of the student;
  its momentum rises from ``momentum_teacher`` to 1 on a cosine.
- The learning rate warms up linearly for ``warmup_epochs`` and then follows a cosine down to
  ``min_lr``; weight decay follows a cosine from ``weight_decay`` to ``weight_decay_end`` (biases and
  norms are never decayed); gradients are clipped to ``grad_clip``; the prototypes are frozen for the
  first ``freeze_last_layer_epochs``. All schedules are functions of the global step.
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
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mska_core.config import Config, PretrainConfig, save_config, unstructure
from mska_core.errors import ConfigError, MskaError

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SKIPPED_NAME = "skipped.txt"
CONFIG_NAME = "config.toml"

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
    """A backbone and a DINO head over a list of views; views of one size run as one batch.

    ``forward(views) -> (logits [n_views * B, out_dim], features [n_views * B, D])``.
    """

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = []
        start = 0
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


def cosine(start: float, end: float, step: int, total: int) -> float:
    """A half cosine from ``start`` (step 0) to ``end`` (step ``total``)."""
    if total <= 0:
        return end
    progress = min(max(step / total, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


@attrs.frozen
class Schedules:
    """Learning rate, weight decay and teacher momentum as functions of the global step."""

    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    weight_decay_end: float
    momentum: float
    total_steps: int

    @classmethod
    def from_config(cls, cfg: PretrainConfig, steps_per_epoch: int) -> Schedules:
        return cls(lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)),
                   weight_decay=cfg.weight_decay, weight_decay_end=cfg.weight_decay_end,
                   momentum=cfg.momentum_teacher, total_steps=cfg.epochs * steps_per_epoch)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * step / self.warmup_steps
        return cosine(self.lr, self.min_lr, step - self.warmup_steps, self.total_steps - self.warmup_steps)

    def weight_decay_at(self, step: int) -> float:
        return cosine(self.weight_decay, self.weight_decay_end, step, self.total_steps)

    def momentum_at(self, step: int) -> float:
        return cosine(self.momentum, 1.0, step, self.total_steps)


# --- state that survives --resume ----------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The random generators' states as plain data (tensors, lists, numbers, strings)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": [version, list(words), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _param_groups(model: nn.Module) -> list[dict[str, Any]]:
    decayed, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (plain if param.ndim <= 1 or name.endswith(".bias") else decayed).append(param)
    return [{"params": decayed}, {"params": plain, "weight_decay": 0.0}]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _read_metrics(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    from mska_core.io import read_jsonl

    return [r for r in read_jsonl(path) if isinstance(r, dict) and r.get("step", 0) <= up_to_step]


#: What ``--resume`` reads from ``checkpoint.pt``.
RESUME_KEYS = ("state_dict", "teacher", "loss", "optimizer", "rng", "epoch", "global_step", "min_loss", "config")


def _write_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    from mska_core.io import atomic_write_bytes

    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


class _Reporter:
    """The rich progress bar (on a terminal) and one line per epoch."""

    def __init__(self, console: Any, enabled: bool, total: int, completed: int) -> None:
        self.console = console
        self.progress = None
        if enabled and console is not None and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  teacher H {task.fields[entropy]}  lr {task.fields[lr]}  "
                           "{task.fields[speed]} img/s  probe {task.fields[probe]}"),
                TimeRemainingColumn(), console=console, transient=False,
            )
            self.task = self.progress.add_task("pretrain", total=total, completed=completed,
                                               loss="-", entropy="-", lr="-", speed="-", probe="-")
            self.progress.start()

    def step(self, epoch: int, epochs: int, loss: float, teacher_entropy: float, lr: float, speed: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=f"epoch {epoch + 1}/{epochs}",
                                 loss=f"{loss:.4f}", entropy=f"{teacher_entropy:.2f}", lr=f"{lr:.2e}",
                                 speed=f"{speed:.1f}")

    def probe(self, accuracy: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, probe=f"{accuracy:.3f}")

    def line(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def pretrain(config: Config, *, registry: Any = None, console: Any = None, extend: bool = False) -> PretrainResult:
    """Run DINO pretraining as ``config.pretrain`` says; see the module docstring.

    The output folder is locked while the run writes it; a folder that holds a checkpoint is refused
    unless ``pretrain.resume`` is set, and a resume whose config differs incompatibly from the stored
    one is refused (``extend=True`` lets ``pretrain.epochs`` grow).
    """
    from torch.utils.data import DataLoader

    from mska_core.checkpoints import make_payload, safe_torch_load, save_checkpoint
    from mska_core.data.crops import EpochShuffle, MultiCrop, MultiCropDataset, collate_views
    from mska_core.losses.dino import entropy

    from mska_core.registry import registry_for
    from mska_core.training import runfolder

    registry = registry_for(config.plugins, registry)
    cfg = config.pretrain
    stream = resolve_stream(cfg.stream, registry)
    sprite = synthetic_sprite(cfg, stream, registry)
    seed = config.run.seed
    device = _device(config.run.device)
    output_dir = Path(cfg.output_dir)
    lock = runfolder.RunFolderLock(output_dir).acquire()
    checkpoint_path = output_dir / CHECKPOINT_NAME
    metrics_path = output_dir / METRICS_NAME
    runfolder.check_start(output_dir, checkpoint_path, resume=cfg.resume)
    state = None
    if cfg.resume and checkpoint_path.exists():
        state = safe_torch_load(checkpoint_path)
        if not isinstance(state, dict):
            raise MskaError(f"{checkpoint_path}: holds a {type(state).__name__}, not a pretraining state")
        runfolder.require_keys(state, RESUME_KEYS, checkpoint_path)
        from mska_core.training.loop import stored_config

        runfolder.check_resume(stored_config(state["config"]), unstructure(config), loop="pretrain",
                               source=checkpoint_path, extend=extend)
    save_config(config, output_dir / CONFIG_NAME)
    seed_everything(seed)

    # model: student and EMA teacher
    backbone = build_backbone(cfg, registry)
    head = DINOHead(int(backbone.feature_dim), cfg.out_dim, hidden_dim=cfg.head_hidden_dim,
                    bottleneck_dim=cfg.head_bottleneck_dim, n_layers=cfg.head_layers,
                    norm_last_layer=cfg.norm_last_layer)
    student = MultiCropModel(backbone, head).to(device)
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.eval()
    arch = getattr(backbone, "arch", None) or cfg.arch
    arch_config = dict(getattr(backbone, "arch_config", None) or {})

    # data
    source = crop_source(cfg, seed, sprite)
    augment = MultiCrop(global_size=cfg.img_size, local_size=local_size(cfg, backbone), local_crops=cfg.local_crops,
                        global_scale=cfg.global_crop_scale, local_scale=cfg.local_crop_scale,
                        jitter=cfg.color_jitter, grayscale=cfg.grayscale)
    dataset = MultiCropDataset(source, augment, seed)
    sampler = EpochShuffle(len(dataset), seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_views,
                        num_workers=cfg.num_workers, drop_last=len(dataset) >= cfg.batch_size)
    steps_per_epoch = len(loader)
    schedules = Schedules.from_config(cfg, steps_per_epoch)

    # losses and optimiser
    dino_loss = registry.losses.get("dino").build(
        out_dim=cfg.out_dim, n_global=2, student_temp=cfg.student_temp, teacher_temp=cfg.teacher_temp,
        warmup_teacher_temp=cfg.warmup_teacher_temp, warmup_teacher_temp_epochs=cfg.warmup_teacher_temp_epochs,
        center_momentum=cfg.center_momentum, centering=cfg.centering,
    ).to(device)
    koleo_loss = registry.losses.get("koleo").build() if cfg.koleo_weight > 0 else None
    optimizer = torch.optim.AdamW(_param_groups(student), lr=cfg.lr, weight_decay=cfg.weight_decay)
    last_layer = list(student.head.last_layer.parameters())

    start_epoch, global_step, min_loss = 0, 0, None
    history: list[dict[str, Any]] = []
    skipped: set[str] = set()
    reporter_console = console
    if state is not None:
        student.load_state_dict(state["state_dict"])
        teacher.load_state_dict(state["teacher"])
        dino_loss.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_epoch, global_step, min_loss = int(state["epoch"]), int(state["global_step"]), state["min_loss"]
        skipped.update(state.get("skipped", []))
        history = _read_metrics(metrics_path, global_step)
        if console is not None:
            console.print(f"resuming from {checkpoint_path} after epoch {start_epoch} (step {global_step})")
    elif cfg.resume and console is not None:
        console.print(f"no {checkpoint_path} to resume from; starting a new run")

    if console is not None:
        console.print(
            f"DINO pretraining of stream [bold]{stream}[/bold]: {arch} at {cfg.img_size} px "
            f"(+{cfg.local_crops} local crops of {augment.local_size} px), {source.describe()}, "
            f"batch {cfg.batch_size}, {steps_per_epoch} steps per epoch, {cfg.epochs} epochs, on {device}"
        )
    probe = make_probe(cfg, sprite, seed)
    probe_init = None  # the initial backbone's figure, recorded with the first epoch
    if probe is not None and start_epoch == 0 and global_step == 0:
        probe_init = probe(teacher.backbone)
        if console is not None:
            console.print(f"k-NN probe of the initial backbone on {len(probe.labels)} held-out synthetic "
                          f"{sprite} crops: {probe_init:.3f}")
    reporter = _Reporter(reporter_console, cfg.progress, cfg.epochs * steps_per_epoch, global_step)
    stopped = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if cfg.max_steps is not None and global_step >= cfg.max_steps:
                stopped = True
                break
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            student.train()
            epoch_losses: list[float] = []
            data_time = step_time = 0.0
            images = 0
            tick = time.perf_counter()
            for index, (views, batch_skipped) in enumerate(loader):
                loaded = time.perf_counter()
                skipped.update(batch_skipped)
                views = [v.to(device, non_blocking=True) for v in views]
                progress = epoch + index / steps_per_epoch
                lr, weight_decay = schedules.lr_at(global_step), schedules.weight_decay_at(global_step)
                for i, group in enumerate(optimizer.param_groups):
                    group["lr"] = lr
                    if i == 0:
                        group["weight_decay"] = weight_decay
                with torch.no_grad():
                    teacher_logits, _ = teacher(views[:2])
                    teacher_entropy = float(entropy(dino_loss.teacher_probabilities(teacher_logits, progress)))
                student_logits, features = student(views)
                dino_value = dino_loss(student_logits, teacher_logits, progress)
                loss = dino_value
                koleo_value = torch.zeros(())
                if koleo_loss is not None:
                    batch = views[0].shape[0]
                    koleo_value = sum(koleo_loss(chunk) for chunk in features[: 2 * batch].chunk(2))
                    loss = loss + cfg.koleo_weight * koleo_value
                if not torch.isfinite(loss):
                    raise MskaError(
                        f"pretraining diverged at epoch {epoch + 1}, step {global_step + 1} (loss {loss.item()}); "
                        "lower pretrain.lr or raise pretrain.warmup_epochs"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
                if progress < cfg.freeze_last_layer_epochs:
                    for param in last_layer:
                        param.grad = None
                optimizer.step()
                momentum = schedules.momentum_at(global_step)
                ema_update(teacher, student, momentum)
                global_step += 1
                done = time.perf_counter()
                data_time += loaded - tick
                step_time += done - loaded
                images += views[0].shape[0]
                loss_value = float(loss.detach())
                epoch_losses.append(loss_value)
                history.append({
                    "epoch": epoch + 1, "step": global_step, "loss": loss_value,
                    "dino": float(dino_value.detach()), "koleo": float(koleo_value.detach() if torch.is_tensor(koleo_value) else koleo_value),
                    "lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                    "teacher_temp": dino_loss.teacher_temperature(progress),
                    "teacher_entropy": teacher_entropy, "feature_std": feature_std(features[: 2 * views[0].shape[0]]),
                })
                reporter.step(epoch, cfg.epochs, loss_value, teacher_entropy, lr,
                              views[0].shape[0] / max(done - tick, 1e-9))
                tick = time.perf_counter()
                if cfg.max_steps is not None and global_step >= cfg.max_steps:
                    stopped = True
                    break
            if stopped:  # a partial epoch is neither summarised nor checkpointed
                break
            mean_loss = sum(epoch_losses) / max(len(epoch_losses), 1)
            min_loss = mean_loss if min_loss is None else min(min_loss, mean_loss)
            epoch_steps = [r for r in history if r["epoch"] == epoch + 1 and not r.get("summary")]
            summary: dict[str, Any] = {
                "epoch": epoch + 1, "step": global_step, "summary": True, "loss": mean_loss,
                "min_loss": min_loss, "images_per_s": images / max(data_time + step_time, 1e-9),
                "data_s": data_time, "step_s": step_time, "skipped": len(skipped),
                "teacher_entropy": _mean(r["teacher_entropy"] for r in epoch_steps),
                "feature_std": _mean(r["feature_std"] for r in epoch_steps),
            }
            measured = ""
            if probe is not None and ((epoch + 1) % cfg.probe_every == 0 or epoch + 1 == cfg.epochs):
                summary["probe"] = probe(teacher.backbone)
                if probe_init is not None:
                    summary["probe_init"], probe_init = probe_init, None
                reporter.probe(summary["probe"])
                measured = f"  probe {summary['probe']:.3f}"
            history.append(summary)
            _write_metrics(metrics_path, history)
            save_checkpoint(make_payload(
                "training-state", student.state_dict(), stream=stream, arch=arch, arch_config=arch_config,
                min_loss=min_loss, epoch=epoch + 1, global_step=global_step, config=unstructure(config),
                teacher=teacher.state_dict(), loss=dino_loss.state_dict(), optimizer=optimizer.state_dict(),
                rng=rng_state(), skipped=sorted(skipped),
            ), checkpoint_path)
            reporter.line(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {mean_loss:.4f}  min {min_loss:.4f}  "
                f"teacher H {summary['teacher_entropy']:.2f}/{math.log(cfg.out_dim):.2f}{measured}  "
                f"{images / max(data_time + step_time, 1e-9):.1f} img/s  (data {data_time:.1f}s, step {step_time:.1f}s)"
            )
    finally:
        reporter.close()
    if stopped:
        _write_metrics(metrics_path, history)
        reporter.line(f"stopped after step {global_step} (pretrain.max_steps)")
    if skipped:
        from mska_core.io import atomic_write_bytes

        atomic_write_bytes(output_dir / SKIPPED_NAME, "".join(f"{p}\n" for p in sorted(skipped)).encode())

    # exports: the teacher's backbone
    completed = min(cfg.epochs, max(start_epoch, global_step // max(steps_per_epoch, 1)))
    exported: list[Path] = []
    state_dict = {k: v.detach().cpu().clone() for k, v in teacher.backbone.state_dict().items()}
    common = dict(stream=stream, arch=arch, arch_config=arch_config, min_loss=min_loss, epoch=completed,
                  global_step=global_step, config=unstructure(config))
    output_path = export_path(cfg)
    if output_path is not None:
        exported.append(save_checkpoint(make_payload("stream-encoder", state_dict, **common), output_path))
    if cfg.export_backbone:
        exported.append(save_checkpoint(make_payload("backbone", state_dict, **common), Path(cfg.export_backbone)))
    ignored = len(getattr(source, "ignored", ()))
    lock.release()
    return PretrainResult(output_dir=output_dir, checkpoint=checkpoint_path, metrics=metrics_path, stream=stream,
                          epochs=completed, global_step=global_step, min_loss=min_loss, exported=tuple(exported),
                          skipped=tuple(sorted(skipped)), ignored=ignored)


def export_path(cfg: PretrainConfig) -> Path | None:
    """Where ``--export-checkpoint`` writes: ``output_path``, else ``<output_dir>/encoder_<stream>.pt``;
    ``None`` when no stream-encoder export was asked for (``output_path`` alone asks for one)."""
    if cfg.output_path:
        return Path(cfg.output_path)
    if cfg.export_checkpoint:
        return Path(cfg.output_dir) / f"encoder_{cfg.stream}.pt"
    return None

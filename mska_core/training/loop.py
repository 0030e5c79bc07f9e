"""The fine-tuning loop behind ``mska train``.

One run lives in ``[run] output_dir / [run] name``:

- ``config.toml``: the resolved configuration;
- ``metrics.jsonl``: one JSON record per logged step (``"kind": "train"``: every loss component by
  name, the total, the learning rate, clips/s) and per evaluation (``"kind": "eval"``);
- ``last.pt``: kind ``training-state`` (model, optimizer, RNG, position in the data, best dev score,
  the gradient scaler under ``[train] amp = "fp16"``),
  written atomically every ``train.checkpoint_every`` steps and after every epoch;
- ``best.pt``: kind ``model``, the weights with the best dev score (WER of the ensemble, or BLEU-4
  when no CTC loss is trained), with the resolved config, the gloss vocabulary, the text decoder
  (``text_decoder``: its name, head, memory and ``artifacts()``) and the dev metrics inside.

A gloss-free corpus (no clip of the training split has a gloss) trains translation only: CTC and
distillation must then be off (``weight = 0``; otherwise the run is refused in one line), WER is not
applicable (no ``wer`` keys; the display says ``dev WER n/a``), ``best.pt`` is chosen by BLEU-4, and
the decoder reads every frame (``memory`` defaults to ``"frames"`` without a CTC loss).

``[run] format`` chooses the checkpoint format ``best`` and ``last`` are written in (and read back by
``--resume``); their suffix is the format's (``best.safetensors`` for ``safetensors``).

Exact resume: the order of an epoch comes from a generator seeded by (seed, epoch), every clip's
augmentation from one seeded by (seed, epoch, clip), and every global random generator (Python,
NumPy, torch, CUDA; dropout draws from torch's) is saved in ``last.pt``. ``--resume`` therefore
continues with exactly the records and weights of an uninterrupted run.

The run folder (its file names, :mod:`mska_core.run_files`; its lock, start check and the state a
resume reads, :class:`~mska_core.training.runfolder.RunFolder`), seeding and random state, the
learning-rate schedule, ``metrics.jsonl``, the progress bar and the device come from the training
scaffold that DINO pretraining stands on too (:mod:`~mska_core.training.scaffold`,
:mod:`~mska_core.training.runfolder`, :mod:`~mska_core.training.distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from mska_core.config.loader import unstructure
from mska_core.errors import ConfigError
from mska_core.run_files import RunFiles
from mska_core.training.parts import freeze_parts, make_optimizer, set_learning_rates
from mska_core.training.precision import autocast, grad_scaler
from mska_core.training.runfolder import RunFolder
from mska_core.training.scaffold import (
    CosineSchedule,
    MetricsLog,
    ProgressDisplay,
    rng_state,
    seed_everything,
    set_rng_state,
)


@attrs.frozen
class TrainResult:
    """What a finished (or stopped) run left behind."""

    run_dir: Path
    last: Path
    best: Path | None
    best_metrics: dict[str, Any]
    global_step: int
    epoch: int
    seconds: float


def run_dir_of(config: Any) -> Path:
    return Path(config.run.output_dir) / config.run.name


def build_losses(config: Any, registry: Any) -> dict[str, tuple[nn.Module, float]]:
    """The ``[losses]`` table through the registry: ``{name: (module, weight)}``, zero weights left out."""
    losses: dict[str, tuple[nn.Module, float]] = {}
    for name, loss_cfg in config.losses.items():
        if loss_cfg.weight == 0:
            continue
        spec = registry.losses.get(name)
        try:
            module = spec.build(**loss_cfg.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"losses.{name}: {exc} (loss supplied by {spec.provider})") from None
        losses[name] = (module, float(loss_cfg.weight))
    if not losses:
        raise ConfigError("losses: every loss has weight 0; give at least one loss, e.g. [losses.ctc]")
    return losses


def lr_schedule(optim_cfg: Any, total_steps: int, *, steps_per_epoch: int = 1, epochs: int = 1) -> CosineSchedule:
    """The learning rate of each optimiser step (0-based) of ``total_steps``, as ``[optim]`` says.

    Linear warm-up to ``lr`` over ``warmup_steps`` (the first step already at ``lr / warmup_steps``),
    then ``schedule``: ``"cosine"`` decays to ``min_lr`` over the remaining steps; ``"cosine-epoch"`` is
    the MSKA reference's ``CosineAnnealingLR`` stepped at the start of every epoch, so epoch ``e``
    (0-based) trains at ``min_lr + (lr - min_lr) (1 + cos(pi (e + 1) / t_max)) / 2`` (``t_max``
    defaults to ``epochs``); ``"constant"`` keeps ``lr``.
    """
    per_epoch = optim_cfg.schedule == "cosine-epoch"
    return CosineSchedule(
        optim_cfg.lr, optim_cfg.lr if optim_cfg.schedule == "constant" else optim_cfg.min_lr, total_steps,
        warmup_steps=optim_cfg.warmup_steps, warmup_from_zero=False,
        steps_per_epoch=steps_per_epoch if per_epoch else None,
        period=(optim_cfg.t_max or epochs) if per_epoch else None,
    )


def crop_streams(config: Any) -> list[str]:
    """Streams that read crops: those with a backbone, when ``[data] crops`` is on."""
    if not config.data.crops:
        return []
    return [name for name, stream in config.model.streams.items() if stream.backbone]


def crop_size(config: Any, streams: list[str]) -> int:
    sizes = {config.model.streams[s].img_size for s in streams if config.model.streams[s].img_size}
    return sizes.pop() if len(sizes) == 1 else config.data.synthetic.crop_size


#: The dev metric that breaks a tie of the selection metric (higher is better).
TIE_BREAK = "bleu4"


def improves(value: float | None, best: float | None, *, lower_is_better: bool,
             tie: float | None = None, best_tie: float | None = None) -> bool:
    """Whether a dev score ``value`` beats the best so far (``None``: no score yet).

    At an equal score, a higher ``tie`` (the dev BLEU-4 when the WER chooses) beats ``best_tie``;
    ties in both keep the earlier checkpoint.
    """
    if value is None:
        return False
    if best is None:
        return True
    if value == best:
        return tie is not None and (best_tie is None or tie > best_tie)
    return value < best if lower_is_better else value > best


def load_initial_weights(encoder: nn.Module, model_cfg: Any, registry: Any) -> Any:
    """``[model.init]`` (weight group -> file) and ``[model.streams.<s>] init`` through
    :func:`~mska_core.checkpoints.load_mska_encoder_state` and the checkpoint formats of ``registry``;
    ``None`` when nothing is to be loaded."""
    init = dict(model_cfg.init)
    streams = {name: s.init for name, s in model_cfg.streams.items() if s.init}
    if not init and not streams:
        return None
    from mska_core.checkpoints import load_mska_encoder_state

    # [model.init] names weight groups (``hand`` initialises both hands) or single streams
    weight_groups = {encoder.specs[name].weight_group for name in encoder.stream_names}
    groups = {key: path for key, path in init.items() if key in weight_groups}
    for key, path in init.items():
        if key not in weight_groups:
            streams.setdefault(key, path)
    return load_mska_encoder_state(encoder, groups=groups, streams=streams or None, strict=True,
                                   registry=registry)


def freeze_streams(encoder: nn.Module, model_cfg: Any) -> list[str]:
    frozen = []
    for name, stream in model_cfg.streams.items():
        if stream.freeze and name in encoder.branches:
            encoder.branches[name].requires_grad_(False)
            frozen.append(name)
    return frozen


def check_glosses(config: Any, vocabularies: Any) -> None:
    """Refuse a gloss-free training split (no clip has a gloss) while a loss over glosses trains."""
    if vocabularies.has_glosses:
        return
    training = [name for name in ("ctc", "distillation") if name in config.losses and config.losses[name].weight > 0]
    if training:
        raise ConfigError(
            f"data: the training split has no glosses (a gloss-free corpus), but losses {', '.join(training)} "
            "train on glosses; set losses.ctc.weight = 0 and losses.distillation.weight = 0 to train translation "
            "only (docs/translation.md, gloss-free corpora)"
        )


#: What ``--resume`` reads from ``last.pt``.
RESUME_KEYS = ("state_dict", "optimizer", "rng", "global_step", "position", "vocabularies", "config")


class FineTuning:
    """One fine-tuning run of a :class:`~mska_core.config.Config`.

    ``out`` receives human-readable lines (rank 0 only); ``progress`` turns the rich progress bar on.
    ``registry`` supplies the streams, losses, data sources and checkpoint formats, and its plugins
    are recorded in the checkpoints; the process-wide one when none is given (this is a Python entry
    point, as ``mska train`` is).
    """

    def __init__(self, config: Any, *, resume: bool = False, registry: Any = None,
                 out: Callable[[str], None] | None = None, console: Any = None, extend: bool = False,
                 allow_stream_change: bool = False) -> None:
        from mska_core.registry import get_registry
        from mska_core.training import distributed

        self.config = config
        self.resume = resume
        self.extend = extend  # --resume may raise train.epochs
        self.allow_stream_change = allow_stream_change  # --resume under another stream provider or joints
        self.registry = registry if registry is not None else get_registry()
        self.info, self.device = distributed.setup(config.run.device)
        self.console = console
        self._out = out or (lambda line: None)
        self.run_dir = run_dir_of(config)
        from mska_core.checkpoints import output_suffix

        # last and best in the format of [run] format, with its suffix (last.pt, best.safetensors ...)
        self.files = RunFiles(self.run_dir, suffix=output_suffix(config.run.format, registry=self.registry))
        # the run folder's lock is held from prepare() to the end of run()
        self.folder = RunFolder(self.files, loop="train", lock=self.info.is_main)
        self.metrics = MetricsLog(self.files.metrics, enabled=self.info.is_main)
        self.prepared = False  # prepare() has run
        self.best_value: float | None = None
        self.best_metrics: dict[str, Any] = {}
        self.global_step = 0
        self.position = (0, 0)  # (epoch, next batch within it)
        self.init_report: Any = None
        self.trackers: Any = None  # the [run] loggers, from prepare() to the end of run()

    # -- set-up ---------------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        if self.info.is_main:
            self._out(line)

    def prepare(self) -> None:
        """Set the run up: check the config against the registry, take the run folder's lock, read the
        data and a resumed state, build the model, losses and optimiser. A start refused here gives
        the folder back as it found it (no folder holding only a lock file)."""
        try:
            self._prepare()
        except BaseException:
            self.release()
            raise

    def _prepare(self) -> None:
        from mska_core.backbones.normalization import crop_normalization
        from mska_core.config.checks import check_against_registry, resolve_model
        from mska_core.data.collate import Collator
        from mska_core.data.crop_files import crop_plan, resolve_crop_sizes
        from mska_core.data.datasets import ClipDataset, load_corpus
        from mska_core.data.vocab import Vocabularies
        from mska_core.registry import registry_for
        from mska_core.training.model import build_model

        self.registry = registry_for(self.config.plugins, self.registry)
        check_against_registry(self.config, "config", self.registry)
        # The stored config names its streams and heads, so plugins installed later never change it.
        config = self.config = resolve_model(self.config, self.registry)
        self.folder.open(resume=self.resume)
        seed_everything(config.run.seed)
        layout = self.registry.layouts.get(config.model.layout)
        self.corpus = load_corpus(config.data, layout=layout.name, num_joints=layout.num_joints,
                                  registry=self.registry)
        # crop backbones are built at the size of the crops the data provides (unless img_size is set)
        config = self.config = resolve_crop_sizes(config, self.corpus)
        self.state = None
        stored_decoder = None
        if self.resume:
            from mska_core.training.trained import stored_decoder as decoder_entry

            self.state = self.folder.read_state(RESUME_KEYS, unstructure(config), registry=self.registry,
                                                extend=self.extend)
            from mska_core.config.identity import check_stream_identity

            check_stream_identity(config.model.streams, config.model.layout, self.state.get("providers"),
                                  str(self.files.state), self.registry, allow_change=self.allow_stream_change)
            self.vocabularies = Vocabularies.from_dict(self.state["vocabularies"])
            if "translation" in config.losses and config.losses["translation"].weight > 0:
                stored_decoder = decoder_entry(self.state, self.vocabularies, self.files.state)
        else:
            self.vocabularies = Vocabularies.from_samples(self.corpus.train)
        check_glosses(config, self.vocabularies)
        if config.model.vocab_size is not None and config.model.vocab_size != len(self.vocabularies.gloss):
            raise ConfigError(
                f"model.vocab_size = {config.model.vocab_size}, but the training data has "
                f"{len(self.vocabularies.gloss)} glosses (blank and specials included); mska train takes the "
                "vocabulary from the data — remove model.vocab_size"
            )
        self.losses = build_losses(config, self.registry)
        self.model = build_model(config, self.vocabularies, registry=self.registry,
                                 losses={k: v[0] for k, v in self.losses.items()},
                                 texts=[sample.text for sample in self.corpus.train],
                                 stored=stored_decoder).to(self.device)
        for module, _ in self.losses.values():
            module.to(self.device)
        if self.state is None:
            self.init_report = load_initial_weights(self.model.encoder, config.model, self.registry)
        self.frozen = freeze_streams(self.model.encoder, config.model)
        if "translation" in self.losses:
            self.frozen += [f"decoder {part}" for part in freeze_parts(self.model, self.losses["translation"][0].freeze)]
        if config.train.compile:
            # In place (nn.Module.compile): parameters, state_dict keys and checkpoints stay the same.
            self.model.encoder.compile()
        plan = crop_plan(config, self.corpus, self.model.encoder, self.registry)
        self.collate = Collator.for_model(self.model, self.vocabularies, crop_normalization(self.model.encoder))
        seed = config.run.seed
        self.train_set = ClipDataset(self.corpus.train, self.vocabularies, config.data.augment, train=True,
                                     seed=seed, layout=layout.name, render_crops=self.corpus.render_crops,
                                     crops=plan)
        self.dev_set = ClipDataset(self.corpus.dev, self.vocabularies, config.data.augment, train=False,
                                   seed=seed, layout=layout.name, render_crops=self.corpus.render_crops,
                                   crops=plan)
        self.optimizer = make_optimizer(self.model, config.optim)
        self.scaler = grad_scaler(self.device.type, config.train.amp)
        self.steps_per_epoch = math.ceil(len(self.train_set) / config.train.batch_size)
        self.total_steps = self.steps_per_epoch * config.train.epochs
        self.lr_schedule = lr_schedule(config.optim, self.total_steps, steps_per_epoch=self.steps_per_epoch,
                                       epochs=config.train.epochs)
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped: nn.Module = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        else:
            self.wrapped = self.model
        if self.state is not None:
            self._restore(self.state)
        if self.info.is_main:
            from mska_core.config import save_config

            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.files.config)
            self.metrics.flush()
        from mska_core.training.trackers import Trackers

        self.trackers = Trackers(config.run.loggers, self.run_dir, config, self.registry, enabled=self.info.is_main)
        self.prepared = True

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["state_dict"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:
            raise ConfigError(
                f"--resume: the optimiser state in {self.files.state} does not fit this run's parameter groups "
                f"({exc}); was [optim] part_lr or [losses.translation] freeze changed, or was the run started by "
                "an earlier mska-core? Start a new run"
            ) from None
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.global_step = int(state["global_step"])
        self.position = (int(state["position"]["epoch"]), int(state["position"]["batch"]))
        best = state.get("best") or {}
        self.best_value = best.get("value")
        self.best_metrics = dict(best.get("metrics") or {})
        self.metrics.resume(self.global_step)

    def release(self) -> None:
        """Give up the run folder's lock (the end of :meth:`run` does it)."""
        self.folder.release()

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train to the configured number of epochs (or ``train.max_steps``) and return the result."""
        started = time.perf_counter()
        config = self.config
        if not self.prepared:
            self.prepare()
        start_epoch, start_batch = self.position
        if start_epoch or start_batch:
            self.say(f"resuming at epoch {start_epoch + 1}, step {self.global_step}")
        display = ProgressDisplay(self.console, enabled=self.info.is_main and config.train.progress)
        try:
            for epoch in range(start_epoch, config.train.epochs):
                if not self._train_epoch(epoch, start_batch if epoch == start_epoch else 0, display):
                    break  # train.max_steps stopped the run inside the epoch; last.pt holds the position
                # An epoch that ends, train.max_steps on its last batch included, is evaluated and saved
                # as finished, so that a resume starts the next epoch exactly as an uninterrupted run does.
                last_epoch = epoch + 1 == config.train.epochs
                if (epoch + 1) % config.train.eval_every == 0 or last_epoch:
                    self._evaluate(epoch)
                self.position = (epoch + 1, 0)
                self._save_last(epoch)
                if self._reached_max_steps() and not last_epoch:
                    self.say(f"stopped at step {self.global_step} (train.max_steps)")
                    break
        finally:
            display.close()
            if self.trackers is not None:
                self.trackers.close()
            self.release()
        from mska_core.training.distributed import barrier

        barrier(self.info)
        best = self.files.best
        return TrainResult(
            run_dir=self.run_dir, last=self.files.state, best=best if best.exists() else None,
            best_metrics=self.best_metrics, global_step=self.global_step, epoch=self.position[0],
            seconds=time.perf_counter() - started,
        )

    def _batches(self, epoch: int) -> list[list[int]]:
        order = torch.randperm(len(self.train_set),
                               generator=torch.Generator().manual_seed(self.config.run.seed * 7919 + epoch))
        size = self.config.train.batch_size
        batches = [order[i : i + size].tolist() for i in range(0, len(order), size)]
        if self.info.enabled and len(batches[-1]) < self.info.world_size:
            batches.pop()  # too few clips left for every rank to get one
        return batches

    def _local_batches(self, batches: list[list[int]]) -> Any:
        """Per step, this rank's part of the global batch as ``train.micro_batches`` collated chunks."""
        from mska_core.training.distributed import local_slice

        parts = self.config.train.micro_batches
        steps = []
        for global_batch in batches:
            local = local_slice(global_batch, self.info)
            chunks = [local[i * len(local) // parts:(i + 1) * len(local) // parts] for i in range(parts)]
            steps.append([c for c in chunks if c])
        if self.config.train.num_workers == 0:
            return ([self.collate([self.train_set[i] for i in chunk]) for chunk in step] for step in steps)
        from torch.utils.data import DataLoader

        loader = iter(DataLoader(self.train_set, batch_sampler=[c for step in steps for c in step],
                                 collate_fn=self.collate, num_workers=self.config.train.num_workers,
                                 pin_memory=self.device.type == "cuda",
                                 generator=torch.Generator().manual_seed(0)))
        return ([next(loader) for _ in step] for step in steps)

    def _reached_max_steps(self) -> bool:
        max_steps = self.config.train.max_steps
        return max_steps is not None and self.global_step >= max_steps

    def _train_epoch(self, epoch: int, start_batch: int, display: ProgressDisplay) -> bool:
        """Run one epoch from ``start_batch``; false when ``train.max_steps`` stopped the run before the
        epoch's last batch (the position is then saved in ``last.pt``)."""
        config = self.config
        self.train_set.set_epoch(epoch)
        batches = self._batches(epoch)
        display.begin(f"epoch {epoch + 1}/{config.train.epochs}", len(batches), completed=start_batch)
        sums: dict[str, float] = {}
        count = 0
        tick = time.perf_counter()
        clips_since = 0
        for b, chunks in enumerate(self._local_batches(batches[start_batch:]), start=start_batch):
            global_size = len(batches[b])
            parts, lr = self._step(chunks, global_size)
            self.global_step += 1
            clips_since += global_size
            count += 1
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            elapsed = time.perf_counter() - tick
            rate = clips_since / elapsed if elapsed > 0 else 0.0
            if self.global_step % config.train.log_every == 0 or b + 1 == len(batches):
                self._log({"kind": "train", "epoch": epoch + 1, "step": self.global_step, "lr": lr,
                           **parts, "clips_per_s": rate})
            shown = " ".join(f"{k.removeprefix('loss/')} {v:.3f}" for k, v in parts.items())
            display.advance(f"{shown} lr {lr:.2e} {rate:.1f} clips/s")
            last_of_epoch = b + 1 == len(batches)
            every = config.train.checkpoint_every
            if every and self.global_step % every == 0 and not last_of_epoch:
                self.position = (epoch, b + 1)
                self._save_last(epoch)
            if self._reached_max_steps() and not last_of_epoch:
                self.position = (epoch, b + 1)
                self._save_last(epoch)
                self.say(f"stopped at step {self.global_step} (train.max_steps)")
                return False
        display.end()
        means = {k: v / max(1, count) for k, v in sums.items()}
        if means:
            shown = ", ".join(f"{k.removeprefix('loss/')} {v:.3f}" for k, v in means.items() if k != "loss")
            self.say(f"epoch {epoch + 1}/{config.train.epochs}: loss {means['loss']:.3f} ({shown})")
        return True

    def _step(self, chunks: list[Any], global_size: int) -> tuple[dict[str, float], float]:
        """One optimisation step over this rank's chunks of the global batch; returns the global mean
        of each loss part and the learning rate."""
        import contextlib

        from mska_core.training.distributed import all_sum

        config = self.config
        lr = self.lr_schedule(self.global_step)
        set_learning_rates(self.optimizer, lr, config.optim.lr)
        self.wrapped.train()
        sums: dict[str, float] = {}
        for c, batch in enumerate(chunks):
            batch = batch.to(self.device)
            syncing = c + 1 == len(chunks) or not self.info.enabled
            with contextlib.nullcontext() if syncing else self.wrapped.no_sync():
                with autocast(self.device.type, config.train.amp):
                    output = self.wrapped(batch)
                total = None
                parts = {}
                for name, (loss, weight) in self.losses.items():
                    value = loss(output, batch)
                    if value.ndim != 0:
                        raise ConfigError(f"losses.{name}: the loss returned shape {tuple(value.shape)}, not a scalar")
                    parts[f"loss/{name}"] = value
                    total = weight * value if total is None else total + weight * value
                assert total is not None
                # Each chunk's mean is weighted by its share of the global batch, so that the gradient
                # (averaged over ranks by DDP) is the gradient of the global batch's mean loss.
                self.scaler.scale(total * (batch.size * self.info.world_size / global_size)).backward()
            for key, value in {"loss": total, **parts}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * batch.size
        if config.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients (a no-op without fp16)
            nn.utils.clip_grad_norm_(self.model.parameters(), config.optim.grad_clip)
        self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        totals = all_sum(list(sums.values()), self.info, self.device)
        parts = {key: value / global_size for key, value in zip(sums, totals)}
        if self.scaler.is_enabled():
            parts["grad_scale"] = float(self.scaler.get_scale())
        return parts, lr

    # -- evaluation and checkpoints --------------------------------------------------------------------

    def _evaluate(self, epoch: int) -> None:
        from mska_core.evaluation.evaluate import evaluate
        from mska_core.training.distributed import gather, shard

        config = self.config
        metrics, _ = evaluate(
            self.model, self.dev_set, self.vocabularies, device=self.device,
            indices=shard(len(self.dev_set), self.info), gather=lambda values: gather(values, self.info),
            batch_size=config.train.batch_size, beam_size=config.train.beam_size,
            translation_beam_size=config.train.translation_beam_size,
            max_text_length=config.train.max_text_length, length_penalty=config.train.length_penalty,
            amp=config.train.amp, collate_fn=self.collate,
            gloss_cleanup=config.eval.gloss_cleanup,
        )
        self._log({"kind": "eval", "split": "dev", "epoch": epoch + 1, "step": self.global_step, **metrics})
        key, lower = self.selection()
        value = metrics.get(key)
        tie_key = TIE_BREAK if key != TIE_BREAK else None
        improved = improves(value, self.best_value, lower_is_better=lower,
                            tie=metrics.get(tie_key) if tie_key else None,
                            best_tie=self.best_metrics.get(tie_key) if tie_key else None)
        shown = f"dev WER {metrics['wer']:.2f}" if "wer" in metrics else "dev WER n/a"
        if "bleu4" in metrics:
            shown += f", BLEU-4 {metrics['bleu4']:.2f}"
        self.say(f"  {shown}{'  (best so far)' if improved else ''}")
        if improved:
            self.best_value = float(value)
            self.best_metrics = {k: v for k, v in metrics.items()}
            self._save_best(epoch, metrics)

    def selection(self) -> tuple[str, bool]:
        """The dev metric that chooses the best checkpoint, and whether lower is better."""
        if "ctc" in self.losses or self.model.decoder is None:
            return "wer", True
        return "bleu4", False

    def _common(self) -> dict[str, Any]:
        from mska_core.config.checks import providers_of

        common = {"vocabularies": self.vocabularies.to_dict(), "config": self.config,
                  "providers": providers_of(self.config, self.registry)}
        decoder = self.model.text_decoder_state()
        if decoder is not None:
            common["text_decoder"] = decoder
        return common

    def _save_best(self, epoch: int, metrics: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        from mska_core.checkpoints import make_payload, save_checkpoint

        key, lower = self.selection()
        payload = make_payload(
            "model", self.model.state_dict(), epoch=epoch + 1, global_step=self.global_step,
            metrics={"dev": metrics}, selection={"metric": key, "lower_is_better": lower},
            decoder_head=self.model.decoder_head, registry=self.registry, **self._common(),
        )
        save_checkpoint(payload, self.files.best, format=self.config.run.format, registry=self.registry)

    def _save_last(self, epoch: int) -> None:
        if not self.info.is_main:
            return
        self.metrics.sync()  # the records up to this step outlive the checkpoint that a resume reads
        from mska_core.checkpoints import make_payload, save_checkpoint

        key, lower = self.selection()
        payload = make_payload(
            "training-state", self.model.state_dict(), epoch=epoch + 1, global_step=self.global_step,
            optimizer=self.optimizer.state_dict(), rng=rng_state(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            position={"epoch": self.position[0], "batch": self.position[1]},
            best={"metric": key, "value": self.best_value, "metrics": self.best_metrics},
            metrics={"dev": self.best_metrics}, decoder_head=self.model.decoder_head, registry=self.registry,
            **self._common(),
        )
        save_checkpoint(payload, self.files.state, format=self.config.run.format, registry=self.registry)

    def _log(self, record: dict[str, Any]) -> None:
        self.metrics.log(record)
        if self.trackers is not None:
            self.trackers.log(record, int(record.get("step", self.global_step)))

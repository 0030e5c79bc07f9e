"""Our DINO training step against the code a user would otherwise run, side by side in one process.

``python -m bench.pretrain --against lightly`` (this module does the work):

- **ours**: ``mska pretrain``'s step through its own model object (``training.dino.DINO``, built as
  ``build_dino`` builds it at the ``[pretrain]`` defaults: 64 prototypes, head 512/128, Sinkhorn-Knopp
  centring, KoLeo 0.1), clipping to ``grad_clip``, the optimiser the loop builds
  (``training.dino.build_optimizer``) and ``update_teacher``;
- **lightly**: lightly's own DINO pieces (``DINOProjectionHead``, ``DINOLoss``, ``update_momentum``,
  ``deactivate_requires_grad``), trained the way lightly's documentation's DINO example trains: the
  teacher on each global view and the student on each view, one forward per view, the loss over the
  lists, ``loss.backward()``, the optimiser step and the momentum update; with the same timm
  ViT (the same initial weights), the same head sizes and prototypes, and AdamW with the same
  learning rate and weight decay (``torch.optim.AdamW`` as a user writes it: its defaults);

on the same batch of views (2 global views of ``img_size`` and ``local_crops`` local views of
``local_size``), interleaved in rotating order after one warm-up step of each, ``--rounds`` times.
The figure is the median of each round's own ratio lightly ÷ ours (the runs of one round share the
machine's load), with its range.

**The float32 floor** of the step: its floating-point operations as ``torch.utils.flop_counter``
counts them (matrix products, attention, the patch convolution; forward and backward), at the rate
the step's own matrix products run when replayed bare (every product the step computes —
``mm``/``addmm``/``bmm`` and convolutions — recorded with its shapes and timed alone in the same
process, each through the faster of the CPU's two float32 product kernels, BLAS's and oneDNN's):
how fast the step could be if nothing but its products cost time, each at the best rate this machine
has for it in float32. ``floor ÷ ours`` is the share of that bound our step reaches.

**Where the time goes**: torch.profiler's operators by self time for one step of each.

``--against dinov2 --dinov2-src DIR`` times the official facebookresearch/dinov2 ``SSLMetaArch``
step instead (from a checkout outside this repository). It needs xFormers and a CUDA device (its
multi-crop attention is xFormers' block-diagonal kernel), so on a machine without them it says so in
one line and exits with status 2.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.encoder_memory import status_kib
from mska_core.config import PretrainConfig
from mska_core.registry import get_registry
from mska_core.training.dino import build_dino, build_optimizer

DEFAULTS = PretrainConfig()
ARCH = "dinov2_vits14"


class Contender:
    """A named training step over ``views`` and its one-line description."""

    def __init__(self, name: str, step: Callable[[], Any], model: nn.Module) -> None:
        self.name, self.step, self.model = name, step, model


def our_step(cfg: PretrainConfig, views: Sequence[torch.Tensor], initial: dict[str, torch.Tensor],
             device: str = "cpu") -> Contender:
    """``mska pretrain``'s step at ``cfg`` on ``device`` (schedules aside: the warm-up teacher
    temperature, the initial teacher momentum); on CUDA each step ends with a synchronisation."""
    model = build_dino(cfg, get_registry())
    model.student.backbone.load_state_dict(initial)
    model.teacher.backbone.load_state_dict(initial)
    model.to(device).train()
    views = [view.to(device) for view in views]
    optimizer = build_optimizer(model, cfg)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.forward_backward(views, cfg.warmup_teacher_temp)
        model.clip_gradients(cfg.grad_clip)
        optimizer.step()
        model.update_teacher(cfg.momentum_teacher)
        synchronize()

    return Contender("ours", step, model)


def lightly_step(cfg: PretrainConfig, views: Sequence[torch.Tensor], initial: dict[str, torch.Tensor]) -> Contender:
    """lightly's DINO as its documentation's example trains it, with our backbone, head sizes and optimiser."""
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    from mska_core.backbones import build_arch

    class LightlyDINO(nn.Module):  # the example's model, backbone and head as given
        def __init__(self, backbone: nn.Module, input_dim: int) -> None:
            super().__init__()
            self.student_backbone = backbone
            self.student_head = DINOProjectionHead(input_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim,
                                                   cfg.out_dim, freeze_last_layer=-1)
            self.teacher_backbone = copy.deepcopy(backbone)
            self.teacher_head = DINOProjectionHead(input_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim,
                                                   cfg.out_dim)
            deactivate_requires_grad(self.teacher_backbone)
            deactivate_requires_grad(self.teacher_head)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.student_head(self.student_backbone(x).flatten(start_dim=1))

        def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
            return self.teacher_head(self.teacher_backbone(x).flatten(start_dim=1))

    backbone = build_arch(cfg.arch, img_size=cfg.img_size)
    backbone.load_state_dict(initial)
    model = LightlyDINO(backbone, backbone.feature_dim)
    model.train()
    criterion = DINOLoss(output_dim=cfg.out_dim, warmup_teacher_temp=cfg.warmup_teacher_temp,
                         teacher_temp=cfg.teacher_temp, warmup_teacher_temp_epochs=0,
                         student_temp=cfg.student_temp, center_momentum=cfg.center_momentum)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step() -> None:
        update_momentum(model.student_backbone, model.teacher_backbone, m=cfg.momentum_teacher)
        update_momentum(model.student_head, model.teacher_head, m=cfg.momentum_teacher)
        teacher_out = [model.forward_teacher(view) for view in views[:2]]
        student_out = [model.forward(view) for view in views]
        loss = criterion(teacher_out, student_out, epoch=0)
        loss.backward()
        model.student_head.cancel_last_layer_gradients(current_epoch=0)
        optimizer.step()
        optimizer.zero_grad()

    return Contender("lightly", step, model)


def compiled_step(cfg: PretrainConfig, views: Sequence[torch.Tensor], initial: dict[str, torch.Tensor]) -> Contender:
    """Ours with the student's and the teacher's backbones under ``torch.compile`` (compiled during
    the warm-up step, which is not timed)."""
    contender = our_step(cfg, views, initial)
    dino = contender.model
    dino.student.backbone = torch.compile(dino.student.backbone, dynamic=False)
    dino.teacher.backbone = torch.compile(dino.teacher.backbone, dynamic=False)
    contender.name = "ours, compiled"
    return contender


def make_views(cfg: PretrainConfig, batch: int, local_size: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    views = [torch.randn(batch, 3, cfg.img_size, cfg.img_size, generator=generator) for _ in range(2)]
    views += [torch.randn(batch, 3, local_size, local_size, generator=generator) for _ in range(cfg.local_crops)]
    return views


def interleaved(contenders: Sequence[Contender], rounds: int) -> dict[str, list[float]]:
    """One warm-up step of each, then ``rounds`` rounds of one step each in rotating order."""
    for contender in contenders:
        contender.step()
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for round_ in range(rounds):
        shift = round_ % len(contenders)
        for contender in list(contenders[shift:]) + list(contenders[:shift]):
            start = time.perf_counter()
            contender.step()
            times[contender.name].append(time.perf_counter() - start)
    return times


def resident_mib(key: str = "VmRSS") -> float:
    """``key`` of ``/proc/self/status`` in MiB (Linux)."""
    return status_kib(key) / 1024


def peak_memory(contender: Contender, built_mib: float) -> dict[str, float] | None:
    """The high-water mark of one step of ``contender`` (reset through ``/proc/self/clear_refs``
    before it): above the resident memory of the built model and views (``built_mib``, read before
    the warm-up step; so the optimiser's state is in it), above the resident memory just before the
    step, and the process's; MiB. ``None`` where Linux's files are not there."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = resident_mib()
    except OSError:
        return None
    contender.step()
    peak = resident_mib("VmHWM")
    return {"step_peak_mib": peak - built_mib, "above_before_step_mib": peak - before, "process_peak_mib": peak}


def cuda_peak_memory(contender: Contender) -> dict[str, float]:
    """MiB of CUDA memory one step of ``contender`` allocates above what it held before it, and the peak."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    contender.step()
    peak = torch.cuda.max_memory_allocated()
    return {"step_peak_mib": (peak - before) / 2**20, "process_peak_mib": peak / 2**20}


def peak_memory_in_child(name: str, cfg: PretrainConfig, batch: int, local_size: int) -> dict[str, float] | None:
    """:func:`peak_memory` of contender ``name`` in a fresh process (one warm-up step, then the
    measured one), so that no other model's freed memory is reused."""
    import json
    import subprocess

    command = [sys.executable, "-m", "bench.dino_against", "--memory-child", name, "--local-crops",
               str(cfg.local_crops), "--batch-size", str(batch), "--local-size", str(local_size),
               "--threads", str(torch.get_num_threads())]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  memory of {name}: the child failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_child(argv: Sequence[str]) -> int:
    import argparse
    import json

    import attrs

    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-child", required=True)
    parser.add_argument("--local-crops", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--local-size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from mska_core.backbones import build_arch

    cfg = attrs.evolve(DEFAULTS, arch=ARCH, local_crops=args.local_crops)
    initial = build_arch(ARCH, img_size=cfg.img_size).state_dict()
    views = make_views(cfg, args.batch_size, args.local_size)
    contender = (our_step if args.memory_child == "ours" else lightly_step)(cfg, views, initial)
    built = resident_mib()
    contender.step()  # warm-up
    print(json.dumps(peak_memory(contender, built)))
    return 0


# -- the floor ---------------------------------------------------------------------------------------


def recorded_products(fn: Callable[[], Any]) -> list[tuple[int, int, int, int]]:
    """Every matrix product ``fn`` computes, as ``(batch, M, K, N)`` (``batch`` products of ``[M, K]``
    by ``[K, N]``): ``mm``, ``addmm``, ``bmm``, ``baddbmm``, and convolutions (forward, and the input's
    and the weight's gradients of their backward) as the products they are."""
    from torch.utils._python_dispatch import TorchDispatchMode

    products: list[tuple[int, int, int, int]] = []

    def conv_shape(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> tuple[int, int, int]:
        rows = out.shape[0] * math.prod(out.shape[2:])
        return rows, weight.shape[1] * math.prod(weight.shape[2:]), weight.shape[0]

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name in ("mm", "addmm"):
                (m, k), (_, n) = args[-2].shape, args[-1].shape
                products.append((1, m, k, n))
            elif name in ("bmm", "baddbmm"):
                (b, m, k), (_, _, n) = args[-2].shape, args[-1].shape
                products.append((b, m, k, n))
            elif name == "convolution":
                products.append((1, *conv_shape(args[0], args[1], result)))
            elif name == "convolution_backward":
                grad, x, weight = args[:3]
                mask = args[-1]
                shape = conv_shape(x, weight, grad)
                products.extend((1, *shape) for wanted in mask[:2] if wanted)
            return result

    with Record():
        fn()
    return products


def replay_rate(products: list[tuple[int, int, int, int]], rounds: int = 3) -> tuple[float, float]:
    """``(FLOP/s, seconds)`` of the recorded products run bare, each through the faster of the CPU's
    two float32 product kernels (BLAS's ``mm``/``bmm``, or oneDNN's 1×1 convolution; median of
    ``rounds`` for each): the rate at which the step's arithmetic itself can run on this machine."""
    from mska_core.backbones.products import onednn_linear

    def seconds(fn: Callable[[], Any]) -> float:
        fn()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    best: dict[tuple[int, int, int, int], float] = {}
    with torch.no_grad():
        for shape in set(products):
            b, m, k, n = shape
            a, w = torch.randn(b, m, k), torch.randn(b, n, k)
            blas = seconds(lambda: torch.bmm(a, w.transpose(1, 2)) if b > 1 else torch.mm(a[0], w[0].t()))
            onednn = seconds(lambda: [onednn_linear(a[i], w[i], None) for i in range(b)]) if b == 1 else blas
            best[shape] = min(blas, onednn)
    total = sum(best[p] for p in products)
    work = sum(2 * b * m * k * n for b, m, k, n in products)
    return work / total, total


def counted_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def floor(contender: Contender) -> dict[str, float]:
    """The step's counted FLOPs and the time they take at the rate of its own products run bare."""
    products = recorded_products(contender.step)
    rate, products_s = replay_rate(products)
    flops = counted_flops(contender.step)
    return {"gflop": flops / 1e9, "products": len(products),
            "products_gflop": sum(2 * b * m * k * n for b, m, k, n in products) / 1e9,
            "products_bare_s": products_s, "gflop_per_s": rate / 1e9, "floor_s": flops / rate}


def profile(contender: Contender, top: int = 12) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profile

    with run_profile(activities=[ProfilerActivity.CPU]) as prof:
        contender.step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


# -- the official dinov2 step ----------------------------------------------------------------------


def dinov2_available() -> str | None:
    """Why the official step cannot run here (``None`` when it can)."""
    if not torch.cuda.is_available():
        return "needs a CUDA device"
    try:
        import xformers  # noqa: F401
    except ImportError:
        return "needs xFormers (pip install xformers)"
    return None


def dinov2_step(src: Path, cfg: PretrainConfig, views: Sequence[torch.Tensor], batch: int,
                initial: dict[str, torch.Tensor]) -> Contender:
    """The official ``SSLMetaArch`` training step as ``dinov2/train/train.py`` runs it (one process,
    FSDP-wrapped, ``forward_backward``, clipping per module, AdamW, ``update_teacher``) at our sizes:
    ViT-S/14 from the same initial weights, our head, KoLeo and Sinkhorn-Knopp centring, iBOT off so
    that it computes what ours computes, float32 throughout (no gradient scaler), from a checkout at
    ``src``. Needs a CUDA device, xFormers, omegaconf and fvcore."""
    sys.path.insert(0, str(src))
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29533"), ("RANK", "0"),
                       ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    from dinov2 import distributed
    from dinov2.configs import dinov2_default_config
    from dinov2.train.ssl_meta_arch import SSLMetaArch
    from omegaconf import OmegaConf

    from mska_core.backbones.vit import timm_to_official

    if not torch.distributed.is_initialized():
        distributed.enable(overwrite=True)
    fp32 = {"mixed_precision": {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}}
    parts = ("backbone", "dino_head", "ibot_head")
    official = OmegaConf.merge(OmegaConf.create(dinov2_default_config), OmegaConf.create({
        "compute_precision": {"grad_scaler": False, "student": dict.fromkeys(parts, fp32),
                              "teacher": dict.fromkeys(parts, fp32)},
        "student": {"arch": "vit_small", "patch_size": 14, "drop_path_rate": 0.0,
                    "layerscale": cfg.layer_scale_init, "block_chunks": 0, "ffn_layer": "mlp"},
        "crops": {"global_crops_size": cfg.img_size, "local_crops_size": int(views[-1].shape[-1]),
                  "local_crops_number": cfg.local_crops},
        "dino": {"head_n_prototypes": cfg.out_dim, "head_hidden_dim": cfg.head_hidden_dim,
                 "head_bottleneck_dim": cfg.head_bottleneck_dim, "head_nlayers": cfg.head_layers,
                 "koleo_loss_weight": cfg.koleo_weight, "loss_weight": 1.0},
        "ibot": {"loss_weight": 0.0},
        "train": {"centering": "sinkhorn_knopp", "batch_size_per_gpu": batch},
        "optim": {"clip_grad": cfg.grad_clip},
    }))
    model = SSLMetaArch(official).cuda()
    model.student.backbone.load_state_dict(timm_to_official(initial), strict=False)
    model.prepare_for_distributed_training()  # FSDP; the teacher starts as the student
    model.train()
    optimizer = torch.optim.AdamW(model.get_params_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=(0.9, 0.999))
    patches = (cfg.img_size // 14) ** 2
    images = {"collated_global_crops": torch.cat(list(views[:2])), "collated_local_crops": torch.cat(list(views[2:])),
              "collated_masks": torch.zeros(2 * batch, patches, dtype=torch.bool),
              "mask_indices_list": torch.zeros(0, dtype=torch.long), "n_masked_patches": torch.zeros(1),
              "upperbound": 0, "masks_weight": torch.zeros(0)}

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.forward_backward(images, teacher_temp=cfg.warmup_teacher_temp)
        if cfg.grad_clip > 0:
            for module in model.student.values():
                module.clip_grad_norm_(cfg.grad_clip)
        optimizer.step()
        model.update_teacher(cfg.momentum_teacher)
        torch.cuda.synchronize()

    return Contender("official dinov2", step, model)


# -- the run -------------------------------------------------------------------------------------


def configurations(local_crops: Sequence[int]) -> list[PretrainConfig]:
    import attrs

    return [attrs.evolve(DEFAULTS, arch=ARCH, local_crops=n) for n in local_crops]


def compare(against: str, *, batch: int, local_size: int, local_crops: Sequence[int], rounds: int,
            dinov2_src: Path | None, with_floor: bool, with_profile: bool, compiled: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    from mska_core.backbones import build_arch

    initial = build_arch(ARCH, img_size=DEFAULTS.img_size).state_dict()
    rows = []
    for cfg in configurations(local_crops):
        views = make_views(cfg, batch, local_size)
        if against == "lightly":
            ours, theirs = our_step(cfg, views, initial), lightly_step(cfg, views, initial)
        else:
            ours = our_step(cfg, views, initial, device="cuda")
            theirs = dinov2_step(dinov2_src, cfg, [v.cuda() for v in views], batch, initial)
        contenders = [ours, theirs]
        if compiled and against == "lightly":
            contenders.append(compiled_step(cfg, views, initial))
        times = interleaved(contenders, rounds)
        if against == "lightly":
            memory = {name: peak_memory_in_child(name, cfg, batch, local_size) for name in ("ours", theirs.name)}
        else:
            memory = {c.name: cuda_peak_memory(c) for c in contenders}
        ratios = [t / o for t, o in zip(times[theirs.name], times["ours"])]
        row: dict[str, Any] = {
            "local_crops": cfg.local_crops, "batch": batch, "img_size": cfg.img_size, "local_size": local_size,
            "seconds": {name: statistics.median(values) for name, values in times.items()}, "all": times,
            "ratio": statistics.median(ratios), "spread": [min(ratios), max(ratios)], "against": theirs.name,
            "memory": memory,
        }
        if len(contenders) > 2:
            gains = [o / c for o, c in zip(times["ours"], times["ours, compiled"])]
            row["compile_gain"] = {"median": statistics.median(gains), "spread": [min(gains), max(gains)]}
        print(f"  2 + {cfg.local_crops} views: ours {row['seconds']['ours']:.3f} s, {theirs.name} "
              f"{row['seconds'][theirs.name]:.3f} s, {row['ratio']:.2f}x ({row['spread'][0]:.2f}-{row['spread'][1]:.2f})",
              file=sys.stderr)
        if with_floor and against == "lightly":
            row["floor"] = floor(ours)
            row["floor_reached"] = row["floor"]["floor_s"] / row["seconds"]["ours"]
            row["best_ratio"] = row["seconds"][theirs.name] / row["floor"]["floor_s"]
            print(f"    floor {row['floor']}", file=sys.stderr)
        if with_profile and against == "lightly":
            row["profile"] = {"ours": profile(ours), theirs.name: profile(theirs)}
        rows.append(row)
        del ours, theirs, contenders
    return {"against": against, "rows": rows, "threads": torch.get_num_threads(),
            "load_average": os.getloadavg()}


def print_report(report: dict[str, Any]) -> str:
    """Print the tables to stderr; return the headline line."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=200)
    name = report["rows"][0]["against"]
    table = Table(title=f"DINO step, {ARCH}, batch {report['rows'][0]['batch']}, {report['threads']} threads")
    for column in ("views", f"{name} s", "ours s", f"{name} ÷ ours", "floor s", "floor ÷ ours", f"{name} ÷ floor",
                   f"{name} step peak MiB", "ours step peak MiB", f"{name} process MiB", "ours process MiB"):
        table.add_column(column, justify="right")

    def mib(row: dict[str, Any], who: str, key: str = "step_peak_mib") -> str:
        entry = row["memory"].get(who)
        return f"{entry[key]:.0f}" if entry else "–"

    for row in report["rows"]:
        fl = row.get("floor")
        table.add_row(f"2 × {row['img_size']} + {row['local_crops']} × {row['local_size']}",
                      f"{row['seconds'][name]:.3f}", f"{row['seconds']['ours']:.3f}",
                      f"{row['ratio']:.2f}× ({row['spread'][0]:.2f}–{row['spread'][1]:.2f})",
                      f"{fl['floor_s']:.3f}" if fl else "–", f"{row['floor_reached']:.0%}" if fl else "–",
                      f"{row['best_ratio']:.2f}×" if fl else "–", mib(row, name), mib(row, "ours"),
                      mib(row, name, "process_peak_mib"), mib(row, "ours", "process_peak_mib"))
    console.print(table)
    for row in report["rows"]:
        if "compile_gain" in row:
            gain = row["compile_gain"]
            console.print(f"2 + {row['local_crops']} views: torch.compile of the backbones: ours "
                          f"{row['seconds']['ours']:.3f} s, compiled {row['seconds']['ours, compiled']:.3f} s, "
                          f"{gain['median']:.2f}× ({gain['spread'][0]:.2f}–{gain['spread'][1]:.2f})")
    for row in report["rows"]:
        for who, ops in row.get("profile", {}).items():
            profile_table = Table(title=f"{who}, 2 + {row['local_crops']} views: self time by operator")
            for column in ("op", "calls", "self ms", "share"):
                profile_table.add_column(column, justify="right")
            for op in ops:
                profile_table.add_row(op["op"], str(op["calls"]), f"{op['self_ms']:.0f}", f"{op['share']:.0%}")
            console.print(profile_table)
    worst = min(report["rows"], key=lambda r: r["ratio"])
    return f"DINO step vs {name}: {worst['ratio']:.2f}×"


if __name__ == "__main__":
    raise SystemExit(memory_child(sys.argv[1:]))

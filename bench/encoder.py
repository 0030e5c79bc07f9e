"""Speed of the MSKA paper preset against the reference implementation's own code, side by side.

The reference is ``recognition.py`` of sutwangyan/MSKA (its ``DSTA`` keypoint network and four
``VisualHead``s, built from its ``configs/phoenix-2014t_s2g.yaml``) from a checkout outside this
repository (``--reference-src DIR``; ``docs/encoder.md`` says how to get it). Its imports of
TensorFlow, ``transformers`` (mBART), OpenCV, einops and seaborn are replaced by empty modules while
it is imported (none of them is used by the network), its ``.cuda()`` calls are the identity on a
machine without CUDA, and its gloss tokenizer reads a vocabulary of 1,094 made-up glosses written
here. Its weights are converted to ours with ``convert_reference_state_dict`` (the ``mska-paper``
format), so both networks compute with the same tensors.

1. **Numerics**: the reference's batch-norm statistics, ``alphas`` and global matrices are
   randomised, dropout is off in both, and on the same input: the largest relative difference of
   each head's logits (float32, eval and train mode), the loss, and every parameter's gradient
   (float64, so that the comparison sees the arithmetic and not float32 rounding; also float32 as
   one relative norm over all parameters).
2. **Speed**: interleaved on the same input, the reference, our paper mode and our softmax mode in
   rotating order, ``--pairs`` times: a training step (train mode, forward + backward of the
   reference's loss: CTC summed over the batch and divided by B for each head, plus the KL
   self-distillation of each head to the detached mean of the heads' probabilities, ``batchmean``)
   and an eval forward (the reference also computes its losses in ``forward``; ours does not), at
   ``--batches`` × ``--frames``. Medians of the rounds' seconds; the speed-up is the median of each
   round's own ratio reference / ours, with its range over the rounds. ``--compile`` adds
   ``torch.compile`` of our paper mode; its compilation runs before the timed rounds of each shape
   and is not in the figures.
3. **The arithmetic floor**: the FLOPs of each pass as ``torch.utils.flop_counter`` counts them (matrix
   products and convolutions, forward and backward; the larger of the two counts, since the counter
   does not see in-place products such as ``baddbmm_``), divided by the rate of plain float32 matrix
   products of the encoder's shapes on this machine: how fast a pass could be if all of its counted
   arithmetic ran at that rate, and so the largest speed-up over the reference that float32 allows.
4. **Where the time goes**: torch.profiler's operators by self CPU time for our paper-mode training
   step and for the reference's, at B=``--profile-batch`` (1 unless told).

``--kernels`` adds, in the same interleaved rounds, one contender per custom autograd kernel of the
attention block's fast path (``mska_core.encoder.KERNELS``): "paper without X", our paper mode with
kernel X switched off (that step computed by autograd's own operations). Each kernel's own gain is
the median of the rounds' ratios time(paper without X) / time(paper), printed as its own table.
Peak memory is measured by ``bench/encoder_memory.py`` (each side in a fresh process).

``--baseline-src DIR`` adds our paper mode computed by the attention blocks of another checkout of
mska-core (an earlier commit) as one more interleaved contender: what a change to the blocks bought.
``--device cuda`` times both on the GPU instead (the CUDA columns; each timed call ends with
``torch.cuda.synchronize()``); the numerics check stays on the CPU, and the floor and the profile,
which measure the CPU, are skipped.

    python -m bench.encoder --reference-src /path/to/MSKA [--threads 2] [--pairs 5] [--batches 1 4] [--compile]
    python -m bench.encoder --reference-src /path/to/MSKA --threads 1 --clock cpu   # on a shared machine
    python -m bench.encoder --reference-src /path/to/MSKA --device cuda --batches 1 4 8   # the CUDA columns
    python -m bench.encoder --reference-src /path/to/MSKA --kernels --batches 1 4 --no-floor --no-profile   # each kernel's gain

Writes ``bench/results/encoder.json``. On a shared machine, take the medians with care: the ratio of
interleaved runs is what holds, not the seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named like the standard library's ``inspect``: keep the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import contextlib
import copy
import importlib
import importlib.machinery
import importlib.util
import json
import os
import pickle
import platform
import re
import resource
import statistics
import tempfile
import time
import types

import torch
import torch.nn.functional as F
from torch import nn

from mska_core.checkpoints.paper import convert_reference_state_dict, to_reference_state_dict
from mska_core.config import load_config
from mska_core.encoder import KERNELS, ClipBatch, MSKAEncoder

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "examples" / "configs" / "mska-slr-paper.toml"
RESULTS = ROOT / "bench" / "results" / "encoder.json"
VOCAB = 1094
GLOSSES_PER_CLIP = 8
#: Biases followed by a training-mode batch norm (their gradient is zero up to rounding).
ZERO_GRADIENT = re.compile(r"(?:[._](?:out_nets|ff_nets|out_nett|downs1|downs2|downt2|input_map)\.0|\.fc1)\.bias$")
#: Where the timed passes run (``--device``); inputs of :class:`Case` are made there.
DEVICE = torch.device("cpu")
#: Modules the reference imports but its recognition network never uses.
STUBBED = ("tensorflow", "transformers", "cv2", "einops", "seaborn")


# -- the reference ---------------------------------------------------------------------------------


@contextlib.contextmanager
def stubbed_imports():
    """Empty stand-ins for :data:`STUBBED` modules that are not installed, while the reference imports."""
    added = []
    for name in STUBBED:
        if importlib.util.find_spec(name) is not None:
            continue
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)

        def attribute(attr: str, _module: str = name):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {"__module__": _module})

        module.__getattr__ = attribute
        sys.modules[name] = module
        added.append(name)
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


@contextlib.contextmanager
def cuda_is_identity():
    """The reference moves its inputs with ``.cuda()``; unless the passes run on the GPU
    (``--device cuda``), that is the identity here."""
    if DEVICE.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def build_reference(src: Path) -> nn.Module:
    """The reference's ``Recognition`` network (keypoint input, four heads) from its checkout ``src``."""
    import yaml

    src = src.resolve()
    if not (src / "recognition.py").is_file():
        raise SystemExit(f"--reference-src {src}: no recognition.py there; see docs/encoder.md for the checkout")
    import torch._dynamo  # noqa: F401  (imported before the stand-ins exist, as they must not be seen by it)
    import torchvision.utils  # noqa: F401

    before = set(sys.modules)
    sys.path.insert(0, str(src))
    try:
        with stubbed_imports():
            recognition = importlib.import_module("recognition")
    finally:
        sys.path.remove(str(src))
        for name in set(sys.modules) - before:  # its top-level modules (utils, Tokenizer, ...) leave no trace
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(src)):
                del sys.modules[name]
    config = yaml.safe_load((src / "configs" / "phoenix-2014t_s2g.yaml").read_text())
    network = config["model"]["RecognitionNetwork"]
    vocabulary = {"<si>": 0, "<unk>": 1, "<pad>": 2, **{f"gloss{i}": i for i in range(3, VOCAB)}}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gloss2ids.pkl"
        path.write_bytes(pickle.dumps(vocabulary))
        network["GlossTokenizer"]["gloss2id_file"] = str(path)
        model = recognition.Recognition(network, args=None)
    assert len(model.gloss_tokenizer) == VOCAB
    return model


def randomise(reference: nn.Module, seed: int = 0) -> None:
    """Trained-looking statistics, scales and global matrices, so that a misplaced tensor shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator) if tensor.is_floating_point() else None
            if name.endswith("running_mean"):
                tensor.copy_(noise * 0.1)
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith(("norm.weight", ".1.weight")) and tensor.dim() == 1:
                tensor.copy_(1 + noise * 0.1)
            elif name.endswith(("alphas", "attention0s")):
                tensor.add_(noise * 0.1)


def no_dropout(*models: nn.Module) -> None:
    for model in models:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
            if hasattr(module, "attention_dropout"):
                module.attention_dropout = 0.0


# -- the two sides ---------------------------------------------------------------------------------


class Case:
    """One input, for both implementations: keypoints, the reference's ``src_input``, gloss labels."""

    def __init__(self, batch: int, frames: int, dtype: torch.dtype = torch.float32) -> None:
        generator = torch.Generator().manual_seed(batch * 1000 + frames)
        points = torch.rand(batch, frames, 133, 3, generator=generator) * 2 - 1
        points[..., 2] = torch.rand(batch, frames, 133, generator=generator)
        points = points.to(dtype=dtype, device=DEVICE)
        frames_out = -(-(-(-frames // 2)) // 2)  # ceil(ceil(T / 2) / 2), the paper's two strides
        self.batch = batch
        self.labels = torch.randint(3, VOCAB, (batch, GLOSSES_PER_CLIP), generator=generator).to(DEVICE)
        self.label_lengths = torch.full((batch,), GLOSSES_PER_CLIP, device=DEVICE)
        self.clips = ClipBatch(points, torch.full((batch,), frames, device=DEVICE))
        self.src_input = {
            "keypoint": points.permute(0, 3, 1, 2).contiguous(),  # [B, C, T, J]
            "mask": torch.ones(batch, 1, frames_out, dtype=torch.bool, device=DEVICE),
            "new_src_lengths": torch.full((batch,), frames_out, device=DEVICE),
            "gloss_input": {"gloss_labels": self.labels, "gls_lengths": self.label_lengths},
        }


def our_loss(out, case: Case) -> torch.Tensor:
    """The reference's recognition loss on our outputs: per head CTC (sum / B) + KL to the mean."""
    teacher = out.distillation_targets().to(next(iter(out.logits.values())).dtype)
    loss = 0.0
    for logits in out.logits.values():
        log_probs = logits.log_softmax(-1)
        loss = loss + F.ctc_loss(log_probs.transpose(0, 1), case.labels, out.lengths, case.label_lengths,
                                 blank=0, reduction="sum", zero_infinity=True) / case.batch
        loss = loss + F.kl_div(log_probs, teacher, reduction="batchmean")
    return loss


def reference_train(reference: nn.Module, case: Case) -> torch.Tensor:
    reference.train()
    reference.zero_grad(set_to_none=True)
    with cuda_is_identity():
        loss = reference(case.src_input)["recognition_loss"]
    loss.backward()
    return loss.detach()


def ours_train(encoder: nn.Module, case: Case) -> torch.Tensor:
    encoder.train()
    encoder.zero_grad(set_to_none=True)
    loss = our_loss(encoder(case.clips), case)
    loss.backward()
    return loss.detach()


def reference_eval(reference: nn.Module, case: Case) -> dict:
    reference.eval()
    with torch.no_grad(), cuda_is_identity():
        return reference(case.src_input)


def ours_eval(encoder: nn.Module, case: Case):
    encoder.eval()
    with torch.no_grad():
        return encoder(case.clips)


def build_ours(reference: nn.Module, attention: str) -> MSKAEncoder:
    model_cfg = load_config(PRESET, [f'model.attention="{attention}"']).model
    encoder = MSKAEncoder.from_config(model_cfg, vocab_size=VOCAB)
    state = {f"recognition_network.{k}": v for k, v in reference.state_dict().items()}
    encoder.load_state_dict(convert_reference_state_dict(state), strict=True)
    return encoder.to(DEVICE)


def build_baseline(reference: nn.Module, src: Path) -> MSKAEncoder:
    """Our paper mode computed by the attention blocks of another checkout of mska-core (``src``,
    for instance ``git worktree add DIR COMMIT``): this tree's encoder, whose blocks take the class
    of ``src``'s ``mska_core/encoder/attention.py`` (with its own ``layers.py``). The parameters are
    the same objects' and so the same weights; the before and after of a change to the blocks then
    run side by side, interleaved like the other contenders."""
    from mska_core.encoder.attention import AttentionBlock

    encoder_dir = src.resolve() / "mska_core" / "encoder"
    modules = {}
    for name in ("layers", "attention"):
        path = encoder_dir / f"{name}.py"
        if not path.is_file():
            print(f"bench.encoder: {path} does not exist; --baseline-src takes a checkout of mska-core", file=sys.stderr)
            raise SystemExit(2)
        module = types.ModuleType(f"baseline_{name}")
        module.__file__ = str(path)
        text = path.read_text().replace("from mska_core.encoder.layers import", "from baseline_layers import")
        sys.modules[module.__name__] = module
        exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - a local checkout the user names
        modules[name] = module
    encoder = build_ours(reference, "paper")
    for block in encoder.modules():
        if isinstance(block, AttentionBlock):
            block.__class__ = modules["attention"].AttentionBlock
    return encoder


# -- 1. numerics -----------------------------------------------------------------------------------


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp(min=1e-30))


def numerics(reference: nn.Module, frames: int) -> dict:
    """Logits, loss and gradients of our paper mode against the reference on one B=2 input."""
    reference, ours = copy.deepcopy(reference), build_ours(reference, "paper")
    no_dropout(reference, ours)
    result: dict = {"batch": 2, "frames": frames}
    case = Case(2, frames)
    theirs_out, ours_out = reference_eval(reference, case), ours_eval(ours, case)
    result["eval_logits_rel"] = max(relative(ours_out.logits[h], theirs_out[f"{h}_gloss_logits"])
                                    for h in ours_out.logits)
    # Train mode, float32: logits and loss; every gradient as one relative norm.
    reference.train(), ours.train()
    with cuda_is_identity():
        theirs_out = reference(case.src_input)
    ours_out = ours(case.clips)
    result["train_logits_rel"] = max(relative(ours_out.logits[h], theirs_out[f"{h}_gloss_logits"])
                                     for h in ours_out.logits)
    theirs_loss, ours_loss = theirs_out["recognition_loss"], our_loss(ours_out, case)
    result["loss_reference"], result["loss_ours"] = float(theirs_loss), float(ours_loss)
    reference.zero_grad(), ours.zero_grad()
    theirs_loss.backward(), ours_loss.backward()
    result["grad_rel_norm_fp32"] = gradient_norm_difference(reference, ours)
    # Float64: every parameter's gradient, largest difference relative to its largest entry.
    reference, ours = reference.double(), ours.double()
    case = Case(2, frames, torch.float64)
    reference_train(reference, case), ours_train(ours, case)
    worst, name = gradient_differences(reference, ours)
    result["grad_rel_max_fp64"], result["grad_rel_max_fp64_at"] = worst, name
    return result


def reference_gradients(reference: nn.Module) -> dict:
    grads = {f"recognition_network.{k}": p.grad for k, p in reference.named_parameters() if p.grad is not None}
    return grads


def gradient_pairs(reference: nn.Module, ours: MSKAEncoder):
    theirs = reference_gradients(reference)
    ours_by_reference_name = to_reference_state_dict({k: p.grad for k, p in ours.named_parameters()})
    for name, ours_grad in ours_by_reference_name.items():
        # A convolution bias followed by a training-mode batch norm has a zero gradient: what both
        # implementations compute there is rounding, and comparing it says nothing.
        if ZERO_GRADIENT.search(name):
            continue
        yield name, ours_grad, theirs[name].reshape(ours_grad.shape)


def gradient_differences(reference: nn.Module, ours: MSKAEncoder) -> tuple[float, str]:
    worst, at = 0.0, ""
    for name, ours_grad, theirs_grad in gradient_pairs(reference, ours):
        difference = relative(ours_grad, theirs_grad)
        if difference > worst:
            worst, at = difference, name
    return worst, at


def gradient_norm_difference(reference: nn.Module, ours: MSKAEncoder) -> float:
    pairs = list(gradient_pairs(reference, ours))
    difference = torch.sqrt(sum(((o - t).double() ** 2).sum() for _, o, t in pairs))
    norm = torch.sqrt(sum((t.double() ** 2).sum() for _, _, t in pairs))
    return float(difference / norm)


# -- 2. speed --------------------------------------------------------------------------------------


#: What the timings read: wall-clock seconds (the default), or this process's CPU seconds
#: (``--clock cpu``: with ``--threads 1`` on a machine shared with other jobs, the time the work
#: itself took, whatever else ran).
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def timed(fn, kernel: list[tuple[float, int]] | None = None) -> float:
    """Seconds of ``fn()`` on the benchmark's clock; with ``kernel``, also appends the process's
    system seconds and minor page faults of the call (what the kernel spent handing it fresh memory)."""
    synchronize = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    synchronize()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = clock()
    fn()
    synchronize()
    seconds = clock() - start
    if kernel is not None:
        after = resource.getrusage(resource.RUSAGE_SELF)
        kernel.append((after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt))
    return seconds


def speed(reference: nn.Module, contenders: dict[str, nn.Module], batch: int, frames: int, mode: str,
          pairs: int, warm_up: bool) -> dict:
    """Interleaved timings: every round runs the reference and each contender once, in rotating order."""
    case = Case(batch, frames)
    runs = {"reference": (lambda: reference_train(reference, case)) if mode == "train"
            else (lambda: reference_eval(reference, case))}
    for name, encoder in contenders.items():
        runs[name] = (lambda e=encoder: ours_train(e, case)) if mode == "train" else (lambda e=encoder: ours_eval(e, case))
    for name, run in runs.items():
        # A compiled contender compiles (again) for every new input shape: that happens here, untimed.
        if warm_up or "compiled" in name:
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    kernel: dict[str, list[tuple[float, int]]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(pairs):
        order = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in order:
            times[name].append(timed(runs[name], kernel[name]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    row = {"mode": mode, "batch": batch, "frames": frames, "pairs": pairs, "seconds": medians, "all": times,
           "system_seconds": {name: statistics.median(s for s, _ in runs_) for name, runs_ in kernel.items()},
           "page_faults": {name: statistics.median(f for _, f in runs_) for name, runs_ in kernel.items()}}
    # Each round's own ratio (the runs of one round share the machine's load), then their median and range.
    ratios = {name: [ref / ours for ref, ours in zip(times["reference"], times[name])] for name in contenders}
    row["round_ratios"] = ratios
    # A kernel's own gain: each round's time without it over the time with every kernel on.
    gains = {name.removeprefix(WITHOUT): [without / paper for without, paper in zip(times[name], times["paper"])]
             for name in contenders if name.startswith(WITHOUT) and "paper" in times}
    if gains:
        row["kernel_gain"] = {kernel: statistics.median(values) for kernel, values in gains.items()}
        row["kernel_gain_spread"] = {kernel: [min(values), max(values)] for kernel, values in gains.items()}
        print(f"  {mode:5s} B={batch}: kernel gains " + ", ".join(
            f"{k} {g:.3f}x" for k, g in row["kernel_gain"].items()), file=sys.stderr)
    row["speedup"] = {name: statistics.median(values) for name, values in ratios.items()}
    row["spread"] = {name: [min(values), max(values)] for name, values in ratios.items()}
    print(f"  {mode:5s} B={batch} T={frames}: " + ", ".join(f"{n} {s:.3f} s" for n, s in medians.items())
          + " | " + ", ".join(f"{n} {row['speedup'][n]:.2f}x ({row['spread'][n][0]:.2f}-{row['spread'][n][1]:.2f})"
                               for n in contenders), file=sys.stderr)
    return row


#: The name of the contender "paper mode with kernel X switched off" is this prefix and X.
WITHOUT = "paper without "


def build_without(reference: nn.Module, kernel: str) -> MSKAEncoder:
    """Our paper mode with the custom kernel ``kernel`` off (autograd's own operations instead)."""
    return build_ours(reference, "paper").set_disabled_kernels({kernel})


# -- 2b. the arithmetic floor ----------------------------------------------------------------------


def counted_flops(fn) -> int:
    """Floating-point operations of ``fn`` as torch counts them (matrix products and convolutions,
    forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def product_throughput(rounds: int = 7) -> float:
    """FLOP/s of float32 matrix products of the encoder's typical shapes on this machine (median of
    ``rounds``), each through the faster of the CPU's two float32 product kernels (BLAS's ``mm`` or
    oneDNN's 1×1 convolution; see ``mska_core.backbones.products``): the rate at which the
    arithmetic itself can run."""
    from mska_core.backbones.products import onednn_linear

    shapes = [(2700, 384, 64), (2700, 64, 192), (675, 1536, 256), (1975, 256, 256), (1350, 768, 128)]
    pairs = [(torch.randn(m, k, device=DEVICE), torch.randn(n, k, device=DEVICE)) for m, k, n in shapes]
    work = sum(2 * m * k * n for m, k, n in shapes)
    best = 0.0
    for product in (lambda a, w: torch.mm(a, w.t()), lambda a, w: onednn_linear(a, w, None)):
        def run(product=product) -> None:
            with torch.no_grad():
                for a, w in pairs:
                    product(a, w)

        run()
        best = max(best, work / statistics.median(timed(run) for _ in range(rounds)))
    return best


def floor(reference: nn.Module, contender: nn.Module, batch: int, frames: int, speed_rows: list[dict]) -> dict:
    """How fast each pass could be if every counted operation ran at the measured product rate."""
    case = Case(batch, frames)
    rate = product_throughput()
    result = {"batch": batch, "frames": frames, "gflop_per_s": rate / 1e9, "passes": {}}
    for mode, ours_fn, theirs_fn in (
        ("train", lambda: ours_train(contender, case), lambda: reference_train(reference, case)),
        ("eval", lambda: ours_eval(contender, case), lambda: reference_eval(reference, case)),
    ):
        ours_flops, theirs_flops = counted_flops(ours_fn), counted_flops(theirs_fn)
        # The counter skips in-place and accumulating products (``baddbmm_``, ``addbmm``), which our
        # kernels' backward passes use, so ours can count low: the floor takes the larger count.
        entry = {"gflop_ours": ours_flops / 1e9, "gflop_reference": theirs_flops / 1e9,
                 "floor_seconds": max(ours_flops, theirs_flops) / rate}
        measured = [r for r in speed_rows if r["mode"] == mode and r["batch"] == batch]
        if measured:
            entry["reference_seconds"] = measured[0]["seconds"]["reference"]
            entry["best_ratio"] = entry["reference_seconds"] / entry["floor_seconds"]
        result["passes"][mode] = entry
    print(f"  floor B={batch}: {result}", file=sys.stderr)
    return result


# -- 3. profile ------------------------------------------------------------------------------------


def profile(fn, top: int = 14) -> list[dict]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profile

    fn()
    with run_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000, "share": e.self_cpu_time_total / total}
        for e in events[:top]
    ]


def print_tables(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)  # a wide table stays readable in a log
    check = report.get("numerics")
    if check is not None:
        table = Table(title=f"numerics against the reference (paper mode, B=2, T={check['frames']})")
        for column in ("eval logits", "train logits", "loss ref / ours", "grads fp64 (max)", "grads fp32 (norm)"):
            table.add_column(column, justify="right")
        table.add_row(f"{check['eval_logits_rel']:.1e}", f"{check['train_logits_rel']:.1e}",
                      f"{check['loss_reference']:.4f} / {check['loss_ours']:.4f}",
                      f"{check['grad_rel_max_fp64']:.1e}", f"{check['grad_rel_norm_fp32']:.1e}")
        console.print(table)
    contenders = [name for name in report["speed"][0]["speedup"]]
    table = Table(title=f"{report['clock']} seconds, medians of interleaved runs ({report['threads']} threads); "
                        "× = median of the rounds' ratios (range)")
    for column in ("pass", "B", "T", "reference", *contenders, *[f"{c} ×" for c in contenders]):
        table.add_column(column, justify="right")
    for row in report["speed"]:
        table.add_row(row["mode"], str(row["batch"]), str(row["frames"]), f"{row['seconds']['reference']:.3f}",
                      *[f"{row['seconds'][c]:.3f}" for c in contenders],
                      *[f"{row['speedup'][c]:.2f}x ({row['spread'][c][0]:.2f}-{row['spread'][c][1]:.2f})"
                        for c in contenders])
    console.print(table)
    table = Table(title="what the kernel spent on each pass: system seconds / minor page faults (medians)")
    for column in ("pass", "B", "reference", *contenders):
        table.add_column(column, justify="right")
    for row in report["speed"]:
        if "system_seconds" in row:
            table.add_row(row["mode"], str(row["batch"]), *[f"{row['system_seconds'][n]:.2f} s / {row['page_faults'][n]:,.0f}"
                                                             for n in ("reference", *contenders)])
    console.print(table)
    gain_rows = [row for row in report["speed"] if "kernel_gain" in row]
    if gain_rows:
        kernels = list(gain_rows[0]["kernel_gain"])
        table = Table(title="each custom kernel's own gain: time(paper without X) / time(paper), "
                            "median of the rounds' ratios (range); < 1.03x in training: the kernel goes")
        for column in ("pass", "B", *kernels):
            table.add_column(column, justify="right")
        for row in gain_rows:
            table.add_row(row["mode"], str(row["batch"]), *[
                f"{row['kernel_gain'][k]:.3f}x ({row['kernel_gain_spread'][k][0]:.2f}-{row['kernel_gain_spread'][k][1]:.2f})"
                for k in kernels])
        console.print(table)
    for check in report.get("floor", []):
        table = Table(title=f"arithmetic floor, B={check['batch']}: counted FLOPs at "
                            f"{check['gflop_per_s']:.0f} GFLOP/s (this machine's matrix products)")
        for column in ("pass", "GFLOP ours", "GFLOP reference", "floor s", "reference s", "best possible ×"):
            table.add_column(column, justify="right")
        for mode, entry in check["passes"].items():
            table.add_row(mode, f"{entry['gflop_ours']:.1f}", f"{entry['gflop_reference']:.1f}",
                          f"{entry['floor_seconds']:.3f}", f"{entry.get('reference_seconds', float('nan')):.3f}",
                          f"{entry.get('best_ratio', float('nan')):.2f}x")
        console.print(table)
    for side, rows in report.get("profile", {}).items():
        table = Table(title=f"where the time goes: {side}, training step, B={report['profile_batch']} (self CPU)")
        for column in ("operator", "calls", "self ms", "share"):
            table.add_column(column, justify="left" if column == "operator" else "right")
        for row in rows:
            table.add_row(row["op"], str(row["calls"]), f"{row['self_ms']:.1f}", f"{row['share']:.0%}")
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-src", required=True, type=Path,
                        help="a checkout of sutwangyan/MSKA, outside this repository (see docs/encoder.md)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=5, help="interleaved rounds per case")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--numerics-frames", type=int, default=None, help="T of the numerics check (default --frames)")
    parser.add_argument("--modes", nargs="+", default=["train", "eval"], choices=["train", "eval"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of our paper mode")
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                        help="wall-clock seconds, or this process's CPU seconds (meaningful with --threads 1)")
    parser.add_argument("--no-numerics", action="store_true", help="skip the numerics check")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--profile-batch", type=int, default=1, help="B of the profiled training steps")
    parser.add_argument("--kernels", action="store_true",
                        help="also time our paper mode without each custom kernel ('paper without X'), "
                             "in the same rounds: each kernel's own gain")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip counting FLOPs and timing plain matrix products (the arithmetic floor)")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also time our paper mode with the attention blocks of this checkout of mska-core "
                             "(an earlier commit: the before/after of a change), as the contender 'paper, baseline'")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the timed passes run (cuda: the CUDA columns; numerics stay on the CPU)")
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench.encoder: --device cuda needs a CUDA GPU, and torch sees none; run without --device", file=sys.stderr)
        return 2
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    reference = build_reference(args.reference_src)
    randomise(reference)
    report: dict = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "threads": args.threads,
        "clock": args.clock,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "command": "python -m bench.encoder " + " ".join(argv if argv is not None else sys.argv[1:]),
        "reference": str(args.reference_src),
    }
    if not args.no_numerics:
        report["numerics"] = numerics(reference, args.numerics_frames or args.frames)
        print(f"  numerics: {report['numerics']}", file=sys.stderr)
    global DEVICE
    DEVICE = torch.device(args.device)
    report["device"] = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    reference.to(DEVICE)
    contenders: dict[str, nn.Module] = {"paper": build_ours(reference, "paper"),
                                        "softmax": build_ours(reference, "softmax")}
    if args.baseline_src is not None:
        contenders["paper, baseline"] = build_baseline(reference, args.baseline_src)
    if args.kernels:
        for kernel in KERNELS:
            contenders[WITHOUT + kernel] = build_without(reference, kernel)
    if args.compile:
        contenders["paper, compiled"] = torch.compile(build_ours(reference, "paper"))
    # Shortest first; each pass warms up once, at its first size.
    cases = [(mode, batch) for batch in sorted(args.batches) for mode in args.modes]
    cases.sort(key=lambda case: (case[1], case[0] == "train"))
    report["speed"] = []
    for index, (mode, batch) in enumerate(cases):
        first = all(m != mode for m, _ in cases[:index])
        report["speed"].append(speed(reference, contenders, batch, args.frames, mode, args.pairs, warm_up=first))
    if not args.no_floor and DEVICE.type == "cpu":
        report["floor"] = [floor(reference, contenders["paper"], batch, args.frames, report["speed"])
                           for batch in sorted(args.batches)]
    if not args.no_profile and DEVICE.type == "cpu":
        case = Case(args.profile_batch, args.frames)
        report["profile_batch"] = args.profile_batch
        report["profile"] = {
            "ours (paper)": profile(lambda: ours_train(contenders["paper"], case)),
            "reference": profile(lambda: reference_train(reference, case)),
        }
    print_tables(report)
    from mska_core.io import atomic_write_bytes

    atomic_write_bytes(Path(args.json), (json.dumps(report, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Latency of one clip on the CPU: the encoder and recognition heads in torch eager (fast and plain
attention paths), under torch.compile, and exported by ``mska export`` under onnxruntime.

The model is the one ``--config`` describes (default: the MSKA paper's, 44 M parameters) with random
weights, saved as a ``mska train`` checkpoint and exported through :func:`mska_core.export.export_onnx`
(the same path as ``mska export``, its onnxruntime check included). Every contender computes the same
thing: keypoints and lengths in, every head's log-probabilities and the output lengths out
(:class:`mska_core.export.onnx.RecognitionGraph`); CTC decoding is not timed. The contenders run in
interleaved rounds so that load on the machine affects them alike; the table gives the median and
the fastest of every call.

It also records what the other ways of capturing the graph say on the same model (the TorchScript
exporter; ``torch.export`` of the fast path), which is why ``mska export`` does what it does.

    python -m bench.deploy [--config F] [--frames 128] [--threads 2] [--rounds 5] [--repeat 4]
                           [--no-exporters] [--json bench/results/deploy.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkpoint_of(config_path: Path, folder: Path) -> tuple[Path, int]:
    """A ``best.pt`` of the config's model with random weights, and its parameter count."""
    import torch

    from mska_core.checkpoints import make_payload, save_checkpoint
    from mska_core.config import load_config
    from mska_core.config.checks import providers_of, resolve_model
    from mska_core.data.vocab import GLOSS_SPECIALS, TEXT_SPECIALS, Vocabularies, Vocabulary
    from mska_core.registry import get_registry
    from mska_core.training.model import build_model

    registry = get_registry()
    config = resolve_model(load_config(config_path), registry)
    size = config.model.vocab_size or 1094
    glosses = Vocabulary(GLOSS_SPECIALS + tuple(f"G{i}" for i in range(size - len(GLOSS_SPECIALS))), GLOSS_SPECIALS)
    vocabularies = Vocabularies(gloss=glosses, text=Vocabulary(TEXT_SPECIALS, TEXT_SPECIALS))
    losses = {}
    if "translation" in config.losses and config.losses["translation"].weight > 0:  # as load_trained builds it
        losses["translation"] = registry.losses.get("translation").build(**config.losses["translation"].options)
    torch.manual_seed(0)
    model = build_model(config, vocabularies, registry=registry, losses=losses).eval()
    path = folder / "best.pt"
    save_checkpoint(make_payload("model", model.state_dict(), config=config, vocabularies=vocabularies.to_dict(),
                                 providers=providers_of(config, registry), registry=registry), path,
                    registry=registry)
    return path, sum(p.numel() for p in model.parameters())


def exporter_attempts(encoder, frames: int) -> dict[str, str]:
    """What the other ways of capturing the graph give on this model: the TorchScript exporter on the
    plain attention path, and ``torch.export`` on the fast path (``mska export`` uses ``torch.export``
    on the plain path). ``"exported"``, or the first line of the error."""
    import contextlib
    import io
    import sys
    import warnings

    import torch

    from mska_core.export.onnx import RecognitionGraph

    keypoints = torch.zeros(2, frames, encoder.num_joints, encoder.in_channels)
    lengths = torch.tensor([frames, frames - 4])
    attempts = {}
    for name, fused, dynamo in (("TorchScript exporter (dynamo=False), plain path", False, False),
                                ("torch.export (dynamo=True), fast path", True, True)):
        graph = RecognitionGraph(copy.deepcopy(encoder).set_fused_kernels(fused)).eval()
        try:
            with torch.no_grad(), contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    dims = torch.export.Dim("batch"), torch.export.Dim("frames", min=4)
                    torch.onnx.export(graph, (keypoints, lengths), dynamo=True, input_names=["keypoints", "lengths"],
                                      dynamic_shapes=({0: dims[0], 1: dims[1]}, {0: dims[0]}))
                else:
                    torch.onnx.export(graph, (keypoints, lengths), io.BytesIO(), dynamo=False, opset_version=17,
                                      input_names=["keypoints", "lengths"],
                                      dynamic_axes={"keypoints": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}})
            attempts[name] = "exported"
        except Exception as exc:  # the point is to record what the exporter says
            while exc.__cause__ is not None:  # the exporter wraps the error that says why
                exc = exc.__cause__
            line = re.sub(r"\x1b\[[0-9;]*m", "", (str(exc).strip().splitlines() or [""])[0])
            attempts[name] = f"{type(exc).__name__}: {line[:160]}"
    return attempts


def timed(call: Callable[[], object], times: list[float], repeat: int) -> None:
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "configs" / "mska-slr-paper.toml")
    parser.add_argument("--frames", type=int, default=128, help="frames of the clip")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of torch and onnxruntime")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=4, help="calls per contender per round")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "deploy.json"))
    parser.add_argument("--no-exporters", action="store_true",
                        help="skip trying the TorchScript exporter and torch.export of the fast path")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as temporary:
        result = measure(args, Path(temporary))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


def measure(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    """Export the model into ``folder``, time the contenders, print the table; the JSON record."""
    import onnxruntime
    import torch

    from mska_core.export.onnx import RecognitionGraph, export_onnx
    from mska_core.registry import get_registry
    from mska_core.training.trained import load_trained

    checkpoint, parameters = checkpoint_of(args.config, folder)
    started = time.perf_counter()
    report = export_onnx(checkpoint, folder / "model.onnx")
    export_s = time.perf_counter() - started

    trained = load_trained(checkpoint, registry=get_registry())
    encoder = trained.model.encoder.eval()
    generator = torch.Generator().manual_seed(0)
    keypoints = torch.rand(1, args.frames, encoder.num_joints, encoder.in_channels, generator=generator)
    keypoints[..., :2] = keypoints[..., :2] * 2 - 1
    lengths = torch.tensor([args.frames])
    fast = RecognitionGraph(encoder).eval()
    plain = RecognitionGraph(copy.deepcopy(encoder).set_fused_kernels(False)).eval()
    compiled_encoder = copy.deepcopy(encoder)
    compiled_encoder.compile()  # in place, as [train] compile does; the batch record is built outside
    compiled = RecognitionGraph(compiled_encoder).eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    feeds = {"keypoints": keypoints.numpy(), "lengths": lengths.numpy()}

    contenders: dict[str, Callable[[], object]] = {
        "torch eager (fast path)": lambda: fast(keypoints, lengths),
        "torch eager (plain path)": lambda: plain(keypoints, lengths),
        "torch.compile (fast path)": lambda: compiled(keypoints, lengths),
        "onnxruntime (mska export)": lambda: session.run(None, feeds),
    }
    with torch.inference_mode():
        started = time.perf_counter()
        compiled(keypoints, lengths)
        compile_s = time.perf_counter() - started
        for call in contenders.values():  # warm-up
            timed(call, [], 2)
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, call in contenders.items():
                timed(call, samples[name], args.repeat)
        reference = fast(keypoints, lengths)
    attempts = {} if args.no_exporters else exporter_attempts(encoder, 16)
    got = session.run(None, feeds)
    error = max(float(((torch.from_numpy(g) - r).abs() / r.abs().clamp_min(0.1)).max())
                for g, r in zip(got[:-1], reference[:-1]))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["torch eager (fast path)"]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one clip of {args.frames} frames, {parameters / 1e6:.1f} M parameters, "
                        f"{args.threads} threads, CPU (lower is better)")
    table.add_column("contender")
    table.add_column("median ms", justify="right")
    table.add_column("min ms", justify="right")
    table.add_column("x eager fast", justify="right")
    for name, values in samples.items():
        table.add_row(name, f"{medians[name] * 1e3:.1f}", f"{min(values) * 1e3:.1f}", f"{base / medians[name]:.2f}")
    console = Console()
    console.print(table)
    console.print(f"export {export_s:.1f} s ({report.bytes / 2**20:.1f} MiB, checked: max relative error "
                  f"{report.max_relative_error:.1e}); first torch.compile call {compile_s:.1f} s; onnxruntime vs "
                  f"eager on this clip: max relative error {error:.1e}")
    for name, outcome in attempts.items():
        console.print(f"{name}: {outcome}", markup=False, soft_wrap=True)
    result = {
        "benchmark": "deploy",
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "parameters": parameters,
        "frames": args.frames,
        "threads": args.threads,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "median_ms": {name: value * 1e3 for name, value in medians.items()},
        "min_ms": {name: min(values) * 1e3 for name, values in samples.items()},
        "speedup_vs_eager_fast": {name: base / value for name, value in medians.items()},
        "export_s": export_s,
        "onnx_bytes": report.bytes,
        "export_check_max_relative_error": report.max_relative_error,
        "first_compile_call_s": compile_s,
        "onnx_vs_eager_max_relative_error": error,
        "other_exporters": attempts,
    }
    return result


if __name__ == "__main__":
    main()

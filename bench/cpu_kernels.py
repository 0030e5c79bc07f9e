"""The CPU kernels our models choose between, side by side on the shapes they compute.

**Products.**
A linear map of rows ``[M, in]`` by a weight ``[out, in]`` runs as BLAS's product (``F.linear``,
MKL on x86 builds of torch) or as oneDNN's 1×1 convolution of a channels-last image
(``mska_core.backbones.products``, which picks one per process). For each shape — the ViT-S/14
linear maps of a DINO step at batch 32 (112 px and 56 px views) and the MSKA encoder's 1×1 maps at
B=4, T=100 — both are timed interleaved, forward alone (no grad) and forward + backward, medians of
``--rounds``, with the largest difference of their outputs. The last line says which kernel
``auto`` picks here.

**Attention** of a crop ViT (``mska_core.backbones.vit.crop_attention``): torch's
``scaled_dot_product_attention`` through its CPU flash kernel and through its math kernel, forward +
backward, on ViT-S/14's heads at 112 px (65 tokens) and 56 px (17 tokens), batch 32 views.

**The optimiser step** of DINO pretraining (``training.dino.build_optimizer``): AdamW over a
ViT-S/14's parameters with torch's ``foreach`` kernels (its default) and with its ``fused`` kernel.

    python -m bench.cpu_kernels [--threads 2] [--rounds 9]

Writes ``bench/results/cpu_kernels.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mska_core.backbones import products

SHAPES = {  # name -> (rows, in, out)
    "ViT-S qkv, 2 x 32 views of 112 px": (64 * 65, 384, 1152),
    "ViT-S fc1, 2 x 32 views of 112 px": (64 * 65, 384, 1536),
    "ViT-S fc2, 2 x 32 views of 112 px": (64 * 65, 1536, 384),
    "ViT-S fc1, 8 x 32 views of 56 px": (256 * 17, 384, 1536),
    "encoder attend map, B=4 (hands, first blocks)": (4 * 100 * 21, 6 * 64, 64),
    "encoder mix map, B=4 (body, 256 channels)": (4 * 25 * 9, 256, 256),
    "encoder input map, B=4 (face)": (4 * 100 * 68, 3, 64),
    "VisualHead, B=1 (25 frames)": (25, 1024, 1094),
}


def seconds(fn, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved(runs: dict[str, object], rounds: int) -> dict[str, float]:
    """Medians (ms) of ``rounds`` interleaved calls of each run, after one warm-up call each."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name] += seconds(run, 1)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def attention_rows(rounds: int) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    for views, shape in (("2 x 32 views of 112 px", (64, 6, 65, 64)), ("8 x 32 views of 56 px", (256, 6, 17, 64))):
        generator = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(*shape, generator=generator, requires_grad=True) for _ in range(3))
        grad = torch.randn(*shape, generator=generator)
        runs = {}
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)):
            def run(backend=backend, q=q, k=k, v=v, grad=grad) -> None:
                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(q, k, v)
                out.backward(grad)

            runs[name] = run
        medians = interleaved(runs, rounds)
        rows.append({"views": views, "shape": list(shape), "flash_ms": medians["flash"], "math_ms": medians["math"]})
    return rows


def optimiser_row(rounds: int) -> dict:
    from mska_core.backbones import build_arch

    parameters = list(build_arch("dinov2_vits14", img_size=112).parameters())
    for param in parameters:
        param.grad = torch.randn_like(param)
    optimisers = {"foreach": torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.04, foreach=True),
                  "fused": torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.04, fused=True)}
    medians = interleaved({name: opt.step for name, opt in optimisers.items()}, rounds)
    return {"parameters": sum(p.numel() for p in parameters), "foreach_ms": medians["foreach"], "fused_ms": medians["fused"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", default="bench/results/cpu_kernels.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, (m, k, n) in SHAPES.items():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(m, k, generator=generator, requires_grad=True)
        weight = torch.randn(n, k, generator=generator, requires_grad=True)
        bias = torch.randn(n, generator=generator, requires_grad=True)
        grad = torch.randn(m, n, generator=generator)
        kernels = {"blas": F.linear, "onednn": products.onednn_linear}
        runs = {}
        for kernel, fn in kernels.items():
            def forward(fn=fn, x=x, weight=weight, bias=bias) -> None:
                with torch.no_grad():
                    fn(x, weight, bias)

            def train(fn=fn, x=x, weight=weight, bias=bias, grad=grad) -> None:
                fn(x, weight, bias).backward(grad)

            runs[(kernel, "forward")] = forward
            runs[(kernel, "train")] = train
        for run in runs.values():
            run()  # warm-up
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for _ in range(args.rounds):  # interleaved: one of each per round
            for key, run in runs.items():
                times[key] += seconds(run, 1)
        with torch.no_grad():
            reference = F.linear(x, weight, bias)
            difference = float((products.onednn_linear(x, weight, bias) - reference).abs().max() / reference.abs().max())
        medians = {f"{kernel}_{mode}_ms": statistics.median(values) * 1000 for (kernel, mode), values in times.items()}
        row = {"shape": name, "rows": m, "in": k, "out": n, **medians, "relative_difference": difference,
               "forward_ratio": medians["blas_forward_ms"] / medians["onednn_forward_ms"],
               "train_ratio": medians["blas_train_ms"] / medians["onednn_train_ms"],
               "routed": products.routes(x.detach(), weight.detach())}
        rows.append(row)

    attention = attention_rows(args.rounds)
    optimiser = optimiser_row(args.rounds)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=200)
    table = Table(title=f"float32 linear maps, BLAS vs oneDNN, {args.threads} threads, medians of {args.rounds}")
    for column in ("shape", "M x in x out", "BLAS fwd ms", "oneDNN fwd ms", "BLAS / oneDNN fwd",
                   "BLAS fwd+bwd ms", "oneDNN fwd+bwd ms", "BLAS / oneDNN fwd+bwd", "rel. diff.", "routed"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["shape"], f"{row['rows']} x {row['in']} x {row['out']}", f"{row['blas_forward_ms']:.2f}",
                      f"{row['onednn_forward_ms']:.2f}", f"{row['forward_ratio']:.2f}x", f"{row['blas_train_ms']:.2f}",
                      f"{row['onednn_train_ms']:.2f}", f"{row['train_ratio']:.2f}x", f"{row['relative_difference']:.1e}",
                      "yes" if row["routed"] else "no")
    console.print(table)
    table = Table(title="crop ViT attention (scaled_dot_product_attention), forward + backward")
    for column in ("views", "q/k/v", "flash ms", "math ms", "flash / math"):
        table.add_column(column, justify="right")
    for row in attention:
        table.add_row(row["views"], " x ".join(map(str, row["shape"])), f"{row['flash_ms']:.2f}",
                      f"{row['math_ms']:.2f}", f"{row['flash_ms'] / row['math_ms']:.2f}x")
    console.print(table)
    console.print(f"AdamW step over ViT-S/14's parameters: foreach {optimiser['foreach_ms']:.1f} ms, "
                  f"fused {optimiser['fused_ms']:.1f} ms ({optimiser['foreach_ms'] / optimiser['fused_ms']:.2f}x)")
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": args.threads,
                          "cpu_capability": torch.backends.cpu.get_cpu_capability()},
              "cpu_products": products.cpu_products(), "rows": rows, "attention": attention,
              "optimiser": optimiser}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    from mska_core.io import atomic_write_bytes

    atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
    print(f"large CPU linear maps here go through: {products.cpu_products()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``mska export --checkpoint F --onnx OUT``: the keypoint encoder and recognition heads as ONNX.

The artefact takes keypoints ``[B, T, J, 3]`` and lengths and returns every head's gloss
log-probabilities and the output lengths; the gloss vocabulary, the layout and the preprocessing it
expects are in its metadata (:mod:`mska_core.export.format`). It is checked with onnxruntime against
the checkpoint in torch before it is written (atomically). ``mska predict --onnx OUT CLIP`` runs it.
"""

from __future__ import annotations

import argparse
from typing import Any

from mska_core.cli.output import console, emit_json


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="write a deployable ONNX model of a fine-tuned checkpoint",
        description="Export the keypoint encoder and recognition heads of a 'mska train' checkpoint to ONNX "
                    "(dynamic batch and frames; vocabulary and preprocessing in its metadata), checked with "
                    "onnxruntime against torch. The translation decoder is not exported.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="F", help="best.pt or last.pt of a run")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="the ONNX file to write (e.g. model.onnx)")
    parser.add_argument("--json", action="store_true", help="write the export report as JSON on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mska_core.export.onnx import RTOL, export_onnx
    from mska_core.registry import get_registry

    report = export_onnx(args.checkpoint, args.onnx, registry=get_registry())
    if args.json:
        emit_json(report.as_dict())
        return 0
    out = console()
    out.print(f"wrote {report.path} ({report.bytes / 2**20:.1f} MiB)", soft_wrap=True, markup=False)
    out.print(f"  heads:       {', '.join(report.heads)} ({report.vocab_size} glosses, blank at 0)")
    checked = ", ".join(f"{b}x{t}" for b, t in report.checked)
    out.print(f"  checked:     onnxruntime = torch at {checked} (batch x frames)")
    out.print(f"               max relative error {report.max_relative_error:.1e} (tolerance {RTOL:g})")
    if report.translation != "none":
        out.print("  translation: not exported (mska predict --checkpoint translates)")
    return 0

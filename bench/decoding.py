"""Decoding throughput and peak memory of the text decoders, greedy and at beam 5.

Three decoders read the same memory (``--batch`` clips of ``--memory`` entries of width 512, the
paper's head width): the built-in decoder (``mska``, its default size, a subword tokenizer fitted on a
few sentences), and the ``hf`` decoder on two random mBART folders saved locally: ``hf-tiny`` (width
64, two layers each side) and ``hf-100m`` (width 768, six layers each side, feed-forward 3072: about
100 M parameters with the VL mapper). Weights are random, so every decoder is kept from ever ending a
sentence (its ``</s>`` logit biased down) and every sentence runs to ``--max-length`` tokens: the
figures are those of full-length decoding, the same work for all.

Each decoder runs in a fresh process (``--case``), so that its peak resident memory is its own:
``rss build`` is the process after the decoder is built (torch, transformers and the weights),
``peak decode`` the high-water mark after decoding, ``+decode`` their difference. Sentences per second
are the median of ``--repeats`` timed passes after one warm-up pass, one thread.

    python -m bench.decoding                  # every case, CPU
    python -m bench.decoding --cases mska hf-tiny --repeats 5

Prints a table and writes ``bench/results/decoding.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "decoding.json"
MEMORY_DIM = 512
SENTENCES = [
    "tomorrow it rains in the north", "in the south it is sunny", "it snows in the mountains tomorrow",
    "the wind blows, cold and strong.", "sunny in the north and in the south", "rain in the north today",
]
#: case -> mBART size (None: the built-in decoder)
CASES: dict[str, dict[str, int] | None] = {
    "mska": None,
    "hf-tiny": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    "hf-100m": dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072),
}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_mbart(folder: Path, size: dict[str, int]) -> Path:
    import io

    import sentencepiece
    import torch
    from transformers import MBartConfig, MBartForConditionalGeneration, MBartTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 20), model_writer=model, vocab_size=48, hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, bos_id=0, pad_id=1, eos_id=2, unk_id=3, minloglevel=2)
    (folder / "sentencepiece.bpe.model").write_bytes(model.getvalue())
    tokenizer = MBartTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = MBartConfig(vocab_size=len(tokenizer), pad_token_id=1, bos_token_id=0, eos_token_id=2,
                         decoder_start_token_id=2, max_position_embeddings=256, scale_embedding=True, **size)
    MBartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_case(case: str, folder: Path) -> Any:
    import torch

    from mska_core.text import DecoderRequest

    if CASES[case] is None:
        from mska_core.text.builtin import build

        decoder = build(DecoderRequest(None, MEMORY_DIM, {}, texts=SENTENCES))
        with torch.no_grad():
            decoder.out.bias[decoder.tokenizer.eos_id] = -1e4
        return decoder
    from mska_core.text.hf import build

    decoder = build(DecoderRequest(str(folder), MEMORY_DIM, {"src_lang": "en_XX", "tgt_lang": "en_XX"}))
    with torch.no_grad():
        decoder.lm.final_logits_bias[..., decoder.tokenizer.eos_id] = -1e4
    return decoder


def run_case(case: str, *, batch: int, memory: int, max_length: int, repeats: int) -> dict[str, Any]:
    """One decoder, in this process: build, warm up, time greedy and beam 5."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="mska-bench-") as tmp:
        folder = make_mbart(Path(tmp) / case, CASES[case]) if CASES[case] is not None else Path(tmp)
        decoder = build_case(case, folder).eval()
    params = sum(p.numel() for p in decoder.parameters())
    float(sum(p.detach().float().sum() for p in decoder.parameters()))  # every weight resident (safetensors maps them)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch, memory, MEMORY_DIM, generator=generator)
    lengths = torch.full((batch,), memory)
    rss_build = rss_mib()
    out: dict[str, Any] = {"case": case, "parameters": params, "rss_build_mib": rss_build}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        times = []
        for attempt in range(repeats + 1):
            start = time.perf_counter()
            decoder.generate(features, lengths, max_length=max_length, beam_size=beam, length_penalty=1.0)
            if attempt:  # the first pass warms up
                times.append(time.perf_counter() - start)
        out[name] = {"sentences_per_s": batch / statistics.median(times), "seconds": times}
    out["peak_decode_mib"] = peak_mib()
    out["decode_increase_mib"] = max(0.0, out["peak_decode_mib"] - rss_build)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decoding", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--memory", type=int, default=40, help="memory entries per clip")
    parser.add_argument("--max-length", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # one case, in this process
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = dict(batch=args.batch, memory=args.memory, max_length=args.max_length, repeats=args.repeats)
    if args.case:
        print(json.dumps(run_case(args.case, **settings)))
        return 0
    rows = []
    for case in args.cases:
        command = [sys.executable, "-m", "bench.decoding", "--case", case, "--batch", str(args.batch),
                   "--memory", str(args.memory), "--max-length", str(args.max_length), "--repeats", str(args.repeats)]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    import torch

    result = {"device": "cpu", "threads": 1, "processor": platform.processor() or platform.machine(),
              "torch": torch.__version__, **settings, "memory_dim": MEMORY_DIM, "cases": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU, 1 thread; {args.batch} clips x {args.memory} memory entries, {args.max_length} tokens each")
    print(f"{'decoder':<9} {'params':>8} {'greedy s/s':>10} {'beam5 s/s':>10} {'rss build':>10} {'peak':>8} {'+decode':>8}")
    for row in rows:
        print(f"{row['case']:<9} {row['parameters'] / 1e6:>7.1f}M {row['greedy']['sentences_per_s']:>10.2f} "
              f"{row['beam5']['sentences_per_s']:>10.2f} {row['rss_build_mib']:>8.0f}Mi {row['peak_decode_mib']:>6.0f}Mi "
              f"{row['decode_increase_mib']:>6.0f}Mi")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

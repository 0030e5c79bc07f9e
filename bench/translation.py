"""The text decoder alone on ideal memory: does it learn the synthetic corpus's translation?

The memory is what a perfect recogniser would hand the decoder under ``memory = "glosses"``: one
vector per gloss of the clip, in order (a fixed random vector per gloss plus noise while training,
no noise on the test split). The texts are the quickstart corpus's own (``[data.synthetic]`` of
``mska_core/presets/quickstart.toml``), as lower-cased words (the word vocabulary of earlier
versions) or, in the ``subword`` variants, through the built-in decoder's byte-level BPE. Each variant trains a fresh
:class:`~mska_core.text.builtin.TranslationDecoder` of the quickstart's size (width 64, 2
layers, 4 heads, feed-forward 256) with AdamW, warm-up and cosine as the quickstart does, for the
quickstart's 300 steps of 8 clips, and scores test BLEU-4 (beam 3) and exact sentences along the
way. Recognition is taken out of the picture, so what is left is whether the decoder can learn
the mapping from as many sentences as the quickstart shows it.

    python -m bench.translation                      # every variant
    python -m bench.translation --variants default no-context --steps 300
    python -m bench.translation --checkpoint runs/quickstart/best.pt   # a trained model instead

With ``--checkpoint`` it scores a fine-tuned model's test split instead (CTC greedy; translation
greedy and beam 3), split by whether the ensemble's glosses of a clip are exactly right: the BLEU-4
of the clips with every gloss right is what the decoder makes of the encoder's memory when
recognition is not in the way.

Prints a table and writes ``bench/results/translation.json``. One thread, fixed seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

#: name -> (what differs from the quickstart's decoder, keyword changes)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("the quickstart's decoder (memory context 3)", {}),
    "no-context": ("memory context 1 (each entry alone)", {"context": 1}),
    "no-context, ls 0, dropout 0": ("context 1, no label smoothing, no dropout", {"context": 1, "ls": 0.0, "dropout": 0.0}),
    "no-context, lr 1e-2": ("context 1, learning rate 1e-2", {"context": 1, "lr": 1e-2}),
    "no-context, 1 layer": ("context 1, one decoder layer", {"context": 1, "layers": 1}),
    "no-context, batch 32": ("context 1, 32 clips a step", {"context": 1, "batch": 32}),
    "no-context, 1000 steps": ("context 1, 1000 steps", {"context": 1, "steps": 1000}),
    "ls 0, dropout 0": ("context 3, no label smoothing, no dropout", {"ls": 0.0, "dropout": 0.0}),
    "subword": ("byte-level BPE of the training split, vocab_size 1000 (the built-in default)",
                {"tokenizer": "subword"}),
    "subword 300": ("byte-level BPE, vocab_size 300 (words in pieces)", {"tokenizer": "subword", "vocab_size": 300}),
}


def word_vocabulary(texts: list[str]) -> Any:
    """The word vocabulary of earlier versions (lower-cased words of the training split, in order of
    first appearance), as a :class:`~mska_core.text.tokenizers.WordTokenizer`."""
    from mska_core.text.tokenizers import BOS, EOS, PAD, UNK, WordTokenizer

    words = [PAD, BOS, EOS, UNK]
    for word in (w for text in texts for w in text.lower().split()):
        if word not in words:
            words.append(word)
    return WordTokenizer(words)


def make_tokenizer(kind: str, texts: list[str], vocab_size: int) -> Any:
    """``"words"``: the word vocabulary of earlier versions; ``"subword"``: the built-in decoder's
    byte-level BPE (:mod:`mska_core.text.tokenizers`)."""
    from mska_core.text.tokenizers import SubwordTokenizer

    return word_vocabulary(texts) if kind == "words" else SubwordTokenizer.train(texts, vocab_size)


def run_variant(corpus: Any, vocabularies: Any, *, steps: int, batch: int = 8, lr: float = 3e-3,
                warmup: int = 20, ls: float = 0.1, dropout: float = 0.1, layers: int = 2, context: int = 3,
                dim: int = 64, noise: float = 0.3, beam: int = 3, every: int = 100, seed: int = 0,
                tokenizer: str = "words", vocab_size: int = 1000) -> dict[str, Any]:
    from mska_core.evaluation.metrics import bleu_scores
    from mska_core.text import IGNORE_INDEX
    from mska_core.text.builtin import TranslationDecoder

    text = make_tokenizer(tokenizer, [s.text for s in corpus.train], vocab_size)

    torch.manual_seed(seed)
    vectors = torch.randn(len(vocabularies.gloss), dim)

    def tensors(samples: list[Any], noise: float) -> tuple[torch.Tensor, ...]:
        glosses = [vocabularies.gloss.encode(s.gloss.split()) for s in samples]
        memory = torch.zeros(len(glosses), max(map(len, glosses)), dim)  # [B, K, H]
        for i, g in enumerate(glosses):
            memory[i, : len(g)] = vectors[g] + noise * torch.randn(len(g), dim)
        pairs = [text.teacher_forcing(s.text) for s in samples]
        width = max(len(t) for _, t in pairs)
        inputs = torch.full((len(pairs), width), text.pad_id, dtype=torch.long)
        targets = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)
        for i, (x, t) in enumerate(pairs):
            inputs[i, : len(x)], targets[i, : len(t)] = torch.tensor(x), torch.tensor(t)
        return memory, torch.tensor([len(g) for g in glosses]), inputs, targets

    decoder = TranslationDecoder(len(text), dim, layers=layers, heads=4, ff=256, dropout=dropout,
                                 context=context, pad=text.pad_id)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=lr, betas=(0.9, 0.998), weight_decay=1e-3)
    order = torch.Generator().manual_seed(seed + 1)
    references = [s.text.lower() for s in corpus.test]
    curve = []

    def score() -> tuple[float, int]:
        decoder.eval()
        memory, lengths, _, _ = tensors(corpus.test, 0.0)
        ids = decoder.beam_search(memory, lengths, bos=text.bos_id, eos=text.eos_id, max_length=40, beam_size=beam)
        decoder.train()
        hypotheses = [text.decode(row) for row in ids]
        return bleu_scores(references, hypotheses)["bleu4"], sum(h == r for h, r in zip(hypotheses, references))

    started = time.perf_counter()
    loss = torch.zeros(())
    for step in range(steps):
        if step < warmup:
            rate = lr * (step + 1) / warmup
        else:
            rate = 1e-6 + 0.5 * (lr - 1e-6) * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = rate
        chosen = torch.randint(len(corpus.train), (batch,), generator=order).tolist()
        memory, lengths, inputs, targets = tensors([corpus.train[i] for i in chosen], noise)
        logits = decoder(memory, lengths, inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                                 ignore_index=IGNORE_INDEX, label_smoothing=ls)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            bleu, exact = score()
            curve.append({"step": step + 1, "bleu4": round(bleu, 2), "exact": exact})
    return {"curve": curve, "final_train_loss": round(float(loss.detach()), 4), "test_sentences": len(references),
            "text_vocabulary": len(text),
            "seconds": round(time.perf_counter() - started, 1)}


def breakdown(checkpoint: str) -> list[dict[str, Any]]:
    """Test-split translation of ``checkpoint`` by whether each clip's glosses are exactly right."""
    from mska_core.cli.evaluate_cmd import evaluate_checkpoint
    from mska_core.evaluation.metrics import bleu_scores

    def bleu(predictions: list[Any]) -> float | None:
        if not predictions:
            return None
        references = [p.reference_text.lower() for p in predictions]
        return round(bleu_scores(references, [p.translation or "" for p in predictions])["bleu4"], 2)

    rows = []
    for beam in (1, 3):
        result, predictions, _ = evaluate_checkpoint(
            checkpoint, "test", overrides=[f"train.translation_beam_size={beam}"], beam_size=1)
        right = [p for p in predictions if p.gloss == p.reference_gloss]
        wrong = [p for p in predictions if p.gloss != p.reference_gloss]
        rows.append({"translation_beam": beam, "wer": round(result["wer"], 2), "bleu4": round(result["bleu4"], 2),
                     "glosses_right": len(right), "bleu4_glosses_right": bleu(right),
                     "exact_glosses_right": sum(p.translation == p.reference_text.lower() for p in right),
                     "bleu4_glosses_wrong": bleu(wrong)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from mska_core.config import load_config
    from mska_core.data.vocab import Vocabularies
    from mska_core.synthetic.corpus import make_corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    parser.add_argument("--steps", type=int, default=300, help="steps of each variant (unless it sets its own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="bench/results/translation.json", metavar="PATH")
    parser.add_argument("--checkpoint", metavar="F", help="score a fine-tuned model's test split instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.checkpoint:
        print("beam  WER %  BLEU-4  glosses right  their BLEU-4  exact  others' BLEU-4")
        for row in breakdown(args.checkpoint):
            print(f"{row['translation_beam']:>4}  {row['wer']:5.2f}  {row['bleu4']:6.2f}  {row['glosses_right']:>13}  "
                  f"{row['bleu4_glosses_right']!s:>12}  {row['exact_glosses_right']:>5}  {row['bleu4_glosses_wrong']!s:>14}")
        return 0
    preset = Path(__file__).resolve().parents[1] / "mska_core" / "presets" / "quickstart.toml"
    corpus = make_corpus(load_config(str(preset)).data.synthetic)
    vocabularies = Vocabularies.from_samples(corpus.train)
    rows = {}
    for name in args.variants:
        what, changes = VARIANTS[name]
        options = {"steps": args.steps, "seed": args.seed, **changes}
        rows[name] = {"what": what, "options": options, **run_variant(corpus, vocabularies, **options)}
        print(f"{name:<30} " + "  ".join(f"{p['step']}: {p['bleu4']:5.1f} ({p['exact']})" for p in rows[name]["curve"])
              + f"  train loss {rows[name]['final_train_loss']:.3f}", flush=True)
    print(f"\ntest BLEU-4 (sentences exactly right of {len(corpus.test)}) after N steps; decoder alone on ideal memory")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": 1, "variants": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

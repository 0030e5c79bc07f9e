"""The MSKA paper's S2T translation side, weight for weight: the reference's own code against ours.

Builds the reference's own ``TranslationNetwork`` and ``VLMapper`` (``translation.py``,
``vl_mapper.py`` of a ``sutwangyan/MSKA`` checkout, imported from ``--reference-src``, kept outside
this repository) on a tiny random mBART saved locally in the layout of the reference's
``pretrained_models/mBart_de`` (standing in for mBART-large-cc25): ``config.json`` and weights,
``sentencepiece.bpe.model`` (trained here, offline, in a second), ``map_ids.pkl`` (the vocabulary
trimmed to the pieces and ``de_DE``, as the reference trimmed mBART-large-cc25), ``gloss2ids.pkl`` with ``<pad>``, ``</s>`` and
``de_DGS``, ``gloss_embeddings.bin``. It writes an S2T checkpoint in the reference's layout
(``{"model": {recognition_network.*, vl_mapper.*, translation_network.*}}``, the recognition network
being our paper preset's under the reference's names), reads it back through our ``mska-paper``
format (the encoder, strictly) and :func:`~mska_core.checkpoints.paper.convert_reference_translation`
into the ``hf`` decoder on the same folder, and feeds both sides the same gloss features and
translations:

- the texts' token ids (ours from :class:`~mska_core.text.hf.PretrainedTokenizer` with
  ``token_map = map_ids.pkl``, the reference's from its ``TextTokenizer``) must agree;
- ``translation logits max rel error``: ``max |ours - reference| / max |reference|`` over every
  position the loss reads;
- beam-5 translations: the reference's ``generate`` (from its own ``transformer_inputs``, its
  decoding starting from ``de_DE`` as it trains, see :func:`compare`) against ours, as text;
- the training loss: the reference's ``translation_loss`` (``XentLoss``, label smoothing 0.2, summed,
  divided by the batch) against the same formula on our logits and targets.

Dropout is off (eval mode) so that one pass is one number. The reference's ``.cuda()``/``.to('cuda')``
are the identity here, and the modules its imports name but this path never uses (tensorflow, cv2,
einops, ...) are empty stand-ins while it imports.

    python -m bench.translation_reference --reference-src /path/to/MSKA

Prints a table; its last line is ``translation logits max rel error: X``. Writes
``bench/results/translation_reference.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "translation_reference.json"
PRESET = ROOT / "examples" / "configs" / "mska-slr-paper.toml"
#: The reference's S2T settings (configs/phoenix-2014t_s2t.yaml).
SRC_GLOSS, TGT_LANG, SMOOTHING, MEMORY_DIM = "de_DGS", "de_DE", 0.2, 512
#: Decoding as the reference's S2T config (num_beams 5), a short maximum for a random model.
BEAMS, MAX_LENGTH = 5, 12
SENTENCES = [
    "am tag wechselhaft mit wolken und sonne",
    "im norden regnet es morgen",
    "heute nacht wird es kalt im süden",
    "der wind weht stark an der küste",
    "morgen scheint die sonne überall",
    "in den bergen fällt schnee",
]
GLOSSES = ["morgen", "regen", "sonne", "wolke", "nord", "sued", "kalt", "wind", "schnee", "berg"]
#: The tiny stand-in for mBART-large-cc25 (same architecture, same conventions: scaled embeddings).
TINY_MBART = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                  max_position_embeddings=256, scale_embedding=True)


# -- the reference's model folder -------------------------------------------------------------------


def make_reference_folder(folder: Path, seed: int = 0) -> dict[str, Any]:
    """The files the reference's ``TranslationNetwork`` reads, for a tiny random mBART."""
    import sentencepiece
    from transformers import MBartConfig, MBartForConditionalGeneration, MBartTokenizer
    from transformers.models.mbart.tokenization_mbart import FAIRSEQ_LANGUAGE_CODES as FAIRSEQ_CODES

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 20), model_writer=model, vocab_size=50, model_type="unigram", hard_vocab_limit=False,
        character_coverage=1.0, bos_id=0, pad_id=1, eos_id=2, unk_id=3, minloglevel=2)
    (folder / "sentencepiece.bpe.model").write_bytes(model.getvalue())
    tokenizer = MBartTokenizer.from_pretrained(folder)
    # the trimmed vocabulary, as the reference cut mBART-large-cc25 to German: the special tokens (which
    # keep their ids), the sentencepiece pieces, and of the 25 language codes only de_DE
    target = tokenizer.convert_tokens_to_ids(TGT_LANG)
    pieces = [i for i in range(len(tokenizer)) if tokenizer.convert_ids_to_tokens(i) not in FAIRSEQ_CODES]
    kept = sorted({*pieces, target} - {tokenizer.convert_tokens_to_ids("<mask>")})
    map_ids = {old: new for new, old in enumerate(kept)}
    torch.manual_seed(seed)
    config = MBartConfig(vocab_size=len(kept), pad_token_id=tokenizer.pad_token_id, bos_token_id=0,
                         eos_token_id=2, decoder_start_token_id=2, **TINY_MBART)
    MBartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "map_ids.pkl").write_bytes(pickle.dumps(map_ids))
    gloss2ids = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{g: 4 + i for i, g in enumerate(GLOSSES)}}
    gloss2ids[SRC_GLOSS] = len(gloss2ids)
    (folder / "gloss2ids.pkl").write_bytes(pickle.dumps(gloss2ids))
    torch.save({g: torch.randn(config.d_model) for g in gloss2ids}, folder / "gloss_embeddings.bin")
    return gloss2ids


# -- the reference's own code ------------------------------------------------------------------------


@contextlib.contextmanager
def cuda_is_identity():
    """The reference moves tensors with ``.cuda()`` and ``.to('cuda')``: the identity on this CPU."""
    cuda, to = torch.Tensor.cuda, torch.Tensor.to

    def to_cpu(self, *args, **kwargs):
        if args and (args[0] == "cuda" or (isinstance(args[0], torch.device) and args[0].type == "cuda")):
            return self
        return to(self, *args, **kwargs)

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.to = to_cpu
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.Tensor.to = cuda, to


def import_reference(src: Path) -> tuple[Any, Any, Any]:
    """``(translation, vl_mapper, utils)`` modules of the checkout ``src``, which leave no trace in
    ``sys.modules`` afterwards."""
    from bench.encoder import STUBBED, stubbed_imports

    src = src.resolve()
    if not (src / "translation.py").is_file():
        print(f"--reference-src {src}: no translation.py there; it takes a checkout of sutwangyan/MSKA",
              file=sys.stderr)
        raise SystemExit(2)
    import torch._dynamo  # noqa: F401  (imported before the stand-ins exist, as they must not be seen by it)
    import torchvision.utils  # noqa: F401

    before = set(sys.modules)
    sys.path.insert(0, str(src))
    try:
        with stubbed_imports(), _stubbed("loguru", "wandb", "seaborn", "matplotlib", *STUBBED):
            modules = tuple(importlib.import_module(name) for name in ("translation", "vl_mapper", "utils"))
    finally:
        sys.path.remove(str(src))
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(src)):
                del sys.modules[name]
    return modules


@contextlib.contextmanager
def _stubbed(*names: str):
    from bench import encoder

    saved = encoder.STUBBED
    encoder.STUBBED = tuple(dict.fromkeys(names))
    try:
        with encoder.stubbed_imports():
            yield
    finally:
        encoder.STUBBED = saved


def build_reference(modules: tuple[Any, Any, Any], folder: Path) -> tuple[Any, Any]:
    """The reference's ``TranslationNetwork`` (task S2T, its dropout overrides) and ``VLMapper`` (projection)."""
    translation, vl_mapper, _ = modules
    cfg = {
        "TextTokenizer": {"pretrained_model_name_or_path": str(folder), "pruneids_file": str(folder / "map_ids.pkl"),
                          "tgt_lang": TGT_LANG},
        "pretrained_model_name_or_path": str(folder),
        "overwrite_cfg": {"attention_dropout": 0.1, "dropout": 0.3},
        "GlossTokenizer": {"gloss2id_file": str(folder / "gloss2ids.pkl"), "src_lang": SRC_GLOSS},
        "GlossEmbedding": {"gloss2embed_file": str(folder / "gloss_embeddings.bin")},
    }
    network = translation.TranslationNetwork(cfg=cfg, task="S2T")
    mapper = vl_mapper.VLMapper(cfg={"type": "projection"}, in_features=MEMORY_DIM, out_features=network.input_dim)
    return network, mapper


def reference_text(network: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    """The reference's ``TextTokenizer`` on ``texts``. transformers 5 dropped ``as_target_tokenizer``;
    the reference's call of it is given back as what it did in transformers 4 (mBART's target
    format, ``tokens </s> tgt_lang``; without it the language code would be the source one's). A
    call without ``text_target`` switches to the source format, which for mBART is the same
    ``tokens </s> src_lang``: so the source language is the target one while it lasts."""
    tokenizer = network.text_tokenizer.tokenizer

    @contextlib.contextmanager
    def as_target_tokenizer():
        source = tokenizer.src_lang
        tokenizer.src_lang = tokenizer.tgt_lang
        try:
            yield
        finally:
            tokenizer.src_lang = source

    tokenizer.as_target_tokenizer = as_target_tokenizer
    return network.text_tokenizer(texts)


def xent_loss(logits: torch.Tensor, targets: torch.Tensor, pad: int, smoothing: float) -> torch.Tensor:
    """The reference's ``XentLoss`` formula (label smoothing over ``V - 2`` classes, ``pad`` never
    predicted, padded positions dropped, KL summed) divided by the batch, as its S2T loss is."""
    log_probs = logits.float().log_softmax(-1).flatten(0, 1)
    targets = targets.flatten()
    vocab = log_probs.shape[-1]
    smooth = torch.full_like(log_probs, smoothing / (vocab - 2))
    smooth.scatter_(1, targets.clamp_min(0)[:, None], 1.0 - smoothing)
    smooth[:, pad] = 0.0
    smooth[(targets == pad) | (targets < 0)] = 0.0
    kl = torch.where(smooth > 0, smooth * (smooth.clamp_min(1e-30).log() - log_probs), torch.zeros_like(smooth))
    return kl.sum() / logits.shape[0]


def randomise(*modules: Any, seed: int) -> None:
    """Trained-looking weights: matrices of unit gain (mBART's own init, std 0.02, leaves the encoder's
    input nearly without effect on the logits, so a misplaced input would hardly show), non-zero
    biases, layer-norm scales around 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for name, tensor in module.named_parameters():
                noise = torch.randn(tensor.shape, generator=generator)
                if tensor.dim() == 2:
                    tensor.copy_(noise / tensor.shape[1] ** 0.5)
                elif "norm" in name and name.endswith("weight"):
                    tensor.copy_(1 + 0.1 * noise)
                else:
                    tensor.copy_(0.1 * noise)


# -- ours --------------------------------------------------------------------------------------------


def write_checkpoint(path: Path, network: Any, mapper: Any) -> None:
    """An S2T checkpoint in the reference's layout: our paper preset's recognition network under the
    reference's names, the reference's own mapper and translation network."""
    from mska_core.checkpoints.paper import to_reference_state_dict
    from mska_core.config import load_config
    from mska_core.encoder import MSKAEncoder

    encoder = MSKAEncoder.from_config(load_config(PRESET).model, vocab_size=len(GLOSSES) + 4)
    state = to_reference_state_dict(encoder.state_dict())
    state.update({f"vl_mapper.{k}": v for k, v in mapper.state_dict().items()})
    state.update({f"translation_network.{k}": v for k, v in network.state_dict().items()})
    torch.save({"model": state, "optimizer": {}, "scheduler": {}, "epoch": 40}, path)


def load_ours(path: Path, folder: Path, gloss2ids: dict[str, int]) -> tuple[Any, dict[str, Any]]:
    """Our paper encoder (strictly, through the ``mska-paper`` format) and the ``hf`` decoder on
    ``folder`` with the checkpoint's translation side converted into it (strictly)."""
    from mska_core.checkpoints.paper import load_reference_s2t
    from mska_core.config import load_config
    from mska_core.encoder import MSKAEncoder
    from mska_core.text import DecoderRequest
    from mska_core.text.hf import build

    encoder = MSKAEncoder.from_config(load_config(PRESET).model, vocab_size=len(GLOSSES) + 4)
    options = {"src_lang": TGT_LANG, "tgt_lang": TGT_LANG, "dropout": 0.3, "attention_dropout": 0.1,
               "token_map": str(folder / "map_ids.pkl")}
    decoder = build(DecoderRequest(str(folder), MEMORY_DIM, options))
    fmt = load_reference_s2t(path, encoder=encoder, decoder=decoder, gloss2ids=gloss2ids, source_gloss=SRC_GLOSS)
    return decoder, {"format": fmt, "encoder_tensors": len(encoder.state_dict())}


# -- the comparison ----------------------------------------------------------------------------------


def compare(src: Path, *, batch: int = 3, frames: int = 24, seed: int = 0) -> dict[str, Any]:
    from mska_core.text import IGNORE_INDEX

    modules = import_reference(src)
    with tempfile.TemporaryDirectory(prefix="mska-s2t-") as tmp:
        folder = Path(tmp) / "mBart_de"
        gloss2ids = make_reference_folder(folder, seed)
        with cuda_is_identity():
            network, mapper = build_reference(modules, folder)
        randomise(network, mapper, seed=seed + 1)
        network.eval(), mapper.eval()
        path = Path(tmp) / "best.pth"
        write_checkpoint(path, network, mapper)
        decoder, loaded = load_ours(path, folder, gloss2ids)
        decoder.eval()

        texts = SENTENCES[:batch]
        features = torch.randn(batch, frames, MEMORY_DIM)  # the fuse head's gloss features [B, T, 512]
        lengths = torch.tensor([frames - 5 * i for i in range(batch)])
        reference_ids = reference_text(network, texts)
        with torch.no_grad(), cuda_is_identity():
            mapped = mapper({"gloss_feature": features})
            out = network(input_feature=mapped, input_lengths=lengths, **reference_ids)
        reference_logits = out["logits"]
        # transformers >= 4.38 puts the config's decoder_start_token_id (</s>) in front of decoder_input_ids
        # that do not start with it: the reference's generate would decode from "</s> de_DE", not from the
        # "de_DE" it trains with (and ran with on the transformers it was written for); the start is de_DE
        network.model.generation_config.decoder_start_token_id = network.text_tokenizer.sos_index
        with torch.no_grad(), cuda_is_identity():
            embedded = {k: out["transformer_inputs"][k] for k in ("inputs_embeds", "attention_mask")}
            generated = network.generate(**embedded, num_beams=BEAMS, max_length=MAX_LENGTH + 1, length_penalty=1.0)
        translations = {"reference": list(generated["decoded_sequences"]),
                        "ours": decoder.generate(features, lengths, max_length=MAX_LENGTH, beam_size=BEAMS,
                                                 length_penalty=1.0)}

        pairs = [decoder.tokenizer.teacher_forcing(t) for t in texts]
        width = max(len(i) for i, _ in pairs)
        inputs = torch.tensor([i + [decoder.tokenizer.pad_id] * (width - len(i)) for i, _ in pairs])
        targets = torch.tensor([t + [IGNORE_INDEX] * (width - len(t)) for _, t in pairs])
        with torch.no_grad():
            logits = decoder(features, lengths, inputs)
    read = targets != IGNORE_INDEX  # [B, L]: the positions the loss reads
    labels = reference_ids["labels"][:, :width]
    ids_agree = bool((labels[read] == targets[read]).all()) and bool(
        (reference_ids["decoder_input_ids"][:, :width][read] == inputs[read]).all())
    difference = (logits - reference_logits[:, :width])[read].abs().max()
    rel_error = float(difference / reference_logits[:, :width][read].abs().max())
    ours_loss = float(xent_loss(logits, torch.where(read, targets, decoder.tokenizer.pad_id),
                                decoder.tokenizer.pad_id, SMOOTHING))
    reference_loss = float(out["translation_loss"])
    return {
        "reference_src": str(src),
        "lm": {"model_type": "mbart", **TINY_MBART, "vocab_size": len(decoder.tokenizer)},
        "batch": batch, "frames": frames, "lengths": lengths.tolist(),
        "checkpoint": loaded,
        "token_ids_agree": ids_agree,
        "logits_max_abs_error": float(difference),
        "logits_max_rel_error": rel_error,
        "reference_translation_loss": reference_loss,
        "ours_translation_loss_xent_formula": ours_loss,
        "loss_rel_error": abs(ours_loss - reference_loss) / abs(reference_loss),
        "beam5_translations": translations,
        "beam5_translations_agree": translations["ours"] == translations["reference"],
        "torch": torch.__version__,
        "transformers": importlib.import_module("transformers").__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.translation_reference", description=__doc__.split("\n")[0])
    parser.add_argument("--reference-src", required=True, type=Path,
                        help="a checkout of sutwangyan/MSKA (translation.py, vl_mapper.py, utils.py)")
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    result = compare(args.reference_src, batch=args.batch, frames=args.frames)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("checkpoint format (recognition network)", f"{result['checkpoint']['format']}, "
                                                    f"{result['checkpoint']['encoder_tensors']} tensors, strict"),
        ("token ids (ours == reference TextTokenizer)", str(result["token_ids_agree"])),
        ("translation loss, reference (XentLoss)", f"{result['reference_translation_loss']:.6f}"),
        ("translation loss, ours (same formula)", f"{result['ours_translation_loss_xent_formula']:.6f}"),
        ("loss rel error", f"{result['loss_rel_error']:.2e}"),
        ("beam-5 translations (ours == reference generate)", str(result["beam5_translations_agree"])),
        ("logits max abs error", f"{result['logits_max_abs_error']:.2e}"),
    ]
    for name, value in rows:
        print(f"{name:<46} {value}")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    print(f"translation logits max rel error: {result['logits_max_rel_error']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

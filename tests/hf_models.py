"""Tiny random HuggingFace seq2seq models saved as local folders, built offline for the tests.

Each folder is what ``save_pretrained`` writes (config, ``model.safetensors``, the tokenizer's files),
with a sentencepiece model trained here in a fraction of a second on :data:`SENTENCES`.
"""

from __future__ import annotations

import io
from pathlib import Path

#: What the tokenizers are trained on: the synthetic corpus's words, punctuation, a few more.
SENTENCES = [
    "tomorrow it rains in the north", "in the south sunny", "it snows in the mountains tomorrow",
    "the wind blows, cold and strong.", "sunny in the north and in the south", "rain in the north today",
]


def _sentencepiece(*, pad: int, eos: int, unk: int, bos: int) -> bytes:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 20), model_writer=model, vocab_size=48, hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, pad_id=pad, eos_id=eos, unk_id=unk, bos_id=bos,
        minloglevel=2)
    return model.getvalue()


def make_mbart(folder: Path, *, d_model: int = 32, safetensors: bool = True) -> Path:
    """A random mBART (one layer each side, width ``d_model``) with an mBART tokenizer."""
    import torch
    from transformers import MBartConfig, MBartForConditionalGeneration, MBartTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentencepiece.bpe.model").write_bytes(_sentencepiece(bos=0, pad=1, eos=2, unk=3))
    tokenizer = MBartTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = MBartConfig(
        vocab_size=len(tokenizer), d_model=d_model, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model,
        max_position_embeddings=128, scale_embedding=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2)
    MBartForConditionalGeneration(config).save_pretrained(folder, safe_serialization=safetensors)
    tokenizer.save_pretrained(folder)
    return folder


def make_t5(folder: Path, *, d_model: int = 32) -> Path:
    """A random T5 (one layer each side, width ``d_model``) with a T5 tokenizer."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(_sentencepiece(pad=0, eos=1, unk=2, bos=-1))
    tokenizer = T5Tokenizer.from_pretrained(folder, extra_ids=0)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // 2, d_ff=2 * d_model, num_layers=1,
                      num_decoder_layers=1, num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_bart(folder: Path, *, d_model: int = 32) -> Path:
    """A random BART (one layer each side, width ``d_model``) with a byte-level BPE tokenizer."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = BartTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = BartConfig(vocab_size=len(tokenizer), d_model=d_model, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                        decoder_ffn_dim=2 * d_model, max_position_embeddings=64)
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

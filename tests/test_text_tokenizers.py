"""The built-in decoder's text: a byte-level BPE fitted on the training split (no ``<unk>``,
punctuation split off, exact round trip, deterministic, stored in checkpoints), and the word
vocabulary of earlier checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

TRAIN = [
    "El sordo llegó tarde.",
    "Mañana llueve en el norte.",
    "¿Llueve en el sur?",
    "El sordo vive en el norte, cerca de la costa.",
    "Hoy hace sol y mañana hace frío.",
] * 4


def fitted(vocab_size: int = 320):
    from mska_core.text.tokenizers import SubwordTokenizer

    return SubwordTokenizer.train(TRAIN, vocab_size, max_tokens=64)


def test_a_word_never_seen_in_training_is_encoded_without_unk_and_decoded_back():
    tokenizer = fitted()
    sentence = "Ayer nevó en Zúrich 🌨"  # none of these words (or the emoji) is in TRAIN
    ids = tokenizer.encode(sentence)
    assert tokenizer.tokenizer.token_to_id("<unk>") is None  # every byte has an id: nothing is unknown
    assert ids and all(i > tokenizer.eos_id for i in ids)
    assert tokenizer.decode(ids) == sentence


def test_punctuation_is_split_off_the_word_before_it():
    tokenizer = fitted(vocab_size=2000)  # every training word becomes one unit
    assert tokenizer.tokens("sordo.") == ["Ġsordo", "."]
    assert tokenizer.tokens("El sordo.")[-2:] == ["Ġsordo", "."]
    assert tokenizer.encode("sordo.")[0] == tokenizer.encode("sordo")[0]  # the same unit with and without the period


@pytest.mark.parametrize("text", ["El sordo llegó tarde.", "¿Llueve en el sur?", "  dos   espacios ", "ÀÉÎÕÜ ñ"])
def test_decoding_gives_back_the_text_detokenised(text):
    tokenizer = fitted()
    assert tokenizer.decode(tokenizer.encode(text)) == " ".join(text.split())


def test_teacher_forcing_gives_inputs_behind_bos_and_targets_ending_with_eos():
    tokenizer = fitted()
    inputs, targets = tokenizer.teacher_forcing("El sordo.")
    ids = tokenizer.encode("El sordo.")
    assert inputs == [tokenizer.bos_id, *ids]
    assert targets == [*ids, tokenizer.eos_id]
    long_inputs, long_targets = tokenizer.teacher_forcing(" ".join(["norte"] * 200))
    assert len(long_inputs) == len(long_targets) == 64 and long_targets[-1] == tokenizer.eos_id


def test_the_same_data_gives_the_same_tokenizer():
    assert fitted().to_json() == fitted().to_json()
    assert len(fitted()) <= 320


def test_the_vocabulary_size_is_checked_in_one_line():
    from mska_core.errors import ConfigError
    from mska_core.text.tokenizers import SubwordTokenizer

    with pytest.raises(ConfigError, match="vocab_size.*at least 259"):
        SubwordTokenizer.train(TRAIN, 100)


def test_the_tokenizer_survives_pickling_for_dataloader_workers():
    tokenizer = fitted()
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy.to_json() == tokenizer.to_json() and copy.max_tokens == tokenizer.max_tokens
    assert copy.encode("El sordo.") == tokenizer.encode("El sordo.")


def test_a_decoder_rebuilt_from_a_checkpoint_has_the_same_tokenizer(tmp_path):
    from mska_core.registry import get_registry
    from mska_core.text import build_decoder

    registry = get_registry()
    options = {"layers": 1, "heads": 2, "ff": 16, "vocab_size": 300}
    decoder = build_decoder("mska", registry=registry, memory_dim=8, options=options, texts=TRAIN)
    path = tmp_path / "decoder.pt"
    torch.save({"artifacts": decoder.artifacts(), "state_dict": decoder.state_dict()}, path)
    stored = torch.load(path, weights_only=True)  # plain data: no pickled code needed
    rebuilt = build_decoder("mska", registry=registry, memory_dim=8, options={}, stored=stored["artifacts"])
    rebuilt.load_state_dict(stored["state_dict"])
    assert rebuilt.tokenizer.to_json() == decoder.tokenizer.to_json()
    assert rebuilt.options == decoder.options
    text = "Mañana nieva en Zúrich."
    assert rebuilt.tokenizer.encode(text) == decoder.tokenizer.encode(text)


def test_the_word_vocabulary_of_earlier_checkpoints_still_tokenizes():
    from mska_core.text.tokenizers import WordTokenizer, tokenizer_from_dict

    words = tokenizer_from_dict({"kind": "words", "tokens": ["<pad>", "<bos>", "<eos>", "<unk>", "it", "rains"]})
    assert isinstance(words, WordTokenizer)
    assert words.teacher_forcing("It rains today") == ([1, 4, 5, 3], [4, 5, 3, 2])
    assert words.decode([4, 5, 2, 0]) == "it rains"


def test_a_damaged_stored_tokenizer_is_one_clear_error():
    from mska_core.errors import CheckpointError
    from mska_core.text.tokenizers import tokenizer_from_dict

    with pytest.raises(CheckpointError, match="not one the built-in decoder knows"):
        tokenizer_from_dict({"kind": "sentencepiece"})
    with pytest.raises(CheckpointError, match="cannot be read"):
        tokenizer_from_dict({"kind": "bpe", "json": "{not json"})

"""Text decoders through the ``mska_text_decoders`` hook: any decoder that follows the contract
trains, evaluates, predicts and is rebuilt from its checkpoint alone; ``[optim] part_lr`` and
``[losses.translation] freeze`` act on its parts; resume stays exact with several parameter groups;
checkpoints of earlier versions (a word vocabulary) still load and evaluate."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import fine_tune, tiny_config, train_records
from torch import nn


class CharTokenizer:
    """Characters as tokens: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, then ``chars``."""

    pad_id = 0

    def __init__(self, chars: str) -> None:
        self.chars = chars

    def __len__(self) -> int:
        return len(self.chars) + 3

    def teacher_forcing(self, text):
        ids = [self.chars.index(c) + 3 for c in text if c in self.chars]
        return [1, *ids], [*ids, 2]

    def decode(self, ids):
        return "".join(self.chars[i - 3] for i in ids if i >= 3)


class GruDecoder(nn.Module):
    """A third party's decoder: a ``mapper`` from the head's features to a GRU language model's
    state (the ``lm``), as a pretrained seq2seq model is reached through a VL mapper."""

    def __init__(self, chars: str, memory_dim: int, width: int) -> None:
        super().__init__()
        self.tokenizer = CharTokenizer(chars)
        self.width = width
        self.mapper = nn.Linear(memory_dim, width)
        self.embed = nn.Embedding(len(self.tokenizer), width)
        self.gru = nn.GRU(width, width, batch_first=True)
        self.out = nn.Linear(width, len(self.tokenizer))

    def state(self, memory, lengths):
        valid = (torch.arange(memory.shape[1], device=memory.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        return ((self.mapper(memory) * valid).sum(1) / lengths[:, None].clamp_min(1)).unsqueeze(0)  # [1, B, W]

    def forward(self, memory, memory_lengths, text_input):
        hidden, _ = self.gru(self.embed(text_input), self.state(memory, memory_lengths))
        return self.out(hidden)

    @torch.no_grad()
    def generate(self, memory, memory_lengths, *, max_length, beam_size, length_penalty):
        hidden = self.state(memory, memory_lengths)
        token = torch.ones(memory.shape[0], 1, dtype=torch.long)
        rows = [[] for _ in range(memory.shape[0])]
        for _ in range(max_length):
            step, hidden = self.gru(self.embed(token), hidden)
            token = self.out(step).argmax(-1)
            for row, t in zip(rows, token[:, 0].tolist()):
                row.append(t)
        return [self.tokenizer.decode(row[: row.index(2)] if 2 in row else row) for row in rows]

    def artifacts(self):
        return {"chars": self.tokenizer.chars, "width": self.width}

    def parameter_groups(self):
        return {"mapper": list(self.mapper.parameters()),
                "lm": [*self.embed.parameters(), *self.gru.parameters(), *self.out.parameters()]}


built = []


def build_gru(request):
    if request.stored is not None:
        chars, width = request.stored["chars"], request.stored["width"]
    else:
        chars, width = "".join(sorted(set("".join(request.texts)))), int(request.options.get("width", 8))
    built.append(request)
    return GruDecoder(chars, request.memory_dim, width)


class GruPlugin:
    from mska_core import hookimpl

    @hookimpl
    def mska_text_decoders(self):
        from mska_core.records import TextDecoderSpec

        return [TextDecoderSpec("gru", build_gru, "a character GRU behind a linear mapper")]


def gru_registry():
    from mska_core.registry import make_registry

    return make_registry(GruPlugin())


GRU = ('losses.translation.decoder="gru"', "losses.translation.width=8")


def test_a_decoder_from_a_plugin_trains_evaluates_and_is_rebuilt_from_its_checkpoint(tmp_path):
    from mska_core.data.datasets import ClipDataset, load_corpus
    from mska_core.evaluation.evaluate import evaluate
    from mska_core.training.trained import load_trained

    built.clear()
    registry = gru_registry()
    result = fine_tune(tiny_config(tmp_path, *GRU, "train.epochs=1"), registry=registry)
    request = built[0]
    assert request.memory_dim == 16 and request.payload is None and request.stored is None
    assert request.options["width"] == 8 and len(request.texts) == 8
    assert all(r["loss/translation"] > 0 for r in train_records(result.run_dir))
    best = torch.load(result.best, weights_only=True)
    assert best["text_decoder"]["name"] == "gru"
    assert best["text_decoder"]["artifacts"] == {"chars": "".join(sorted(set("".join(request.texts)))), "width": 8}

    trained = load_trained(result.best, registry=gru_registry())
    assert built[-1].stored == best["text_decoder"]["artifacts"] and built[-1].texts is None
    assert isinstance(trained.model.decoder, GruDecoder)
    weights = trained.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in best["state_dict"].items())
    config = trained.config
    corpus = load_corpus(config.data, registry=registry)
    dataset = ClipDataset(corpus.test, trained.vocabularies, config.data.augment, train=False)
    metrics, predictions = evaluate(trained.model, dataset, trained.vocabularies, device="cpu", batch_size=4,
                                    beam_size=1, translation_beam_size=1, max_text_length=6)
    assert {"bleu4", "rouge_l", "wer"} <= set(metrics)
    assert all(isinstance(p.translation, str) and len(p.translation) <= 6 for p in predictions)


def test_each_part_trains_at_its_own_learning_rate_under_one_schedule(tmp_path):
    from mska_core.training.loop import FineTuning

    config = tiny_config(tmp_path, *GRU, "train.max_steps=2", "optim.lr=2e-3", "optim.warmup_steps=4",
                         "optim.part_lr={encoder = 1e-3, lm = 1e-2}")
    tuning = FineTuning(config, registry=gru_registry())
    tuning.prepare()
    groups = {g["part"]: g for g in tuning.optimizer.param_groups}
    assert list(groups) == ["encoder", "mapper", "lm"]
    assert {name: g["base_lr"] for name, g in groups.items()} == {"encoder": 1e-3, "mapper": 2e-3, "lm": 1e-2}
    result = tuning.run()
    factor = tuning.lr_schedule(1) / 2e-3  # the second step: half-way through the warm-up
    assert factor == pytest.approx(0.5)
    for name, base in (("encoder", 1e-3), ("mapper", 2e-3), ("lm", 1e-2)):
        assert groups[name]["lr"] == pytest.approx(base * factor)
    assert [r["lr"] for r in train_records(result.run_dir)] == pytest.approx([5e-4, 1e-3])


def test_an_unknown_part_is_refused_in_one_line_naming_the_parts(tmp_path, mska):
    from test_train import write_config

    config = write_config(tmp_path)
    proc = mska("train", "--config", str(config), "--set", "optim.part_lr={encoder = 1e-3, lm = 1e-5}")
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "optim.part_lr: 'lm' is not a part of this model; its parts: encoder, decoder" in message
    proc = mska("train", "--config", str(config), "--set", 'losses.translation.freeze=["lm"]')
    assert proc.returncode == 2
    assert "losses.translation.freeze: 'lm' is not a part of the text decoder; its parts: decoder" in proc.stderr


def test_a_frozen_part_keeps_its_weights(tmp_path):
    from mska_core.training.loop import FineTuning

    tuning = FineTuning(tiny_config(tmp_path, *GRU, "train.max_steps=2", 'losses.translation.freeze=["lm"]'),
                        registry=gru_registry())
    tuning.prepare()
    before = {k: v.clone() for k, v in tuning.model.state_dict().items()}
    assert [g["part"] for g in tuning.optimizer.param_groups] == ["encoder", "mapper"]
    tuning.run()
    after = tuning.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    lm = ("decoder.embed.", "decoder.gru.", "decoder.out.")
    assert not [k for k in changed if k.startswith(lm)]
    assert any(k.startswith("decoder.mapper.") for k in changed) and any(k.startswith("encoder.") for k in changed)


def test_resume_is_exact_with_a_learning_rate_per_part(tmp_path):
    overrides = (*GRU, "optim.part_lr={encoder = 1e-3, mapper = 5e-3, lm = 2e-3}", "optim.warmup_steps=2")
    whole = fine_tune(tiny_config(tmp_path / "a", *overrides), registry=gru_registry())
    stopped = fine_tune(tiny_config(tmp_path / "b", *overrides, "train.max_steps=3"), registry=gru_registry())
    assert stopped.global_step == 3
    resumed = fine_tune(tiny_config(tmp_path / "b", *overrides), resume=True, registry=gru_registry())

    def records(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "clips_per_s"} for line in lines]

    assert records(resumed.run_dir) == records(whole.run_dir)
    final_a = torch.load(whole.last, weights_only=True)
    final_b = torch.load(resumed.last, weights_only=True)
    assert all(torch.equal(final_a["state_dict"][k], final_b["state_dict"][k]) for k in final_a["state_dict"])
    assert [g["base_lr"] for g in final_b["optimizer"]["param_groups"]] == [1e-3, 5e-3, 2e-3]


def test_an_unknown_decoder_or_option_is_one_line(tmp_path, mska):
    from test_train import write_config

    config = write_config(tmp_path)
    proc = mska("train", "--config", str(config), "--set", 'losses.translation.decoder="msk"')
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "unknown text decoder 'msk' (did you mean 'mska'?); registered: mska, hf" in proc.stderr
    proc = mska("train", "--config", str(config), "--set", "losses.translation.layer=3")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "layer is not an option of the built-in decoder 'mska'" in proc.stderr


def test_a_decoder_whose_library_is_missing_says_how_to_install_it():
    from mska_core.errors import ConfigError
    from mska_core.text.plugin import _deferred

    build = _deferred("mska_core.text.builtin:build", needs="a_library_that_is_not_installed")
    with pytest.raises(ConfigError, match=r"pip install 'mska-core\[transformers\]'"):
        build(None)


def test_a_checkpoint_of_an_earlier_version_with_a_word_vocabulary_still_evaluates(tmp_path, mska):
    """Before subword text, ``best.pt`` had ``vocabularies.text`` (lower-cased words) and no
    ``text_decoder``; the decoder's weights had the same names."""
    from mska_core.checkpoints import save_checkpoint
    from mska_core.data.datasets import load_corpus
    from mska_core.registry import get_registry
    from mska_core.text.builtin import BuiltinOptions, MskaDecoder
    from mska_core.text.tokenizers import WordTokenizer

    config = tiny_config(tmp_path, "train.epochs=1")
    result = fine_tune(config)
    payload = torch.load(result.best, weights_only=True)
    corpus = load_corpus(config.data, registry=get_registry())
    words = ["<pad>", "<bos>", "<eos>", "<unk>"]
    for word in (w for sample in corpus.train for w in sample.text.lower().split()):
        if word not in words:
            words.append(word)
    old = MskaDecoder(WordTokenizer(words), 16, BuiltinOptions(layers=1, heads=2, ff=16))
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith("decoder.")}
    state.update({f"decoder.{k}": v for k, v in old.state_dict().items()})
    legacy = {k: v for k, v in payload.items() if k != "text_decoder"}
    legacy.update(state_dict=state, vocabularies={**payload["vocabularies"], "text": {"tokens": words,
                                                                                       "specials": words[:4]}})
    save_checkpoint(legacy, tmp_path / "legacy.pt")

    proc = mska("evaluate", "--checkpoint", str(tmp_path / "legacy.pt"), "--json",
                "--predictions", str(tmp_path / "predictions.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert "bleu4" in json.loads(proc.stdout)
    for line in (tmp_path / "predictions.jsonl").read_text().splitlines():
        translation = json.loads(line)["translation"]
        assert all(word in words for word in translation.split())


def test_inspect_against_checks_the_decoder_and_its_text_vocabulary(tmp_path):
    from mska_core.training.fit import check_fit
    from test_train import write_config

    config = write_config(tmp_path)
    result = fine_tune(tiny_config(tmp_path, "train.max_steps=1"))
    report = check_fit(result.last, config)
    assert report.ok, report.failing
    assert report["decoder"].status == "loads"
    checks = {c.name: c for c in report.checks}
    text = checks["text vocabulary"]
    assert text.ok and text.note == "from the data" and text.checkpoint == text.config
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace("[losses.translation]\n", "[losses.translation]\nvocab_size = 259\n"))
    mismatch = check_fit(result.last, other)
    assert not mismatch.ok and "decoder" in mismatch.failing and "text vocabulary" in mismatch.failing
    assert {c.name: c for c in mismatch.checks}["text vocabulary"].config == 259


def test_inspect_shows_the_stored_decoder_without_its_tokenizer_text(tmp_path):
    from mska_core.checkpoints import describe

    result = fine_tune(tiny_config(tmp_path, "train.max_steps=1"))
    shown = describe(result.last)["metadata"]["text_decoder"]
    assert shown == {"name": "mska", "head": "fuse", "memory": "glosses", "artifacts": ["options", "tokenizer"],
                     "tokenizer": "bpe"}

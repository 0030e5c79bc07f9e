"""Pretrained seq2seq decoders from local folders (``hf::PATH``), the VL mapper, and the MSKA paper's
S2T translation side: tiny random mBART and T5 models built and saved inside the tests, no network."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from hf_models import make_bart, make_mbart, make_t5

pytest.importorskip("transformers")

TINY = """
[run]
name = "tiny"
output_dir = "{out}"
seed = 3

[data.synthetic]
num_train = 8
num_dev = 4
num_test = 4
vocab_size = 5
min_glosses = 1
max_glosses = 2
frames_per_gloss = 6

[model]
channels = [8, 8]
inter_channels = [2, 2]
temporal_kernels = [3, 3]
strides = [2, 2]
num_heads = 2
head_hidden = 16
head_ff = 16

[model.streams.face]
[model.streams.hand_left]

[model.heads.fuse]
streams = ["hand_left", "face"]

[losses.ctc]
[losses.distillation]
[losses.translation]
decoder = "hf::{lm}"
label_smoothing = 0.2
{options}

[optim]
lr = 1e-3
warmup_steps = 1

[train]
epochs = {epochs}
batch_size = 4
log_every = 1
test_beam_size = 1
translation_beam_size = 2
max_text_length = 6
progress = false
"""

MBART_OPTIONS = 'src_lang = "en_XX"\ntgt_lang = "en_XX"\ndropout = 0.0\n'


def write_config(folder: Path, lm: Path, *, options: str = MBART_OPTIONS, epochs: int = 2, extra: str = "") -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY.format(out=folder / "runs", lm=lm, options=options, epochs=epochs) + extra)
    return path


@pytest.fixture(scope="module")
def mbart_folder(tmp_path_factory) -> Path:
    return make_mbart(tmp_path_factory.mktemp("lm") / "mbart")


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory) -> Path:
    return make_t5(tmp_path_factory.mktemp("lm") / "t5")


def hf_decoder(folder: Path, memory_dim: int = 16, **options):
    from mska_core.text import DecoderRequest
    from mska_core.text.hf import build

    return build(DecoderRequest(str(folder), memory_dim, options))


def batch_of(decoder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from mska_core.text import IGNORE_INDEX

    pairs = [decoder.tokenizer.teacher_forcing(t) for t in texts]
    width = max(len(i) for i, _ in pairs)
    inputs = torch.tensor([i + [decoder.tokenizer.pad_id] * (width - len(i)) for i, _ in pairs])
    targets = torch.tensor([t + [IGNORE_INDEX] * (width - len(t)) for _, t in pairs])
    return inputs, targets


# -- the VL mapper ----------------------------------------------------------------------------------


def test_the_mapper_appends_its_suffix_after_each_clip_and_masks_the_rest():
    from mska_core.text.mapper import VLMapper

    torch.manual_seed(0)
    mapper = VLMapper(6, 4, suffix=2, scale=2.0)
    mapper.init_suffix(torch.arange(8.0).view(2, 4))
    memory, lengths = torch.randn(2, 5, 6), torch.tensor([5, 3])
    embeds, mask = mapper(memory, lengths)
    assert embeds.shape == (2, 7, 4)
    assert mask.tolist() == [[1] * 7, [1, 1, 1, 1, 1, 0, 0]]
    assert torch.equal(embeds[1, 3:5], 2.0 * torch.arange(8.0).view(2, 4))  # right after the 3 entries
    assert torch.equal(embeds[1, 5:], torch.zeros(2, 4))
    expected = 2.0 * mapper.out(torch.relu(mapper.project(memory[0])))
    torch.testing.assert_close(embeds[0, :5], expected)


def test_what_lies_beyond_a_clips_length_never_reaches_the_mapper_output():
    from mska_core.text.mapper import VLMapper

    mapper = VLMapper(6, 4, suffix=1)
    memory, lengths = torch.randn(2, 5, 6), torch.tensor([5, 2])
    changed = memory.clone()
    changed[1, 2:] = 1e6
    assert torch.equal(mapper(memory, lengths)[0], mapper(changed, lengths)[0])


# -- loading a folder -------------------------------------------------------------------------------


def test_an_mbart_folder_gives_logits_and_translations(mbart_folder):
    decoder = hf_decoder(mbart_folder, src_lang="en_XX", tgt_lang="en_XX").eval()
    inputs, targets = batch_of(decoder, ["tomorrow it rains", "in the south sunny"])
    logits = decoder(torch.randn(2, 7, 16), torch.tensor([7, 4]), inputs)
    assert logits.shape == (*inputs.shape, len(decoder.tokenizer))
    for beam in (1, 3):
        texts = decoder.generate(torch.randn(2, 7, 16), torch.tensor([7, 4]), max_length=5, beam_size=beam,
                                 length_penalty=1.0)
        assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_mbart_targets_end_with_eos_and_decoding_starts_with_the_target_language(mbart_folder):
    decoder = hf_decoder(mbart_folder, src_lang="de_DE", tgt_lang="en_XX")
    tokenizer = decoder.tokenizer.tokenizer
    inputs, targets = decoder.tokenizer.teacher_forcing("it rains in the north")
    assert len(inputs) == len(targets)
    assert inputs[0] == tokenizer.convert_tokens_to_ids("en_XX")
    assert targets[-1] == tokenizer.eos_token_id and inputs[1:] == targets[:-1]
    assert decoder.tokenizer.decode(targets) == "it rains in the north"
    # the suffix starts as the LM's own embeddings of </s> and the source language
    table = decoder.lm.get_input_embeddings().weight
    rows = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("de_DE")]
    assert torch.equal(decoder.mapper.suffix.detach(), table[rows].detach())
    assert decoder.mapper.scale == pytest.approx(32**0.5)


def test_a_t5_folder_trains_and_keeps_its_own_conventions(t5_folder):
    decoder = hf_decoder(t5_folder, dropout=0.0)
    inputs, targets = decoder.tokenizer.teacher_forcing("in the south sunny")
    assert inputs[0] == decoder.lm.config.decoder_start_token_id and targets[-1] == decoder.tokenizer.eos_id
    assert decoder.mapper.scale == 1.0 and decoder.mapper.suffix.shape == (1, 32)
    assert set(decoder.parameter_groups()) == {"mapper", "lm"}
    inputs, targets = batch_of(decoder, ["in the south sunny", "it rains"])
    logits = decoder(torch.randn(2, 5, 16), torch.tensor([5, 2]), inputs)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    loss.backward()
    assert decoder.mapper.project.weight.grad is not None
    assert decoder.lm.get_input_embeddings().weight.grad is not None


def test_a_bart_folder_targets_begin_with_its_bos_and_decoding_starts_from_its_config(tmp_path):
    decoder = hf_decoder(make_bart(tmp_path / "bart")).eval()
    tokenizer = decoder.tokenizer.tokenizer
    inputs, targets = decoder.tokenizer.teacher_forcing("it rains, cold.")
    assert targets[0] == tokenizer.bos_token_id and targets[-1] == tokenizer.eos_token_id
    assert inputs == [decoder.lm.config.decoder_start_token_id, *targets[:-1]]
    assert decoder.tokenizer.decode(targets) == "it rains, cold."
    assert decoder.mapper.scale == 1.0  # BART does not scale its embeddings
    texts = decoder.generate(torch.randn(2, 3, 16), torch.tensor([3, 2]), max_length=4, beam_size=2,
                             length_penalty=1.0)
    assert len(texts) == 2


def test_the_decoder_is_rebuilt_from_its_artifacts_with_the_folder_gone(mbart_folder, tmp_path):
    from mska_core.text import DecoderRequest
    from mska_core.text.hf import build

    folder = shutil.copytree(mbart_folder, tmp_path / "mbart")
    options = {"src_lang": "en_XX", "tgt_lang": "en_XX"}
    decoder = hf_decoder(folder, **options).eval()
    torch.save(decoder.artifacts(), tmp_path / "artifacts.pt")
    shutil.rmtree(folder)
    stored = torch.load(tmp_path / "artifacts.pt", weights_only=True)
    rebuilt = build(DecoderRequest(str(folder), 16, options, stored=stored)).eval()
    rebuilt.load_state_dict(decoder.state_dict(), strict=True)
    inputs, _ = batch_of(decoder, ["tomorrow it snows", "sunny"])
    memory, lengths = torch.randn(2, 4, 16), torch.tensor([4, 2])
    assert torch.equal(rebuilt(memory, lengths, inputs), decoder(memory, lengths, inputs))
    assert rebuilt.tokenizer.teacher_forcing("the wind, cold.") == decoder.tokenizer.teacher_forcing("the wind, cold.")
    assert rebuilt.lm.generation_config.to_dict() == decoder.lm.generation_config.to_dict()


def test_pickled_weights_load_after_the_bounded_check_and_a_malicious_pickle_is_refused(mbart_folder, tmp_path):
    from safetensors.torch import load_file

    from mska_core.errors import MskaError

    folder = shutil.copytree(mbart_folder, tmp_path / "bin")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    decoder = hf_decoder(folder, tgt_lang="en_XX")
    reference = hf_decoder(mbart_folder, tgt_lang="en_XX")
    assert torch.equal(decoder.lm.lm_head.weight, reference.lm.lm_head.weight)

    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    torch.save({"model.shared.weight": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(MskaError, match="builtins.print|print"):
        hf_decoder(folder, tgt_lang="en_XX")


def test_unknown_or_mistyped_options_are_refused(mbart_folder, t5_folder):
    from mska_core.errors import ConfigError

    with pytest.raises(ConfigError, match="beams is not an option of the decoder.*src_lang, tgt_lang"):
        hf_decoder(mbart_folder, beams=3)
    with pytest.raises(ConfigError, match="losses.translation.dropout: expected a probability"):
        hf_decoder(mbart_folder, dropout=2)
    with pytest.raises(ConfigError, match="tgt_lang: 'xx_XX' is not a token"):
        hf_decoder(mbart_folder, tgt_lang="xx_XX")
    with pytest.raises(ConfigError, match="t5 model .* has no attention_dropout"):
        hf_decoder(t5_folder, attention_dropout=0.1)


def test_a_trimmed_vocabulary_reads_through_a_token_map(mbart_folder, tmp_path):
    from mska_core.errors import ConfigError, UnsafeCheckpointError
    from mska_core.text import DecoderRequest
    from mska_core.text.hf import build

    plain = hf_decoder(mbart_folder, tgt_lang="en_XX")
    tokenizer = plain.tokenizer.tokenizer
    rains = tokenizer("rains", add_special_tokens=False)["input_ids"]
    # the model's ids are the tokenizer's shifted by one, and the pieces of "rains" are cut away
    vocab = plain.lm.config.vocab_size
    table = {i: (i + 1) % vocab for i in range(vocab) if i not in rains}
    table.update({i: i for i in range(4)})  # the special tokens keep their ids, as the reference requires
    (tmp_path / "map_ids.pkl").write_bytes(pickle.dumps(table))
    options = {"tgt_lang": "en_XX", "token_map": str(tmp_path / "map_ids.pkl")}
    decoder = hf_decoder(mbart_folder, **options)
    inputs, targets = decoder.tokenizer.teacher_forcing("it rains")
    original = tokenizer("it", add_special_tokens=False)["input_ids"]
    assert inputs[0] == table[tokenizer.convert_tokens_to_ids("en_XX")]
    assert targets == [table[i] for i in original] + [table[tokenizer.unk_token_id]] * len(rains) + [2]
    assert decoder.tokenizer.decode(targets[: len(original)]) == "it"
    rebuilt = build(DecoderRequest(str(mbart_folder), 16, options, stored=decoder.artifacts()))
    assert rebuilt.tokenizer.teacher_forcing("it rains") == (inputs, targets)

    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({0: vocab + 5}))
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        hf_decoder(mbart_folder, token_map=str(tmp_path / "bad.pkl"))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({0: print}))
    with pytest.raises(UnsafeCheckpointError, match="builtins.print"):
        hf_decoder(mbart_folder, token_map=str(tmp_path / "evil.pkl"))


# -- refusals on the command line -------------------------------------------------------------------


def one_line_refusal(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_folder_that_asks_for_remote_code_is_refused_in_one_line(mbart_folder, tmp_path, mska):
    folder = shutil.copytree(mbart_folder, tmp_path / "remote")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSeq2SeqLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    line = one_line_refusal(mska("train", "--config", str(write_config(tmp_path, folder))))
    assert str(folder) in line and "remote code" in line and "auto_map" in line

    config.pop("auto_map")
    config["model_type"] = "evil-seq2seq"
    (folder / "config.json").write_text(json.dumps(config))
    line = one_line_refusal(mska("train", "--config", str(write_config(tmp_path, folder))))
    assert "'evil-seq2seq' is not an architecture transformers ships" in line


def test_a_missing_folder_or_a_model_that_is_not_seq2seq_is_one_line(tmp_path, mska):
    missing = tmp_path / "nowhere"
    line = one_line_refusal(mska("train", "--config", str(write_config(tmp_path, missing))))
    assert f"hf::{missing}: no such folder" in line and "save_pretrained" in line

    from transformers import GPT2Config

    folder = tmp_path / "gpt2"
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(folder)
    line = one_line_refusal(mska("train", "--config", str(write_config(tmp_path, folder))))
    assert "'gpt2' is not a seq2seq" in line


# -- end to end -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mbart", "t5"])
def test_train_evaluate_and_predict_through_hf_then_with_the_folder_deleted(kind, tmp_path, mska):
    import numpy as np

    from mska_core.config import SyntheticConfig
    from mska_core.synthetic.corpus import make_corpus

    folder = (make_mbart if kind == "mbart" else make_t5)(tmp_path / kind)
    options = MBART_OPTIONS if kind == "mbart" else "dropout = 0.0\n"
    config = write_config(tmp_path, folder, options=options, extra="\n[optim.part_lr]\nmapper = 1e-2\nlm = 1e-4\n")
    proc = mska("train", "--config", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    records = [json.loads(r) for r in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) >= 4 and all(np.isfinite(r["loss/translation"]) for r in train)
    payload = torch.load(summary["best"], weights_only=True)
    assert payload["text_decoder"]["artifacts"]["config"]["model_type"] == kind
    assert any(k.startswith("decoder.lm.") for k in payload["state_dict"])

    shutil.rmtree(folder)
    table = mska("evaluate", "--checkpoint", summary["best"], "--split", "test", "--json")
    assert table.returncode == 0, table.stderr
    assert {"bleu4", "rouge_l"} <= set(json.loads(table.stdout))
    clip = make_corpus(SyntheticConfig(num_train=1, num_dev=1, num_test=1, vocab_size=5)).test[0]
    np.save(tmp_path / "clip.npy", clip.keypoints.numpy())
    proc = mska("predict", "--checkpoint", summary["best"], str(tmp_path / "clip.npy"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout)[0]["translation"], str)


def test_part_learning_rates_and_a_frozen_lm(mbart_folder, tmp_path):
    from mska_core.config import load_config
    from mska_core.training.loop import FineTuning

    config = load_config(write_config(tmp_path, mbart_folder, epochs=1, extra="\n[optim.part_lr]\nmapper = 1e-2\n"),
                         ['losses.translation.freeze=["lm"]'])
    run = FineTuning(config)
    run.prepare()
    before = {k: v.clone() for k, v in run.model.decoder.lm.state_dict().items()}
    mapper_before = run.model.decoder.mapper.project.weight.detach().clone()
    groups = {g["part"]: g["base_lr"] for g in run.optimizer.param_groups}
    assert groups == {"encoder": 1e-3, "mapper": 1e-2}  # a frozen part has no group
    run.run()
    after = run.model.decoder.lm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(mapper_before, run.model.decoder.mapper.project.weight)


@pytest.mark.slow
def test_resume_through_the_hf_decoder_is_exact(mbart_folder, tmp_path):
    """With dropout on (the LM's own, drawn from torch's generator), a run stopped after 3 steps and
    resumed ends exactly as the run that never stopped."""
    from mska_core.config import load_config
    from mska_core.training.loop import FineTuning

    options = 'src_lang = "en_XX"\ntgt_lang = "en_XX"\ndropout = 0.2\n'

    def config(folder: Path, *overrides: str):
        folder.mkdir(exist_ok=True)
        return load_config(write_config(folder, mbart_folder, options=options, extra="\n[optim.part_lr]\nlm = 1e-4\n"),
                           list(overrides))

    whole = FineTuning(config(tmp_path / "a")).run()
    stopped = FineTuning(config(tmp_path / "b", "train.max_steps=3")).run()
    assert stopped.global_step == 3
    resumed = FineTuning(config(tmp_path / "b"), resume=True).run()

    def records(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "clips_per_s"} for line in lines]

    assert records(resumed.run_dir) == records(whole.run_dir)
    final_a = torch.load(whole.last, weights_only=True)["state_dict"]
    final_b = torch.load(resumed.last, weights_only=True)["state_dict"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


# -- a third party's decoder --------------------------------------------------------------------------


class EchoDecoder(torch.nn.Module):
    """A third party's decoder: a bag of memory features to a word table, one word per clip."""

    WORDS = ["<pad>", "<s>", "</s>", "tomorrow", "in", "the", "north", "south", "it", "rains", "sunny"]

    class Tokenizer:
        pad_id = 0

        def __len__(self) -> int:
            return len(EchoDecoder.WORDS)

        def teacher_forcing(self, text):
            ids = [EchoDecoder.WORDS.index(w) for w in text.split() if w in EchoDecoder.WORDS] + [2]
            return [1, *ids[:-1]], ids

        def decode(self, ids):
            return " ".join(EchoDecoder.WORDS[i] for i in ids if i > 2)

    def __init__(self, memory_dim: int) -> None:
        super().__init__()
        self.tokenizer = self.Tokenizer()
        self.read = torch.nn.Linear(memory_dim, 8)
        self.embed = torch.nn.Embedding(len(self.WORDS), 8)
        self.out = torch.nn.Linear(8, len(self.WORDS))

    def forward(self, memory, memory_lengths, text_input):
        return self.out(self.embed(text_input) + self.read(memory.mean(1))[:, None])

    def generate(self, memory, memory_lengths, *, max_length, beam_size, length_penalty):
        token = self.forward(memory, memory_lengths, torch.ones(memory.shape[0], 1, dtype=torch.long))[:, -1]
        return [self.tokenizer.decode([int(t)]) for t in token.argmax(-1)]

    def artifacts(self):
        return {"words": list(self.WORDS)}

    def parameter_groups(self):
        return {"reader": list(self.read.parameters()), "words": [*self.embed.parameters(), *self.out.parameters()]}


def test_a_third_party_text_decoder_plugin_through_a_real_registry(tmp_path):
    from mska_core import hookimpl
    from mska_core.config import load_config
    from mska_core.records import TextDecoderSpec
    from mska_core.registry import make_registry
    from mska_core.training.loop import FineTuning
    from mska_core.training.trained import load_trained

    requests = []

    class EchoPlugin:
        __name__ = "echo-plugin"

        @hookimpl
        def mska_text_decoders(self):
            def build(request):
                requests.append(request)
                return EchoDecoder(request.memory_dim)

            return [TextDecoderSpec("echo", build, "one word per clip")]

    registry = make_registry(EchoPlugin())
    assert registry.text_decoders.get("echo").provider is not None
    config_path = write_config(tmp_path, tmp_path, epochs=1, extra="\n[optim.part_lr]\nreader = 1e-2\n")
    text = config_path.read_text().replace(f'decoder = "hf::{tmp_path}"', 'decoder = "echo::v1"')
    config_path.write_text(text.replace(MBART_OPTIONS, ""))
    result = FineTuning(load_config(config_path), registry=registry).run()
    assert requests[0].payload == "v1" and requests[0].memory_dim == 16 and requests[0].texts
    trained = load_trained(result.best, registry=registry)
    assert requests[-1].stored == {"words": EchoDecoder.WORDS}
    assert isinstance(trained.model.decoder, EchoDecoder)


# -- the MSKA paper's S2T model -----------------------------------------------------------------------


def test_a_reference_s2t_state_dict_converts_into_the_hf_decoder(mbart_folder):
    from mska_core.checkpoints.paper import (
        convert_reference_translation,
        is_reference_translation,
        suffix_rows,
        to_reference_translation,
    )

    torch.manual_seed(0)
    ours = hf_decoder(mbart_folder, memory_dim=512, src_lang="de_DE", tgt_lang="de_DE").eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    gloss2ids = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "wetter": 4, "de_DGS": 5}
    rows = suffix_rows(gloss2ids)
    reference = {f"module.{k}": v for k, v in to_reference_translation(ours.state_dict(), rows, 6).items()}
    reference["recognition_network.fuse_visual_head.fc1.weight"] = torch.zeros(1)  # not the decoder's
    assert is_reference_translation(reference)
    assert set(reference) >= {"module.vl_mapper.mapping.0.weight", "module.vl_mapper.mapping.2.bias",
                              "module.translation_network.gloss_embedding.weight",
                              "module.translation_network.model.lm_head.weight"}
    # the reference's names, independently of the mapping under test: mapping.0 reads the 512-wide features
    assert reference["module.vl_mapper.mapping.0.weight"].shape == (32, 512)
    assert torch.equal(reference["module.vl_mapper.mapping.2.weight"], ours.mapper.out.weight)
    assert torch.equal(reference["module.translation_network.gloss_embedding.weight"][5], ours.mapper.suffix[1])
    fresh = hf_decoder(mbart_folder, memory_dim=512, src_lang="de_DE", tgt_lang="de_DE").eval()
    fresh.load_state_dict(convert_reference_translation(reference, rows), strict=True)
    inputs, _ = batch_of(ours, ["tomorrow it rains", "sunny"])
    memory, lengths = torch.randn(2, 6, 512), torch.tensor([6, 3])
    assert torch.equal(fresh(memory, lengths, inputs), ours(memory, lengths, inputs))


def test_a_whole_reference_s2t_checkpoint_loads_into_encoder_and_decoder(mbart_folder, tmp_path):
    from mska_core.checkpoints.paper import load_reference_s2t, to_reference_state_dict, to_reference_translation
    from mska_core.config import load_config
    from mska_core.encoder import MSKAEncoder
    from mska_core.errors import CheckpointError

    preset = Path(__file__).resolve().parents[1] / "examples" / "configs" / "mska-slr-paper.toml"
    torch.manual_seed(0)
    encoder = MSKAEncoder.from_config(load_config(preset).model, vocab_size=12)
    decoder = hf_decoder(mbart_folder, memory_dim=512, src_lang="de_DE", tgt_lang="de_DE")
    gloss2ids = {"<pad>": 1, "</s>": 2, "de_DGS": 3}
    state = {**to_reference_state_dict(encoder.state_dict()),
             **to_reference_translation(decoder.state_dict(), (2, 3), 4)}
    torch.save({"model": state, "optimizer": {}, "epoch": 40}, tmp_path / "best.pth")
    fresh_encoder = MSKAEncoder.from_config(load_config(preset).model, vocab_size=12)
    fresh = hf_decoder(mbart_folder, memory_dim=512, src_lang="de_DE", tgt_lang="de_DE")
    assert load_reference_s2t(tmp_path / "best.pth", encoder=fresh_encoder, decoder=fresh,
                              gloss2ids=gloss2ids) == "mska-paper"
    for ours, theirs in ((fresh_encoder, encoder), (fresh, decoder)):
        expected = theirs.state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in ours.state_dict().items())

    recognition_only = {k: v for k, v in state.items() if k.startswith("recognition_network.")}
    torch.save({"model": recognition_only}, tmp_path / "s2g.pth")
    with pytest.raises(CheckpointError, match="S2G checkpoint, not S2T"):
        load_reference_s2t(tmp_path / "s2g.pth", encoder=fresh_encoder, decoder=fresh, gloss2ids=gloss2ids)


def test_the_s2t_suffix_needs_the_source_gloss():
    from mska_core.checkpoints.paper import suffix_rows
    from mska_core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no 'de_DGS'"):
        suffix_rows({"<pad>": 1, "</s>": 2})


def test_gloss2ids_of_the_reference_reads_without_running_pickled_code(tmp_path):
    path = tmp_path / "gloss2ids.pkl"
    path.write_bytes(pickle.dumps({"</s>": 2, "de_DGS": 9}))
    from mska_core.checkpoints.paper import read_gloss2ids, suffix_rows

    assert suffix_rows(read_gloss2ids(path)) == (2, 9)

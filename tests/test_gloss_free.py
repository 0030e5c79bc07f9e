"""Gloss-free corpora (a translation per clip, no glosses): translation-only training, WER not
applicable (never 0), the best checkpoint chosen by BLEU-4, the decoder reading every frame."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import run_mska

CONFIG = """
[run]
name = "gloss-free"
output_dir = "{out}"
seed = 5

[data]
source = "directory"
path = "{data}"

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
weight = 0
[losses.distillation]
weight = 0
[losses.translation]
layers = 1
heads = 2
ff = 16
vocab_size = 300

[optim]
lr = 3e-3

[train]
epochs = 3
batch_size = 4
log_every = 1
translation_beam_size = 1
max_text_length = 12
progress = false
"""


def write_gloss_free_corpus(root: Path) -> Path:
    """The synthetic corpus's clips and translations in the directory format, with an empty gloss
    column."""
    import attrs

    from mska_core.config import SyntheticConfig
    from mska_core.data.directory import write_split
    from mska_core.synthetic.corpus import make_corpus

    corpus = make_corpus(SyntheticConfig(num_train=8, num_dev=4, num_test=4, vocab_size=5, min_glosses=1,
                                         max_glosses=2, frames_per_gloss=6))
    for split in ("train", "dev", "test"):
        write_split(root, split, [attrs.evolve(s, gloss="") for s in corpus.split(split)])
    assert "\t\t" in (root / "train.tsv").read_text()  # the gloss column is there, empty
    return root


def write_config(folder: Path, extra: str = "") -> Path:
    data = write_gloss_free_corpus(folder / "corpus")
    path = folder / "gloss-free.toml"
    path.write_text(CONFIG.format(out=folder / "runs", data=data) + extra)
    return path


@pytest.fixture(scope="module")
def gloss_free_run(tmp_path_factory):
    from mska_core.config import load_config
    from mska_core.training.loop import FineTuning

    folder = tmp_path_factory.mktemp("gloss-free")
    lines: list[str] = []
    result = FineTuning(load_config(write_config(folder)), out=lines.append).run()
    return result, lines


def test_gloss_free_training_never_reports_a_wer_and_selects_by_bleu(gloss_free_run):
    result, lines = gloss_free_run
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 3
    assert not [key for r in evals for key in r if key.startswith("wer")]
    assert all("bleu4" in r for r in evals)
    shown = [line for line in lines if "dev WER" in line]
    assert len(shown) == 3 and all("dev WER n/a, BLEU-4" in line for line in shown)
    assert not any("0.00" in line.split(",")[0] for line in shown)
    best = torch.load(result.best, weights_only=True)
    assert best["selection"] == {"metric": "bleu4", "lower_is_better": False}
    scores = [r["bleu4"] for r in evals]
    assert best["epoch"] == scores.index(max(scores)) + 1  # the highest BLEU-4, the earliest of ties
    assert "wer" not in best["metrics"]["dev"]
    assert [name for name in (r for r in records if r["kind"] == "train")
            for name in name if name.startswith("loss/")] == ["loss/translation"] * 3 * 2


def test_the_decoder_reads_every_frame_when_no_ctc_loss_trains(gloss_free_run):
    result, _ = gloss_free_run
    best = torch.load(result.best, weights_only=True)
    assert best["text_decoder"]["memory"] == "frames"
    assert best["vocabularies"]["gloss"]["tokens"] == ["<blank>", "<unk>"]


def test_memory_follows_the_ctc_loss_unless_the_config_says(tmp_path):
    from mska_core.config import load_config
    from mska_core.losses.translation import TranslationLoss
    from mska_core.training.model import decoder_memory_kind

    config = load_config(write_config(tmp_path))
    assert decoder_memory_kind(config, TranslationLoss()) == "frames"
    assert decoder_memory_kind(config, TranslationLoss(memory="glosses")) == "glosses"
    with_ctc = load_config(config, ["losses.ctc.weight=1"])
    assert decoder_memory_kind(with_ctc, TranslationLoss()) == "glosses"
    assert decoder_memory_kind(with_ctc, TranslationLoss(memory="frames")) == "frames"


def test_evaluate_and_predict_say_wer_does_not_apply(gloss_free_run, tmp_path):
    result, _ = gloss_free_run
    proc = run_mska("evaluate", "--checkpoint", str(result.best), "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert not [key for key in metrics if key.startswith("wer")] and "bleu4" in metrics
    table = run_mska("evaluate", "--checkpoint", str(result.best))
    assert table.returncode == 0, table.stderr
    assert "n/a" in table.stdout and "0.00" not in table.stdout.split("BLEU")[0].split("WER", 1)[-1]
    clip = next((result.run_dir.parent.parent / "corpus" / "test").glob("*.npy"))
    predicted = run_mska("predict", "--checkpoint", str(result.best), str(clip), "--json")
    assert predicted.returncode == 0, predicted.stderr
    row = json.loads(predicted.stdout)[0]
    assert row["gloss"] is None and row["glosses"] is None and isinstance(row["translation"], str)
    shown = run_mska("predict", "--checkpoint", str(result.best), str(clip))
    assert "gloss:       n/a" in shown.stdout
    folder = run_mska("inspect", str(result.run_dir))
    assert folder.returncode == 0, folder.stderr
    assert "bleu4" in folder.stdout.lower().replace("-", "")


def test_a_gloss_free_corpus_with_a_ctc_loss_is_refused_in_one_line(tmp_path):
    config = write_config(tmp_path)
    proc = run_mska("train", "--config", str(config), "--set", "losses.ctc.weight=1")
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "no glosses" in message and "losses.ctc.weight = 0" in message
    assert "losses.distillation.weight = 0" in message


def test_an_mska_pickle_without_gloss_keys_is_a_gloss_free_split(tmp_path):
    from mska_core.data.pickles import load_split

    keypoints = torch.rand(8, 133, 3) * 200
    path = tmp_path / "labels.train"
    path.write_bytes(pickle.dumps({"a": {"name": "a", "text": "Hola.", "num_frames": 8, "keypoint": keypoints}}))
    (sample,) = load_split(path, width=210, height=260)
    assert (sample.gloss, sample.text) == ("", "Hola.")

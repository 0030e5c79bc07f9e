"""Fine-tuning end to end: a real step with every loss, exact resume, SIGKILL, DDP, config errors,
plugin losses, and the evaluate / predict / plot commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import mska_env

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
crop_dim = 16

[model.streams.face]
[model.streams.hand_left]

[model.heads.fuse]
streams = ["hand_left", "face"]

[model.heads.hand]
streams = ["hand_left"]

[losses.ctc]
[losses.distillation]
[losses.translation]
layers = 1
heads = 2
ff = 16

[optim]
lr = 3e-3
warmup_steps = 1

[train]
epochs = 2
batch_size = 4
log_every = 1
test_beam_size = 2
translation_beam_size = 2
max_text_length = 8
progress = false
"""


def write_config(folder: Path, extra: str = "", **subs: str) -> Path:
    path = folder / "tiny.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY.format(out=folder / "runs", **subs) + extra)
    return path


def tiny_config(folder: Path, *overrides: str):
    from mska_core.config import load_config

    return load_config(write_config(folder), overrides)


def train_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def fine_tune(config, **kwargs):
    from mska_core.training.loop import FineTuning

    return FineTuning(config, **kwargs).run()


def test_one_training_step_with_every_loss(tmp_path):
    from mska_core.training.loop import FineTuning

    tuning = FineTuning(tiny_config(tmp_path, "train.max_steps=1"))
    tuning.prepare()
    before = {k: v.clone() for k, v in tuning.model.state_dict().items() if v.is_floating_point()}
    result = tuning.run()
    (record,) = train_records(result.run_dir)
    for part in ("loss/ctc", "loss/distillation", "loss/translation"):
        assert torch.isfinite(torch.tensor(record[part])) and record[part] > 0
    assert record["loss"] == pytest.approx(sum(record[p] for p in ("loss/ctc", "loss/distillation", "loss/translation")))
    after = tuning.model.state_dict()
    changed = {k.split(".")[0] for k, v in before.items() if not torch.equal(v, after[k])}
    assert changed == {"encoder", "decoder"}
    state = torch.load(result.last, weights_only=True)
    assert state["kind"] == "training-state" and state["global_step"] == 1
    assert state["vocabularies"]["gloss"]["tokens"][0] == "<blank>"
    assert state["config"]["train"]["max_steps"] == 1
    assert "mska-core" in json.dumps(state["plugins"]) or state["plugins"]
    assert (result.run_dir / "config.toml").read_text().count("[losses.translation]") == 1


def test_resume_gives_exactly_the_losses_and_weights_of_an_uninterrupted_run(tmp_path):
    """Stopped in the middle of the second epoch and resumed: every record (but the clips/s) and every
    weight is the uninterrupted run's, to the bit."""
    whole = fine_tune(tiny_config(tmp_path / "a"))
    stopped = fine_tune(tiny_config(tmp_path / "b", "train.max_steps=3"))
    assert stopped.global_step == 3
    resumed = fine_tune(tiny_config(tmp_path / "b"), resume=True)

    def records(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "clips_per_s"} for line in lines]

    expected, got = records(whole.run_dir), records(resumed.run_dir)
    assert [r["step"] for r in got if r["kind"] == "train"] == [1, 2, 3, 4]
    assert got == expected
    final_a = torch.load(whole.last, weights_only=True)
    final_b = torch.load(resumed.last, weights_only=True)
    assert all(torch.equal(final_a["state_dict"][k], final_b["state_dict"][k]) for k in final_a["state_dict"])
    assert {"torch", "python", "numpy"} <= set(final_b["rng"])


def test_best_checkpoint_is_chosen_on_dev_and_holds_what_evaluation_needs(tmp_path):
    result = fine_tune(tiny_config(tmp_path, "train.epochs=1"))
    best = torch.load(result.best, weights_only=True)
    assert best["kind"] == "model"
    assert best["selection"] == {"metric": "wer", "lower_is_better": True}
    assert best["metrics"]["dev"]["clips"] == 4
    assert set(best["vocabularies"]) == {"gloss"}
    decoder = best["text_decoder"]
    assert (decoder["name"], decoder["head"], decoder["memory"]) == ("mska", "fuse", "glosses")
    assert decoder["artifacts"]["tokenizer"]["kind"] == "bpe"
    evals = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in evals if r["kind"] == "eval"] == ["dev"]


@pytest.mark.parametrize(
    ("scores", "lower_is_better", "best_index"),
    [
        ([80.0, 40.0, 60.0, 40.0], True, 1),  # WER: the lowest, and the earlier of two ties
        ([10.0, 30.0, 20.0, 30.0], False, 1),  # BLEU-4: the highest
        ([None, 70.0, 50.0], True, 2),  # an evaluation without the metric never counts
    ],
)
def test_the_best_checkpoint_follows_the_best_dev_score_over_many_evaluations(scores, lower_is_better, best_index):
    from mska_core.training.loop import improves

    best, chosen = None, None
    for index, score in enumerate(scores):
        if improves(score, best, lower_is_better=lower_is_better):
            best, chosen = score, index
    assert chosen == best_index


def test_mska_losses_from_a_plugin_are_used_when_the_config_names_them(tmp_path):
    from mska_core import LossSpec, hookimpl
    from mska_core.registry import make_registry

    built = []

    class LogitEnergy(torch.nn.Module):
        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale
            built.append(self)
            self.calls = 0

        def forward(self, output, batch):
            self.calls += 1
            return self.scale * sum(l.pow(2).mean() for l in output.logits.values())

    class EnergyPlugin:
        @hookimpl
        def mska_losses(self):
            return [LossSpec("logit_energy", LogitEnergy, "mean squared logits")]

    registry = make_registry(EnergyPlugin())
    config = tiny_config(tmp_path, "train.max_steps=2", "losses.logit_energy.weight=0.5",
                         "losses.logit_energy.scale=2.0")
    result = fine_tune(config, registry=registry)
    (module,) = built
    assert module.scale == 2.0 and module.calls == 2
    records = train_records(result.run_dir)
    assert all(r["loss/logit_energy"] > 0 for r in records)
    parts = ("loss/ctc", "loss/distillation", "loss/translation")
    assert records[0]["loss"] == pytest.approx(sum(records[0][p] for p in parts) + 0.5 * records[0]["loss/logit_energy"])


def test_config_errors_are_one_line_and_exit_2(tmp_path, mska):
    config = write_config(tmp_path)
    cases = {
        ("--set", "losses.nonsense.weight=1"): "losses.nonsense",
        ("--set", "train.epochs=\"three\""): "train.epochs",
        ("--set", "train.epocs=3"): "train.epochs",
        ("--set", "losses.ctc.bogus=1"): "losses.ctc",
        ("--set", "optim.lr=-1"): "optim.lr",
        ("--set", "data.source=\"directory\""): "data.path",
    }
    for extra, expected in cases.items():
        proc = mska("train", "--config", str(config), *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert expected in proc.stderr, (extra, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    from mska_core.errors import ConfigError

    fine_tune(tiny_config(tmp_path, "train.max_steps=1"))
    with pytest.raises(ConfigError, match="--resume"):
        fine_tune(tiny_config(tmp_path, "train.max_steps=1"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    config = write_config(folder)
    from conftest import run_mska

    proc = run_mska("train", "--config", str(config), "--set", "train.epochs=1", "--json")
    assert proc.returncode == 0, proc.stderr
    return folder, json.loads(proc.stdout)


def test_train_command_writes_the_run_folder(trained_run):
    folder, summary = trained_run
    run_dir = Path(summary["run_dir"])
    assert {p.name for p in run_dir.iterdir()} >= {"config.toml", "metrics.jsonl", "last.pt", "best.pt"}
    assert summary["best_dev"]["clips"] == 4


def test_evaluate_reports_the_test_split(trained_run, mska):
    folder, summary = trained_run
    proc = mska("evaluate", "--checkpoint", summary["best"], "--split", "test", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["split"] == "test" and result["clips"] == 4
    assert {"wer/fuse", "wer/hand", "wer/ensemble", "wer/best", "bleu1", "bleu4", "rouge_l"} <= set(result)
    assert result["wer/best"] == min(result[f"wer/{h}"] for h in ("fuse", "hand", "ensemble"))
    assert result["wer/best"] == result[f"wer/{result['wer_best']}"]
    assert "tok:13a" in result["bleu_signature"]
    table = mska("evaluate", "--checkpoint", summary["best"], "--split", "test")
    assert table.returncode == 0, table.stderr
    for label in ("WER fuse", "WER hand", "WER ensemble", f"WER best ({result['wer_best']})"):
        assert label in table.stdout, table.stdout
    dev = [json.loads(l) for l in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert {"wer/fuse", "wer/hand", "wer/ensemble", "wer/best", "wer_best"} <= set(dev[-1])


def test_predict_prints_glosses_and_translation_of_keypoint_files(trained_run, tmp_path, mska):
    import numpy as np

    from mska_core.config import SyntheticConfig
    from mska_core.synthetic.corpus import make_corpus

    clip = make_corpus(SyntheticConfig(num_train=1, num_dev=1, num_test=1, vocab_size=5)).test[0]
    np.save(tmp_path / "clip.npy", clip.keypoints.numpy())
    folder, summary = trained_run
    proc = mska("predict", "--checkpoint", summary["best"], str(tmp_path / "clip.npy"), "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["name"] == "clip" and set(row["glosses"]) == {"fuse", "hand", "ensemble"}
    assert isinstance(row["translation"], str)


def test_predict_reads_an_entry_of_an_mska_pickle(trained_run, tmp_path, mska):
    import pickle

    keypoint = torch.rand(12, 133, 3) * torch.tensor([210.0, 260.0, 1.0])
    (tmp_path / "labels.test").write_bytes(pickle.dumps(
        {"a/1": {"name": "a/1", "gloss": "X", "text": "x", "num_frames": 12, "keypoint": keypoint},
         "a/2": {"name": "a/2", "gloss": "Y", "text": "y", "num_frames": 12, "keypoint": keypoint}}))
    folder, summary = trained_run
    proc = mska("predict", "--checkpoint", summary["best"], f"{tmp_path / 'labels.test'}:a/2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["name"] == "a/2"
    proc = mska("predict", "--checkpoint", summary["best"], str(tmp_path / "labels.test"))
    assert proc.returncode == 2 and "name one" in proc.stderr


def test_plot_draws_loss_and_metric_curves(trained_run, tmp_path, mska):
    folder, summary = trained_run
    proc = mska("plot", summary["run_dir"], "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    paths = [Path(p) for p in json.loads(proc.stdout)]
    assert [p.name for p in paths] == ["losses.png", "metrics.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path):
    config = write_config(tmp_path)
    args = [sys.executable, "-m", "mska_core", "train", "--config", str(config), "--set", "train.epochs=6",
            "--set", "train.checkpoint_every=1"]
    run_dir = tmp_path / "runs" / "tiny"
    proc = subprocess.Popen(args, env=mska_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run_dir / "last.pt").exists() and len(train_records(run_dir)) >= 3:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(run_dir / "last.pt", weights_only=True)  # intact, whatever moment it died
    assert 0 < state["global_step"] < 12
    done = subprocess.run(args + ["--resume"], env=mska_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    steps = [r["step"] for r in train_records(run_dir)]
    assert steps == list(range(1, 13))
    assert torch.load(run_dir / "last.pt", weights_only=True)["global_step"] == 12


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    # No dropout, so that both runs draw nothing at random; each process's batch norm sees its half of
    # the batch, which the single process reproduces with two micro-batches.
    common = ["--set", "model.head_dropout=0.0", "--set", "model.attention_dropout=0.0",
              "--set", "losses.translation.dropout=0.0",
              "--set", "train.max_steps=3", "--set", "train.epochs=2"]
    single = write_config(tmp_path / "one")
    (tmp_path / "two").mkdir()
    double = write_config(tmp_path / "two")
    ran = subprocess.run([sys.executable, "-m", "mska_core", "train", "--config", str(single), *common,
                          "--set", "train.micro_batches=2"], env=mska_env(OMP_NUM_THREADS="1"),
                         capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr
    ran = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", "-m", "mska_core", "train", "--config", str(double), *common],
                         env=mska_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    one, two = train_records(tmp_path / "one" / "runs" / "tiny"), train_records(tmp_path / "two" / "runs" / "tiny")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        for key in ("loss", "loss/ctc", "loss/distillation", "loss/translation"):
            # Adam turns rounding-level gradient differences into small weight differences, so the
            # later steps agree to 1e-3, not to the last bit; a wrong reduction is off by far more.
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-5), (a["step"], key)
    state_one = torch.load(tmp_path / "one" / "runs" / "tiny" / "last.pt", weights_only=True)["state_dict"]
    state_two = torch.load(tmp_path / "two" / "runs" / "tiny" / "last.pt", weights_only=True)["state_dict"]
    for key, value in state_one.items():
        if "running" in key or "num_batches" in key:
            continue  # batch-norm statistics: DDP keeps rank 0's
        assert torch.allclose(value.float(), state_two[key].float(), atol=1e-4), key


def test_max_steps_on_an_epochs_last_batch_evaluates_that_epoch_and_resumes_exactly(tmp_path):
    """8 clips in batches of 4: step 2 is the first epoch's last batch. The stopped run evaluates that
    epoch and writes best.pt; resumed, it gives the uninterrupted run's records and weights."""
    whole = fine_tune(tiny_config(tmp_path / "a"))
    stopped = fine_tune(tiny_config(tmp_path / "b", "train.max_steps=2"))
    assert stopped.global_step == 2 and stopped.best is not None
    evals = [json.loads(line) for line in (stopped.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in evals if r["kind"] == "eval"] == [(1, 2)]
    state = torch.load(stopped.last, weights_only=True)
    assert state["position"] == {"epoch": 1, "batch": 0}
    resumed = fine_tune(tiny_config(tmp_path / "b"), resume=True)

    def records(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "clips_per_s"} for line in lines]

    assert records(resumed.run_dir) == records(whole.run_dir)
    final_a = torch.load(whole.last, weights_only=True)["state_dict"]
    final_b = torch.load(resumed.last, weights_only=True)["state_dict"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


@pytest.mark.parametrize(
    ("evaluations", "best_index"),
    [
        ([(0.0, 50.0), (0.0, 90.0), (0.0, 70.0)], 1),  # equal WER: the better BLEU-4 wins
        ([(0.0, 50.0), (0.0, 50.0)], 0),  # ties in both keep the earlier
        ([(10.0, 90.0), (5.0, 20.0)], 1),  # a lower WER wins whatever the BLEU-4
    ],
)
def test_at_equal_dev_wer_the_better_dev_bleu_chooses_the_best_checkpoint(tmp_path, monkeypatch, evaluations,
                                                                          best_index):
    import mska_core.evaluation.evaluate as evaluation
    from mska_core.training.loop import FineTuning

    tuning = FineTuning(tiny_config(tmp_path, "train.epochs=1"))
    tuning.prepare()
    try:
        for epoch, (wer, bleu4) in enumerate(evaluations):
            monkeypatch.setattr(evaluation, "evaluate",
                                lambda *a, wer=wer, bleu4=bleu4, **k: ({"wer": wer, "bleu4": bleu4}, None))
            tuning._evaluate(epoch)
    finally:
        tuning.release()
    best = torch.load(tuning.run_dir / "best.pt", weights_only=True)
    assert best["epoch"] == best_index + 1
    assert best["metrics"]["dev"] == {"wer": evaluations[best_index][0], "bleu4": evaluations[best_index][1]}

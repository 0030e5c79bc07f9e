"""``[train] amp = "fp16"``: float16 autocast with a gradient scaler, whose state ``--resume`` restores
(torch runs float16 autocast on the CPU, so this runs everywhere)."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import fine_tune, tiny_config, train_records

FP16 = 'train.amp="fp16"'


def records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "clips_per_s"} for line in lines]


def test_the_forward_pass_runs_in_float16_under_fp16_autocast(tmp_path):
    from mska_core.training.loop import FineTuning
    from mska_core.training.precision import autocast

    tuning = FineTuning(tiny_config(tmp_path, FP16))
    tuning.prepare()
    tuning.release()
    batch = tuning.collate([tuning.train_set[i] for i in range(2)])
    with autocast("cpu", "fp16"):
        output = tuning.model(batch)
    assert all(logits.dtype == torch.float16 for logits in output.logits.values())
    assert tuning.scaler.is_enabled()


def test_an_interrupted_fp16_run_resumed_equals_the_uninterrupted_one(tmp_path):
    """Every record (the gradient scale included) and every weight, to the bit; the scaler skipped
    steps and lowered its scale on the way, so a resume that forgot its state would differ."""
    whole = fine_tune(tiny_config(tmp_path / "a", FP16))
    stopped = fine_tune(tiny_config(tmp_path / "b", FP16, "train.max_steps=3"))
    state = torch.load(stopped.last, weights_only=True)
    assert state["scaler"]["scale"] < 65536.0  # overflowing float16 steps lowered the initial scale
    resumed = fine_tune(tiny_config(tmp_path / "b", FP16), resume=True)
    expected, got = records(whole.run_dir), records(resumed.run_dir)
    assert [r["step"] for r in got if r["kind"] == "train"] == [1, 2, 3, 4]
    assert got == expected
    assert all("grad_scale" in r and torch.isfinite(torch.tensor(r["loss"])) for r in train_records(whole.run_dir))
    final_a = torch.load(whole.last, weights_only=True)
    final_b = torch.load(resumed.last, weights_only=True)
    assert final_a["scaler"] == final_b["scaler"]
    assert all(torch.equal(final_a["state_dict"][k], final_b["state_dict"][k]) for k in final_a["state_dict"])


def test_fp16_evaluation_decodes_the_dev_split(tmp_path):
    result = fine_tune(tiny_config(tmp_path, FP16, "train.epochs=1"))
    (dev,) = [r for r in records(result.run_dir) if r["kind"] == "eval"]
    assert dev["clips"] == 4 and 0 <= dev["wer"] and "bleu4" in dev


def test_an_unknown_amp_setting_names_the_choices(tmp_path):
    from mska_core.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16"):
        tiny_config(tmp_path, 'train.amp="fp8"')

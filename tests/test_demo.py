"""The quickstart: ``mska demo`` end to end (tiny settings) and the shipped quickstart config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "data.synthetic.num_train=8", "--set", "data.synthetic.num_dev=4",
        "--set", "data.synthetic.num_test=4", "--set", "train.epochs=1", "--set", "train.batch_size=4",
        "--set", "data.synthetic.vocab_size=5", "--set", "data.synthetic.max_glosses=2"]


def test_the_shipped_quickstart_is_the_example_config():
    from mska_core.cli.demo_cmd import QUICKSTART

    assert QUICKSTART.read_text() == (ROOT / "examples" / "configs" / "quickstart.toml").read_text()


def test_the_quickstart_config_is_valid(mska):
    proc = mska("config", "validate", str(ROOT / "examples" / "configs" / "quickstart.toml"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_demo_pretrains_exports_inspects_trains_and_evaluates(tmp_path, mska):
    proc = mska("demo", "--workdir", str(tmp_path / "demo"), "--pretrain-steps", "2", *TINY, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert [s["stage"] for s in summary["stages"]] == [
        "pretrain face", "pretrain hand", "inspect face", "inspect hand", "train", "evaluate"]
    work = Path(summary["workdir"])
    assert (work / "dino_face" / "encoder_face.pt").is_file()
    assert (work / "dino_hand" / "encoder_hand.pt").is_file()
    assert Path(summary["best"]).is_file()
    assert summary["test"]["wer"] is not None and "baseline_test_bleu4" in summary
    # the face and both hands were initialised from the exports
    assert "branches.face.crop.backbone" in proc.stderr and "hand_right" in proc.stderr

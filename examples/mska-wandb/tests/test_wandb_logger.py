"""The W&B logger against a small stand-in of the ``wandb`` module (no account, no network): what it
starts, what it logs at which step, and that it finishes the run."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import mska_wandb  # noqa: E402


class StandInRun:
    """What ``wandb.init`` returns, reduced to the calls the logger makes."""

    def __init__(self, **settings):
        self.settings = settings
        self.logged: list[tuple[int, dict]] = []
        self.finished = 0

    def log(self, data, step=None):
        self.logged.append((step, dict(data)))

    def finish(self):
        self.finished += 1


@pytest.fixture
def wandb_runs(monkeypatch):
    runs: list[StandInRun] = []
    module = types.ModuleType("wandb")

    def init(**settings):
        runs.append(StandInRun(**settings))
        return runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return runs


def test_records_become_wandb_figures_at_their_step():
    assert mska_wandb.figures({"kind": "train", "epoch": 1, "step": 3, "loss": 2.5, "loss/ctc": 2.0, "lr": 1e-3}) == {
        "train/loss": 2.5, "train/loss/ctc": 2.0, "train/lr": 1e-3}
    assert mska_wandb.figures({"kind": "eval", "split": "dev", "step": 4, "wer": 50.0, "wer_best": "fuse",
                               "bleu_signature": "nrefs:1"}) == {"dev/wer": 50.0}


def test_the_logger_starts_a_run_in_the_run_folder_and_finishes_it(tmp_path, wandb_runs):
    from mska_core.config import Config

    logger = mska_wandb.build(tmp_path / "run", Config())
    logger.log({"kind": "train", "step": 1, "loss": 1.5}, 1)
    logger.close()
    (run,) = wandb_runs
    assert run.settings["dir"] == str(tmp_path / "run") and run.settings["name"] == "mska"
    assert run.settings["config"]["run"]["name"] == "mska"
    assert run.logged == [(1, {"train/loss": 1.5})] and run.finished == 1

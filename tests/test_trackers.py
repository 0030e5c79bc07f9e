"""Experiment trackers (``[run] loggers``, the ``mska_loggers`` hook): TensorBoard event files with the
run's scalars, a third-party tracker registered through a real registry, and a failing logger that
never stops a run."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from test_train import fine_tune, tiny_config

ROOT = Path(__file__).resolve().parents[1]
WANDB_EXAMPLE = ROOT / "examples" / "mska-wandb" / "src"


def jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_files_hold_losses_learning_rate_dev_metrics_and_clips_per_s(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fine_tune(tiny_config(tmp_path, 'run.loggers=["tensorboard"]', "train.epochs=1"))
    folder = result.run_dir / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(folder))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss/ctc", "train/loss/distillation", "train/loss/translation", "train/lr",
            "train/clips_per_s", "dev/wer", "dev/wer/fuse", "dev/wer/hand", "dev/bleu4", "dev/rouge_l"} <= tags
    records = jsonl(result.run_dir)
    train = [r for r in records if r["kind"] == "train"]
    assert [e.step for e in events.Scalars("train/loss")] == [r["step"] for r in train]
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([r["lr"] for r in train])
    (dev,) = [r for r in records if r["kind"] == "eval"]
    (wer,) = events.Scalars("dev/wer")
    assert (wer.step, wer.value) == (dev["step"], pytest.approx(dev["wer"]))


def test_an_unknown_logger_is_a_config_error_naming_the_key(tmp_path):
    from mska_core.errors import ConfigError
    from mska_core.training.loop import FineTuning

    tuning = FineTuning(tiny_config(tmp_path, 'run.loggers=["tensorbored"]'))
    with pytest.raises(ConfigError, match=r"run\.loggers.*tensorbored.*tensorboard"):
        tuning.prepare()


class WandbStandIn:
    """A small stand-in of the ``wandb`` module: ``init`` returns a run that records what it gets."""

    def __init__(self) -> None:
        self.runs: list[types.SimpleNamespace] = []
        self.module = types.ModuleType("wandb")
        self.module.init = self.init

    def init(self, **settings):
        run = types.SimpleNamespace(settings=settings, logged=[], finished=0)
        run.log = lambda data, step=None: run.logged.append((step, dict(data)))

        def finish():
            run.finished += 1

        run.finish = finish
        self.runs.append(run)
        return run


def test_the_example_wandb_plugin_through_a_real_registry_logs_every_record_once(tmp_path, monkeypatch):
    from mska_core.registry import make_registry

    monkeypatch.syspath_prepend(str(WANDB_EXAMPLE))
    wandb = WandbStandIn()
    monkeypatch.setitem(sys.modules, "wandb", wandb.module)
    import mska_wandb

    registry = make_registry(mska_wandb)
    assert [spec.name for spec in registry.loggers] == ["tensorboard", "wandb"]
    result = fine_tune(tiny_config(tmp_path, 'run.loggers=["wandb"]', "train.epochs=1"), registry=registry)
    (run,) = wandb.runs
    assert run.finished == 1 and run.settings["dir"] == str(result.run_dir)
    records = jsonl(result.run_dir)
    assert [step for step, _ in run.logged] == [r["step"] for r in records]
    assert run.logged[0][1]["train/loss"] == pytest.approx(records[0]["loss"])
    assert run.logged[-1][1]["dev/wer"] == pytest.approx(records[-1]["wer"])


def test_a_logger_that_raises_is_reported_once_with_its_plugin_and_the_run_goes_on(tmp_path, capsys):
    from mska_core import LoggerSpec, hookimpl
    from mska_core.registry import make_registry

    closed = []

    class Flaky:
        def log(self, record, step):
            if step >= 2:
                raise RuntimeError("tracker server unreachable")

        def close(self):
            closed.append(True)

    class FlakyPlugin:
        @hookimpl
        def mska_loggers(self):
            return [LoggerSpec("flaky", lambda run_dir, config: Flaky())]

    config = tiny_config(tmp_path, 'run.loggers=["flaky", "tensorboard"]', "train.epochs=1")
    result = fine_tune(config, registry=make_registry(FlakyPlugin()))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "logger 'flaky'" in line]
    assert len(warnings) == 1 and "tracker server unreachable" in warnings[0]
    assert "plugin" in warnings[0] and "metrics.jsonl" in warnings[0]
    assert [r["step"] for r in jsonl(result.run_dir) if r["kind"] == "train"] == [1, 2]
    assert result.best is not None and not closed  # a failed logger is dropped, not closed again


def test_loggers_are_built_on_rank_0_only(tmp_path):
    from mska_core import LoggerSpec, hookimpl
    from mska_core.registry import make_registry
    from mska_core.training.trackers import Trackers

    built = []

    class Plugin:
        @hookimpl
        def mska_loggers(self):
            return [LoggerSpec("counting", lambda run_dir, config: built.append(run_dir))]

    registry = make_registry(Plugin())
    Trackers(["counting"], tmp_path, None, registry, enabled=False).log({"kind": "train", "step": 1}, 1)
    assert built == []
    Trackers(["counting"], tmp_path, None, registry, enabled=True)
    assert built == [tmp_path]


def test_pretraining_writes_its_steps_and_epoch_summaries_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_pretrain import tiny_config as pretrain_config

    from mska_core.training.dino import pretrain

    result = pretrain(pretrain_config(tmp_path, **{"pretrain.epochs": 1, "run.loggers": ["tensorboard"]}))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"pretrain/loss", "pretrain/lr", "pretrain/teacher_entropy", "pretrain/min_loss",
            "pretrain/images_per_s"} <= set(events.Tags()["scalars"])
    steps = [r["step"] for r in jsonl(result.output_dir)]
    assert sorted({e.step for e in events.Scalars("pretrain/loss")}) == sorted(set(steps))


def test_tensorboard_without_its_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from mska_core.errors import ConfigError
    from mska_core.training.loop import FineTuning

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    tuning = FineTuning(tiny_config(tmp_path, 'run.loggers=["tensorboard"]'))
    with pytest.raises(ConfigError, match=r"pip install 'mska-core\[tensorboard\]'") as error:
        tuning.prepare()
    tuning.release()
    assert "\n" not in str(error.value)

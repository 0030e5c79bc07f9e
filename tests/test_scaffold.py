"""The training scaffold both loops stand on: random state, schedules, the metrics file, the DINO model
object, and the set-up checks they share."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from mska_core.training.scaffold import CosineSchedule, MetricsLog, rng_state, seed_everything, set_rng_state


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


# --- random state ----------------------------------------------------------------------------------


def test_rng_state_restores_python_numpy_and_torch_draws_after_a_weights_only_round_trip(tmp_path) -> None:
    seed_everything(5)
    draws()
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = [draws() for _ in range(3)]
    seed_everything(99)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert [draws() for _ in range(3)] == expected


def test_a_state_without_python_and_numpy_restores_torch_and_leaves_the_others_alone() -> None:
    """Fine-tuning checkpoints written before the scaffold held only torch's (and CUDA's) state."""
    seed_everything(1)
    old = {"torch": torch.get_rng_state()}
    expected_torch = torch.rand(2)
    python, numpy = random.getstate(), np.random.get_state()[1].copy()
    set_rng_state(old)
    torch.testing.assert_close(torch.rand(2), expected_torch)
    assert random.getstate() == python and np.array_equal(np.random.get_state()[1], numpy)


def test_seed_everything_makes_every_generator_repeat() -> None:
    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first


# --- schedules -------------------------------------------------------------------------------------


def test_cosine_schedule_warms_up_from_zero_or_from_the_first_step_then_decays_to_its_end() -> None:
    dino = CosineSchedule(1.0, 0.0, 10, warmup_steps=2)
    tuning = CosineSchedule(1.0, 0.0, 10, warmup_steps=2, warmup_from_zero=False)
    assert [dino(s) for s in (0, 1, 2)] == [0.0, 0.5, 1.0]
    assert [tuning(s) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert dino(6) == pytest.approx(0.5) and dino(10) == pytest.approx(0.0) and dino(20) == pytest.approx(0.0)


def test_the_per_epoch_cosine_holds_its_value_through_an_epoch_and_a_constant_is_a_cosine_to_itself() -> None:
    per_epoch = CosineSchedule(1.0, 0.0, 12, steps_per_epoch=3, period=4)
    values = [per_epoch(s) for s in range(12)]
    assert values[0] == values[1] == values[2] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert values[9] == pytest.approx(0.0, abs=1e-12)
    assert {CosineSchedule(0.3, 0.3, 10)(s) for s in range(12)} == {0.3}


# --- the metrics file ------------------------------------------------------------------------------


def test_metrics_log_writes_json_lines_and_a_resume_keeps_the_steps_up_to_the_checkpoint(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.log({"step": step, "loss": 1.0 / step})
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    again = MetricsLog(tmp_path / "metrics.jsonl")
    again.resume(2)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2  # the records after the checkpoint go
    again.append({"step": 3, "loss": 0.25})
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2  # append alone writes nothing
    again.flush()
    assert [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1.0, 0.5, 0.25]


def test_metrics_log_appends_to_the_file_instead_of_rewriting_it(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.log({"step": 1})
    inode = path.stat().st_ino
    for step in range(2, 20):
        log.log({"step": step, "loss": 1.0})
    log.sync()
    assert path.stat().st_ino == inode  # an atomic rewrite would replace the file
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == list(range(1, 20))


def test_a_new_run_starts_its_metrics_afresh(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 7}\n')  # left by a start killed before its first checkpoint
    MetricsLog(path).log({"step": 1})
    assert path.read_text() == '{"step": 1}\n'


def test_a_line_torn_by_a_kill_is_dropped_on_read_and_on_resume(tmp_path) -> None:
    from mska_core.training.scaffold import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert read_metrics(path) == [{"step": 1}, {"step": 2}]
    log = MetricsLog(path)
    log.resume(2)
    log.log({"step": 3})
    assert read_metrics(path) == [{"step": 1}, {"step": 2}, {"step": 3}]


@pytest.mark.parametrize("line", ["[1, 2]", "3", '"text"', "null"])
def test_metrics_lines_that_are_not_objects_are_one_data_error_naming_the_line(tmp_path, line) -> None:
    from mska_core.errors import DataError
    from mska_core.training.scaffold import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n' + line + "\n")
    with pytest.raises(DataError, match=r"metrics.jsonl: record 2 is a JSON \w+, not an object"):
        read_metrics(path)


def test_a_metrics_log_of_another_rank_writes_nothing(tmp_path) -> None:
    MetricsLog(tmp_path / "metrics.jsonl", enabled=False).log({"step": 1})
    assert not (tmp_path / "metrics.jsonl").exists()


# --- progress -------------------------------------------------------------------------------------


def test_the_progress_display_draws_on_a_terminal_and_stays_silent_elsewhere() -> None:
    from io import StringIO

    from rich.console import Console

    from mska_core.training.scaffold import ProgressDisplay

    def shown(console, **options) -> str:
        display = ProgressDisplay(console, transient=False, **options)
        display.begin("pretrain", 4)
        display.advance("loss 0.5000  lr 1.00e-03", description="epoch 1/2")
        display.close()
        return console.file.getvalue()

    drawn = shown(Console(file=StringIO(), force_terminal=True, width=120))
    assert "epoch 1/2" in drawn and "loss 0.5000  lr 1.00e-03" in drawn and "1/4" in drawn
    assert shown(Console(file=StringIO(), force_terminal=False, width=120)) == ""
    assert shown(Console(file=StringIO(), force_terminal=True, width=120), enabled=False) == ""


# --- DINO as a model object ------------------------------------------------------------------------


def tiny_dino(koleo_weight: float = 0.1):
    from mska_core.backbones import build_arch
    from mska_core.registry import get_registry
    from mska_core.training.dino import DINO, DINOHead

    registry = get_registry()
    torch.manual_seed(0)
    backbone = build_arch("vit_tiny_test", img_size=28)
    head = DINOHead(backbone.feature_dim, 32, hidden_dim=16, bottleneck_dim=8)
    return DINO(backbone, head, registry.losses.get("dino").build(out_dim=32),
                koleo_loss=registry.losses.get("koleo").build(), koleo_weight=koleo_weight)


def views(batch: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 3, 28, 28, generator=generator) for _ in range(2)] + \
        [torch.randn(batch, 3, 14, 14, generator=generator)]


def test_forward_backward_returns_the_step_figures_and_fills_only_the_students_gradients() -> None:
    model = tiny_dino().train()
    parts = model.forward_backward(views(), teacher_temp=0.04)
    assert set(parts) == {"loss", "dino", "koleo", "teacher_temp", "teacher_entropy", "feature_std"}
    assert parts["loss"] == pytest.approx(parts["dino"] + 0.1 * parts["koleo"])
    assert 0 < parts["teacher_entropy"] <= math.log(32) + 1e-5
    assert all(p.grad is not None for p in model.student.backbone.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.training and not model.teacher.training  # the teacher never trains


def test_update_teacher_moves_the_teacher_towards_the_student_by_one_minus_momentum() -> None:
    model = tiny_dino()
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.teacher.parameters()]
    model.update_teacher(0.75)
    for old, new, student in zip(before, model.teacher.parameters(), model.student.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * student)


def test_cancelled_last_layer_gradients_leave_the_prototypes_unchanged_by_a_step() -> None:
    model = tiny_dino()
    optimizer = torch.optim.AdamW(model.param_groups(), lr=0.1)
    prototypes = [p.clone() for p in model.student.head.last_layer.parameters()]
    model.forward_backward(views(), teacher_temp=0.04)
    model.cancel_last_layer_gradients()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(prototypes, model.student.head.last_layer.parameters()))
    assert not torch.equal(model.student.head.mlp[0].weight, model.teacher.head.mlp[0].weight)


def test_pretraining_under_torchrun_is_refused_in_one_line(tmp_path, monkeypatch) -> None:
    from test_pretrain import tiny_config

    from mska_core.errors import ConfigError
    from mska_core.training.dino import pretrain

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process.*torchrun"):
        pretrain(tiny_config(tmp_path))
    assert not (tmp_path / "checkpoint.pt").exists()

"""Run folders and checkpoints: nothing mixed, nothing lost, nothing half-done (docs/reliability.md).

Every test runs the real ``mska`` command in a subprocess against real files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import mska_env, run_mska
from plugin_fixtures import install_distribution, stream_plugin_source
from test_train import TINY

pytestmark = pytest.mark.slow


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``mska: error:`` line of a refused command (exit 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mska: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def write_tiny(folder: Path, name: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(TINY.format(out=folder / "runs").replace('name = "tiny"', f'name = "{name}"'))
    return path


@pytest.fixture(scope="module")
def started_run(tmp_path_factory) -> tuple[Path, Path]:
    """A real run stopped after one step (config, run folder): last.pt, config.toml and metrics exist."""
    folder = tmp_path_factory.mktemp("started")
    config = write_tiny(folder)
    proc = run_mska("train", "--config", str(config), "--set", "train.max_steps=1")
    assert proc.returncode == 0, proc.stderr
    return config, folder / "runs" / "tiny"


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".mska.lock"}


# -- one writer per run folder ----------------------------------------------------------------------


HOLDER = """
import sys, time
from mska_core.training.runfolder import RunFolderLock
lock = RunFolderLock(sys.argv[1], command="mska train --config held.toml").acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_into_a_locked_run_folder_is_refused_naming_the_holder(tmp_path: Path):
    config = write_tiny(tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env=mska_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        line = one_error_line(run_mska("train", "--config", str(config), "--set", "train.max_steps=1"))
        assert f"pid {holder.pid}" in line and "mska train --config held.toml" in line and str(run_dir) in line
        line = one_error_line(run_mska("pretrain", "--output-dir", str(run_dir), "--epochs", "1"))
        assert f"pid {holder.pid}" in line
        assert not (run_dir / "config.toml").exists()  # the refused runs wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops a killed holder's lock: the folder is free again, no stale lock to clean up
    from mska_core.training.runfolder import RunFolderLock

    with RunFolderLock(run_dir):
        pass


def test_a_refused_start_leaves_no_folder_holding_only_a_lock(tmp_path: Path):
    config = write_tiny(tmp_path)
    line = one_error_line(run_mska("train", "--config", str(config), "--resume"))
    assert "no last.pt" in line
    assert not (tmp_path / "runs").exists()  # the lock made the folders; the refusal took them away
    (tmp_path / "runs" / "tiny").mkdir(parents=True)  # a folder the user made stays, without a lock file
    one_error_line(run_mska("train", "--config", str(config), "--resume"))
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []
    (tmp_path / "crops").mkdir()
    line = one_error_line(run_mska("pretrain", "--output-dir", str(tmp_path / "dino"), "--epochs", "1",
                                   "--train-dir", str(tmp_path / "crops")))
    assert "no png/jpg crops" in line
    assert not (tmp_path / "dino").exists()


def test_pretrain_refuses_a_finished_run_folder_without_resume_and_keeps_it(tmp_path: Path):
    out = tmp_path / "dino"
    args = ("pretrain", "--output-dir", str(out), "--epochs", "1", "--batch-size", "4",
            "--set", "pretrain.synthetic_images=8", "--set", "pretrain.probe_every=0",
            "--set", "pretrain.img_size=28", "--set", "pretrain.local_crops=0")
    first = run_mska(*args)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    line = one_error_line(run_mska(*args))
    assert "--resume" in line and str(out) in line
    assert snapshot(out) == before


# -- --resume continues the run that was started, or refuses --------------------------------------


def test_resume_refuses_changed_batch_size_epochs_and_architecture_in_one_line(started_run):
    config, run_dir = started_run
    before = snapshot(run_dir)
    line = one_error_line(run_mska("train", "--config", str(config), "--resume", "--set", "train.batch_size=3",
                                   "--set", "train.epochs=3", "--set", "model.num_heads=1"))
    for change in ("train.batch_size: 4 -> 3", "train.epochs: 2 -> 3", "model.num_heads: 2 -> 1", "--extend"):
        assert change in line
    assert snapshot(run_dir) == before


def test_resume_refuses_changed_data(started_run):
    config, run_dir = started_run
    line = one_error_line(run_mska("train", "--config", str(config), "--resume",
                                   "--set", "data.synthetic.num_train=9"))
    assert "data.synthetic.num_train: 8 -> 9" in line


def test_resume_allows_watching_changes_and_extend_lets_epochs_grow(started_run, tmp_path: Path):
    from mska_core.training.runfolder import incompatible_changes

    config, run_dir = started_run
    stored = torch.load(run_dir / "last.pt", weights_only=True)["config"]
    grown = json.loads(json.dumps(stored))
    grown["train"].update(epochs=5, log_every=7, progress=True, max_steps=3)
    assert incompatible_changes(stored, grown, loop="train", extend=True) == []
    assert incompatible_changes(stored, grown, loop="train") == ["train.epochs: 2 -> 5"]
    shrunk = dict(grown, train=dict(grown["train"], epochs=1))
    assert incompatible_changes(stored, shrunk, loop="train", extend=True) == ["train.epochs: 2 -> 1"]


def test_resume_of_a_checkpoint_without_rng_or_config_is_one_line(started_run, tmp_path: Path):
    config, run_dir = started_run
    for key in ("rng", "config"):
        copy = tmp_path / key / "runs" / "tiny"
        copy.mkdir(parents=True)
        state = torch.load(run_dir / "last.pt", weights_only=True)
        del state[key]
        torch.save(state, copy / "last.pt")
        moved = write_tiny(tmp_path / key)
        line = one_error_line(run_mska("train", "--config", str(moved), "--resume"))
        assert repr(key) in line and "last.pt" in line


@pytest.mark.parametrize(("change", "expected"), [
    ({"format_version": 99}, "payload format_version 99; this mska-core reads versions up to 1"),
    ({"format": "other"}, "match no format"),
    ({"kind": "model"}, "kind 'model', expected 'training-state', which a resume needs"),
])
def test_resume_reads_the_state_through_the_payload_checks(started_run, tmp_path: Path, change, expected):
    config, run_dir = started_run
    copy = tmp_path / "runs" / "tiny"
    copy.mkdir(parents=True)
    state = torch.load(run_dir / "last.pt", weights_only=True)
    state.update(change)
    torch.save(state, copy / "last.pt")
    line = one_error_line(run_mska("train", "--config", str(write_tiny(tmp_path)), "--resume"))
    assert expected in line and "last.pt" in line


def test_a_metrics_file_that_is_not_json_lines_is_one_line(started_run, tmp_path: Path):
    config, run_dir = started_run
    copy = tmp_path / "runs" / "tiny"
    copy.mkdir(parents=True)
    (copy / "last.pt").write_bytes((run_dir / "last.pt").read_bytes())
    (copy / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\nthis is not json\n')
    line = one_error_line(run_mska("train", "--config", str(write_tiny(tmp_path)), "--resume"))
    assert "metrics.jsonl: line 2 is not JSON" in line


# -- what a checkpoint means never changes ---------------------------------------------------------


def test_the_resolved_config_names_streams_and_heads_so_a_new_stream_plugin_changes_nothing(tmp_path: Path):
    config = tmp_path / "implicit.toml"
    text = TINY.format(out=tmp_path / "runs")
    # leave the streams and heads implicit: every registered stream of the layout, default heads
    start, end = text.index("[model.streams.face]"), text.index("[losses.ctc]")
    config.write_text(text[:start] + text[end:])
    proc = run_mska("train", "--config", str(config), "--set", "train.max_steps=1", "--set", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "tiny"
    stored = torch.load(run_dir / "last.pt", weights_only=True)
    assert set(stored["config"]["model"]["streams"]) == {"face", "hand_left", "hand_right", "body"}
    assert set(stored["config"]["model"]["heads"]) == {"fuse", "left", "right", "body"}
    assert "[model.streams.body]" in (run_dir / "config.toml").read_text()
    assert stored["providers"]["streams"]["face"]["distribution"] == "mska-core"

    site = tmp_path / "site"
    install_distribution(site, "lips-dist", "1.0", {"lips": "lips_plugin"}, {"lips_plugin": stream_plugin_source("lips")})
    evaluated = run_mska("evaluate", "--checkpoint", str(run_dir / "last.pt"), "--json",
                         env=mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="lips"))
    assert evaluated.returncode == 0, evaluated.stderr


def test_a_checkpoint_that_needs_a_missing_plugin_names_it_and_its_distribution(tmp_path: Path):
    site = tmp_path / "site"
    install_distribution(site, "lips-dist", "2.5", {"lips": "lips_plugin"}, {"lips_plugin": stream_plugin_source("lips")})
    config = write_tiny(tmp_path)
    text = config.read_text().replace("[model.streams.face]", "[model.streams.face]\n[model.streams.lips]")
    config.write_text(text.replace('streams = ["hand_left", "face"]', 'streams = ["hand_left", "face", "lips"]'))
    with_plugin = mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="lips")
    proc = run_mska("train", "--config", str(config), "--set", "train.max_steps=1", env=with_plugin)
    assert proc.returncode == 0, proc.stderr
    line = one_error_line(run_mska("evaluate", "--checkpoint", str(tmp_path / "runs" / "tiny" / "last.pt")))
    assert "'lips'" in line and "lips-dist 2.5" in line and "install lips-dist" in line


# -- atomic writes ----------------------------------------------------------------------------------


KILLED_WRITER = """
import os, signal, sys
from mska_core.io import atomic_open
with atomic_open(sys.argv[1]) as handle:
    handle.write(b"half of a checkpoint")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temporary_files_of_killed_writes_are_removed_by_the_next_write(tmp_path: Path):
    from mska_core.io import atomic_open, atomic_write_bytes

    target = tmp_path / "last.pt"
    target.write_bytes(b"previous")
    for _ in range(2):
        killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], env=mska_env())
        assert killed.returncode == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 2 and target.read_bytes() == b"previous"
    with atomic_open(tmp_path / "last.pt") as live:  # a write in progress is never taken for a leftover
        live.write(b"in progress")
        atomic_write_bytes(target, b"new")
        assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) == 1  # the live one
    assert target.read_bytes() == b"in progress"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_write_that_the_disk_refuses_is_one_line_and_leaves_the_previous_files(tmp_path: Path):
    """A file-size limit (RLIMIT_FSIZE) makes the disk refuse the checkpoint as a full disk would."""
    import resource

    config = write_tiny(tmp_path)
    limit = 64 * 1024  # config.toml and metrics fit, a checkpoint does not

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "mska_core", "train", "--config", str(config),
                           "--set", "train.max_steps=1"], capture_output=True, text=True, env=mska_env(),
                          preexec_fn=limited, timeout=600)
    line = one_error_line(proc)
    assert "last.pt" in line and "File too large" in line
    run_dir = tmp_path / "runs" / "tiny"
    assert not (run_dir / "last.pt").exists()
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert (run_dir / "config.toml").exists()


def test_an_output_folder_under_a_file_is_one_line_naming_it(tmp_path: Path):
    (tmp_path / "afile").write_text("")
    line = one_error_line(run_mska("train", "--config", str(write_tiny(tmp_path)),
                                   "--set", f"run.output_dir={json.dumps(str(tmp_path / 'afile'))}"))
    assert str(tmp_path / "afile") in line and "Not a directory" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_output_folder_is_one_line(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_error_line(run_mska("pretrain", "--output-dir", str(folder / "dino"), "--epochs", "1"))
        assert str(folder) in line
    finally:
        folder.chmod(0o755)


"""``[run] format``: the checkpoint format of a run's ``best``/``last`` and exports, a third party's
included; ``save_checkpoint`` hands every format's ``write`` the ``Checkpoint`` the plugin guide
documents, and ``--resume`` reads ``last`` back through the format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import mska_env, run_mska
from plugin_fixtures import install_distribution
from test_reliability_runs import one_error_line
from test_train import fine_tune, tiny_config, write_config

from mska_core import CheckpointFormat, hookimpl
from mska_core.checkpoints import Checkpoint, load_checkpoint, make_payload, read_payload, save_checkpoint
from mska_core.errors import ConfigError
from mska_core.registry import make_registry

#: A third-party format: our payload, torch-saved and gzip-compressed, in ``.mskz`` files.
GZ_FORMAT = """
    import gzip, io, os, tempfile

    from mska_core import CheckpointFormat, hookimpl

    MAGIC = b"\\x1f\\x8b"

    def sniff(probe):
        return probe.path.suffix == ".mskz" and probe.head[:2] == MAGIC

    def read(probe):
        import torch
        from mska_core.checkpoints import Checkpoint

        obj = torch.load(io.BytesIO(gzip.decompress(probe.path.read_bytes())), weights_only=True)
        state_dict = obj.pop("state_dict")
        return Checkpoint("gz", obj, state_dict, probe.path)

    def write(checkpoint, path):
        import torch
        from mska_core.checkpoints import Checkpoint

        if not isinstance(checkpoint, Checkpoint):  # the documented contract
            raise TypeError(f"write() got a {type(checkpoint).__name__}, not a Checkpoint")
        buffer = io.BytesIO()
        torch.save({**checkpoint.metadata, "state_dict": checkpoint.state_dict}, buffer)
        folder = os.path.dirname(os.path.abspath(path))
        fd, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(gzip.compress(buffer.getvalue(), mtime=0))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @hookimpl
    def mska_checkpoint_formats():
        return [CheckpointFormat(name="gz", sniff=sniff, read=read, write=write, suffixes=(".mskz",),
                                 description="gzip-compressed mska payload")]
"""


@pytest.fixture
def gz_site(tmp_path: Path) -> Path:
    return install_distribution(tmp_path / "site", "mska-gz", "0.3", {"gz": "mska_gz"}, {"mska_gz": GZ_FORMAT})


@pytest.mark.slow
def test_a_third_party_format_writes_best_and_last_and_resume_reads_its_last(tmp_path: Path, gz_site: Path):
    env = mska_env(PYTHONPATH=str(gz_site), MSKA_LOAD_PLUGINS="gz")
    config = write_config(tmp_path)
    stopped = run_mska("train", "--config", str(config), "--set", "run.format=gz", "--set", "train.max_steps=3",
                       env=env)
    assert stopped.returncode == 0, stopped.stderr
    run_dir = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in run_dir.glob("*.mskz")) == ["best.mskz", "last.mskz"]
    assert not list(run_dir.glob("*.pt"))
    resumed = run_mska("train", "--config", str(config), "--set", "run.format=gz", "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 2, step 3" in resumed.stderr + resumed.stdout
    scored = run_mska("evaluate", "--checkpoint", str(run_dir / "best.mskz"), "--split", "dev", "--json", env=env)
    assert scored.returncode == 0, scored.stderr
    assert "wer" in json.loads(scored.stdout)
    shown = run_mska("inspect", str(run_dir), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["last"]["global_step"] == 4 and run["best"] is not None


@pytest.mark.slow
def test_safetensors_run_outputs_resume_exactly(tmp_path: Path):
    whole = fine_tune(tiny_config(tmp_path / "a"))
    stopped = fine_tune(tiny_config(tmp_path / "b", "run.format=safetensors", "train.max_steps=3"))
    assert stopped.last.name == "last.safetensors" and stopped.global_step == 3
    resumed = fine_tune(tiny_config(tmp_path / "b", "run.format=safetensors"), resume=True)
    final_a = torch.load(whole.last, weights_only=True)["state_dict"]
    final_b = read_payload(resumed.last, registry=make_registry())["state_dict"]
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert resumed.best is not None and resumed.best.name == "best.safetensors"


def test_save_checkpoint_hands_write_the_checkpoint_the_guide_documents(tmp_path: Path):
    received = []

    class Recorder:
        __name__ = "recorder"

        @hookimpl
        def mska_checkpoint_formats(self):
            def write(checkpoint, path):
                received.append(checkpoint)
                Path(path).write_bytes(b"recorded")

            return [CheckpointFormat(name="recorder", sniff=lambda probe: False, read=lambda probe: None,
                                     write=write, suffixes=(".rec",))]

    registry = make_registry(Recorder())
    payload = make_payload("model", {"w": torch.ones(2)}, registry=registry, epoch=3)
    save_checkpoint(payload, tmp_path / "a.rec", registry=registry)
    read_back = load_checkpoint(save_checkpoint(payload, tmp_path / "a.pt", registry=registry), registry=registry)
    save_checkpoint(read_back, tmp_path / "b.rec", registry=registry)  # a Checkpoint is accepted too
    assert [type(c) for c in received] == [Checkpoint, Checkpoint]
    assert received[0].metadata["epoch"] == received[1].metadata["epoch"] == 3
    assert torch.equal(received[1].state_dict["w"], torch.ones(2))
    copy = save_checkpoint(read_back, tmp_path / "c.safetensors", registry=registry)
    assert read_payload(copy, registry=registry)["epoch"] == 3


def test_a_training_state_round_trips_through_safetensors(tmp_path: Path):
    from mska_core.training.scaffold import rng_state

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    registry = make_registry()
    payload = make_payload("training-state", model.state_dict(), optimizer=optimizer.state_dict(), rng=rng_state(),
                           registry=registry)
    back = read_payload(save_checkpoint(payload, tmp_path / "last.safetensors", registry=registry), registry=registry)
    assert set(back["optimizer"]["state"]) == {0, 1}  # integer keys survive JSON
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(back["rng"]["torch"], payload["rng"]["torch"])
    assert sorted(back["state_dict"]) == ["bias", "weight"]


def test_run_format_must_be_a_format_that_writes_files(tmp_path: Path):
    from mska_core.config.checks import check_against_registry

    registry = make_registry()
    with pytest.raises(ConfigError, match=r"run.format: checkpoint format 'lightning' .* only reads files; "
                                          r"formats that write run outputs: mska, safetensors"):
        check_against_registry(tiny_config(tmp_path, "run.format=lightning"), "tiny.toml", registry)
    with pytest.raises(ConfigError, match=r"run.format: unknown checkpoint format 'safetensor' \(did you mean"):
        check_against_registry(tiny_config(tmp_path, "run.format=safetensor"), "tiny.toml", registry)


def test_mska_config_validate_refuses_an_unknown_run_format_in_one_line(tmp_path: Path):
    line = one_error_line(run_mska("config", "validate", str(write_config(tmp_path)), "--set", "run.format=npz"))
    assert "run.format: unknown checkpoint format 'npz'" in line

"""Bad input gets one line and exit code 2 (docs/reliability.md): config values, config files that are
not config files, and crafted checkpoints. Real files, real ``mska`` subprocesses."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import run_mska
from test_reliability_runs import one_error_line


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


# -- config values are checked for what the code will do with them ---------------------------------


@pytest.mark.parametrize(("override", "expected"), [
    ("optim.lr=nan", "optim.lr: expected a finite number"),
    ("optim.lr=inf", "optim.lr: expected a finite number"),
    ("pretrain.teacher_temp=-inf", "pretrain.teacher_temp: expected a finite number"),
    ("optim.betas=[0.9, 1.0]", "optim.betas: each beta must be in [0, 1)"),
    ("optim.betas=[-0.1, 0.9]", "optim.betas: each beta must be in [0, 1)"),
    ("model.channels=[0, 64, 128, 128, 256, 256, 256, 256]", "model.channels: every entry must be positive"),
    ("model.strides=[2, 0, 1, 1, 2, 1, 1, 1]", "model.strides: every entry must be positive"),
    ("model.temporal_kernels=[4, 3, 3, 3, 3, 3, 3, 3]", "model.temporal_kernels: every entry must be odd"),
    ("model.temporal_kernels=[7, 3, 3, 3, 3, 3, 3, 2]", "model.temporal_kernels: every entry must be odd"),
    ("run.device='gpu'", "run.device: must be auto, cpu, cuda, cuda:N or mps"),
    ("run.seed=12345678901234567890", "run.seed: must be between 0 and 4294967295"),
    ("run.seed=-1", "run.seed: must be between 0 and 4294967295"),
    ("losses.distillation.temperatur=2", "unknown key 'losses.distillation.temperatur'"),
])
def test_config_validate_refuses_values_the_code_cannot_use(empty_config: Path, override: str, expected: str):
    line = one_error_line(run_mska("config", "validate", str(empty_config), "--set", override))
    assert expected in line and str(empty_config) in line


def test_a_misspelt_option_of_a_plugin_loss_with_a_signature_names_the_options(tmp_path: Path):
    from mska_core import LossSpec, hookimpl
    from mska_core.config import load_config
    from mska_core.config.checks import check_against_registry
    from mska_core.errors import ConfigError
    from mska_core.registry import make_registry

    class Focal:
        __name__ = "focal"

        @hookimpl
        def mska_losses(self):
            def build(gamma: float = 2.0, alpha: float = 0.25):
                raise AssertionError("validation never builds a loss with a signature")

            return [LossSpec(name="focal", build=build)]

    config = load_config(None, ["losses.focal.gama=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'losses.focal.gama' \(did you mean 'gamma'\?\).*alpha"):
        check_against_registry(config, "cfg", make_registry(Focal(), warn=False))


def test_model_vocab_size_that_disagrees_with_the_data_stops_training(tmp_path: Path):
    from test_train import tiny_config

    from mska_core.errors import ConfigError
    from mska_core.training.loop import FineTuning

    with pytest.raises(ConfigError, match="model.vocab_size = 99.*remove model.vocab_size"):
        FineTuning(tiny_config(tmp_path, "model.vocab_size=99", "train.max_steps=1")).prepare()


# -- config files that are not config files ---------------------------------------------------------


def test_an_endless_device_a_fifo_and_deep_nesting_are_one_line(tmp_path: Path):
    line = one_error_line(run_mska("config", "validate", "/dev/zero"))
    assert "/dev/zero" in line and "character device, not a regular file" in line
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nested too deeply" in one_error_line(run_mska("config", "validate", str(deep)))
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # nobody writes it: opening it would wait forever
    line = one_error_line(run_mska("config", "validate", str(fifo), timeout=60))
    assert str(fifo) in line and "named pipe, not a regular file" in line
    line = one_error_line(run_mska("train", "--config", str(fifo), timeout=60))
    assert "named pipe, not a regular file" in line


def test_a_metrics_file_whose_lines_are_not_objects_is_one_line_on_plot(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('[1, 2]\n["kind", "train"]\n')
    line = one_error_line(run_mska("plot", str(run_dir)))
    assert "metrics.jsonl: record 1 is a JSON list, not an object" in line
    (run_dir / "metrics.jsonl").unlink()
    os.mkfifo(run_dir / "metrics.jsonl")
    line = one_error_line(run_mska("plot", str(run_dir), timeout=60))
    assert "not a regular file (a named pipe)" in line


def test_a_config_that_is_not_utf8_or_is_a_folder_is_one_line(tmp_path: Path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))
    assert "not UTF-8" in one_error_line(run_mska("config", "validate", str(latin)))
    assert "is a directory" in one_error_line(run_mska("config", "validate", str(tmp_path)))


# -- crafted checkpoints ----------------------------------------------------------------------------


def legacy_storage_bomb(path: Path, numel: int) -> Path:
    """A legacy (non-zip) torch file whose pickle declares a storage of ``numel`` floats."""
    plain = path.with_suffix(".plain")
    torch.save({"a": torch.zeros(3)}, plain, _use_new_zipfile_serialization=False)
    data = plain.read_bytes()
    old = b"X\x03\x00\x00\x00cpuq\x06K\x03N"
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, b"X\x03\x00\x00\x00cpuq\x06\x8a\x05" + numel.to_bytes(5, "little") + b"N"))
    return path


def zip_with_pickle(path: Path, pickle_bytes: bytes) -> Path:
    """A torch zip file whose ``data.pkl`` is ``pickle_bytes``."""
    plain = path.with_suffix(".plain")
    torch.save({"a": torch.zeros(3)}, plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            data = source.read(info.filename)
            out.writestr(info.filename, pickle_bytes if info.filename.endswith("data.pkl") else data)
    return path


def test_a_pickle_that_would_allocate_without_bound_is_refused_before_torch_reads_it(tmp_path: Path):
    bomb = legacy_storage_bomb(tmp_path / "legacy.pt", 10**11)  # 366 bytes declaring 400 GB
    line = one_error_line(run_mska("inspect", str(bomb)))
    assert "400000000000 bytes of tensor storage" in line and "refused before reading" in line
    bytearray_call = (b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01cbuiltins\nbytearray\nq\x02\x8a\x05"
                      + (10**11).to_bytes(5, "little") + b"\x85q\x03Rq\x04s.")
    bomb = zip_with_pickle(tmp_path / "bytearray.pt", bytearray_call)
    assert "builtins.bytearray(100000000000)" in one_error_line(run_mska("inspect", str(bomb)))


def test_bounded_unpickling_reads_real_checkpoints_of_every_layout(tmp_path: Path):
    from mska_core.checkpoints import safe_torch_load

    state = {"w": torch.randn(4, 3), "b": torch.zeros(4, dtype=torch.bfloat16), "n": torch.arange(5),
             "nested": {"t": [torch.ones(2, dtype=torch.bool)], "x": 3.5}}
    for legacy in (False, True):
        path = tmp_path / f"ok{legacy}.pt"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        loaded = safe_torch_load(path)
        assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["nested"]["t"][0], state["nested"]["t"][0])


@pytest.mark.parametrize(("header", "expected"), [
    ({"w": {"dtype": "F32", "shape": [2, 2]}}, "data_offsets"),
    ({"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, "unknown dtype"),
    ({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 8]}}, "needs 4000000 bytes"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 10**12]}}, "cut short"),
    ({"w": "not an object"}, "not an object"),
    ({"__metadata__": {"k": 3}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, "__metadata__"),
])
def test_a_crafted_safetensors_header_is_one_line(tmp_path: Path, header: dict, expected: str):
    text = json.dumps(header).encode()
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 8)
    line = one_error_line(run_mska("inspect", str(path)))
    assert expected in line and str(path) in line


def test_a_checkpoint_without_its_config_is_one_line_on_evaluate(tmp_path: Path):
    from mska_core.checkpoints import make_payload, save_checkpoint

    path = tmp_path / "best.pt"
    save_checkpoint(make_payload("model", {"w": torch.zeros(1)}, vocabularies={"gloss": [], "text": []}), path)
    line = one_error_line(run_mska("evaluate", "--checkpoint", str(path)))
    assert "'config'" in line and str(path) in line

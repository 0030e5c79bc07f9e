"""Checkpoint payloads, formats, safe loading and atomic saving, with real files."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest
import torch

from mska_core import CheckpointFormat, get_registry, hookimpl
from mska_core.checkpoints import (
    Checkpoint,
    list_checkpoints,
    load_checkpoint,
    make_payload,
    read_payload,
    safe_torch_load,
    save_checkpoint,
)
from mska_core.errors import CheckpointError, UnsafeCheckpointError


def _sd(scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {"blocks.0.weight": torch.full((4, 3), scale), "norm.bias": torch.arange(3.0) * scale}


class Sentinel:
    """A pickle that creates a file when unpickled: what loading must never do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# -- payload --------------------------------------------------------------------------------------


def test_payload_is_plain_data_that_weights_only_reads(tmp_path):
    from mska_core.config import Config

    payload = make_payload("stream-encoder", _sd(), stream="face", arch="vit_tiny_test",
                           arch_config={"img_size": 112}, min_loss=0.5, epoch=2, global_step=40, config=Config())
    path = save_checkpoint(payload, tmp_path / "face.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["stream"] == "face" and len(raw["state_dict"]) == 2
    assert raw["format"] == "mska-core" and raw["format_version"] == 1 and raw["kind"] == "stream-encoder"
    assert raw["config"]["model"]["layout"] == "coco_wholebody"
    assert raw["plugins"]["core-checkpoints"] and raw["mska_core_version"] and raw["created"].endswith("+00:00")
    checkpoint = load_checkpoint(path)
    assert checkpoint.format == "mska" and checkpoint.stream == "face" and checkpoint.metadata["min_loss"] == 0.5


def test_payload_refuses_objects_weights_only_could_not_read():
    with pytest.raises(CheckpointError, match=r"payload\.extra\.when is a datetime\.date; checkpoints hold plain data"):
        import datetime

        make_payload("model", _sd(), extra={"when": datetime.date.today()})


def test_unknown_kind_is_refused():
    with pytest.raises(CheckpointError, match="unknown checkpoint kind 'encoder'; valid: stream-encoder"):
        make_payload("encoder", _sd())


def test_safetensors_carries_metadata_as_json_strings(tmp_path):
    from safetensors import safe_open

    path = save_checkpoint(make_payload("backbone", _sd(), stream="hand", arch="vit_tiny_test", epoch=7),
                           tmp_path / "hand.safetensors")
    with safe_open(str(path), "pt") as handle:
        raw = handle.metadata()
    assert json.loads(raw["stream"]) == "hand" and json.loads(raw["epoch"]) == 7
    checkpoint = load_checkpoint(path)
    assert checkpoint.format == "safetensors" and checkpoint.stream == "hand" and checkpoint.metadata["epoch"] == 7
    torch.testing.assert_close(checkpoint.state_dict["norm.bias"], _sd()["norm.bias"])


# -- formats --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_sd(), "state_dict"),
        ({"model": _sd(), "epoch": 3}, "state_dict"),
        ({"state_dict": _sd(), "pytorch-lightning_version": "2.1.0"}, "lightning"),
        ({"teacher": _sd(), "student": _sd(), "args": argparse.Namespace(lr=0.1), "epoch": 1}, "dino"),
    ],
)
def test_each_format_recognises_its_files(tmp_path, obj, expected):
    torch.save(obj, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt").format == expected


def test_keys_lose_ddp_and_compile_wrappers_in_every_format(tmp_path):
    torch.save({"state_dict": {f"model._orig_mod.module.{k}": v for k, v in _sd().items()},
                "pytorch-lightning_version": "2.1.0"}, tmp_path / "l.ckpt")
    assert set(load_checkpoint(tmp_path / "l.ckpt").state_dict) == {"model.blocks.0.weight", "model.norm.bias"}


class ClaimsEverything:
    """A plugin whose format claims every file: a clash with the built-in formats."""

    __name__ = "greedy"

    @hookimpl
    def mska_checkpoint_formats(self):
        return [CheckpointFormat(name="greedy", sniff=lambda probe: True, read=lambda probe: None)]


def test_two_formats_claiming_one_file_is_an_error(tmp_path):
    from mska_core.registry import make_registry

    torch.save(_sd(), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"claimed by two checkpoint formats, 'state_dict' .* and 'greedy'"):
        load_checkpoint(tmp_path / "c.pt", registry=make_registry(ClaimsEverything()))


def test_a_file_no_format_knows_is_described(tmp_path):
    torch.save({"weights_of_something": [1, 2, 3]}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"top-level keys \(weights_of_something\) match no format; registered formats: mska"):
        load_checkpoint(tmp_path / "odd.pt")


# -- safety ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_code_running_pickle_is_refused_and_nothing_runs(tmp_path, writer):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.pt"
    obj = {"weight": torch.zeros(2), "payload": Sentinel(str(sentinel))}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps({"payload": Sentinel(str(sentinel))}, protocol=4))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "would import posix.system" in message and "nothing from the file was run" in message
    assert not sentinel.exists()
    from mska_core.backbones import load_backbone

    with pytest.raises(UnsafeCheckpointError):
        load_backbone(f"file::{path}:vit_tiny_test")
    assert not sentinel.exists()


def test_a_legacy_file_is_refused_naming_what_its_object_pickle_would_import(tmp_path):
    path = tmp_path / "legacy.pt"
    sentinel = tmp_path / "SENTINEL"
    torch.save({"w": torch.zeros(2), "x": Sentinel(str(sentinel))}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=r"would import posix\.system"):
        safe_torch_load(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("module", [b"builtins", b"__builtin__"])
@pytest.mark.parametrize("container", ["legacy", "zip"])
def test_an_allocating_call_is_bounded_however_the_pickle_names_builtins(tmp_path, module, container):
    from mska_core.checkpoints.files import check_pickle_bounds

    # bytearray(10**12): protocol 2 names builtins "__builtin__", and torch's unpickler accepts both
    call = b"\x80\x02c" + module + b"\nbytearray\n\x8a\x06" + (10**12).to_bytes(6, "little") + b"\x85R."
    path = tmp_path / "bomb.pt"
    if container == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("bomb/data.pkl", call)
    else:
        path.write_bytes(call)  # a legacy file that ends after its first pickle
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.bytearray\(1000000000000\)"):
        check_pickle_bounds(path)


def test_namespace_needs_the_explicit_allow_list(tmp_path):
    torch.save({"teacher": _sd(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "dino.pth")
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace"):
        safe_torch_load(tmp_path / "dino.pth")
    assert safe_torch_load(tmp_path / "dino.pth", allow=[argparse.Namespace])["args"].lr == 0.1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(random.Random(0).randbytes(4096)), "not a checkpoint"),  # not 0x80: no pickle
        (lambda p: p.write_bytes(_torch_bytes()[: len(_torch_bytes()) // 2]), "truncated"),
        (lambda p: _write_zip(p), "a zip archive but not a torch checkpoint"),
    ],
    ids=["empty", "random", "truncated", "zip"],
)
def test_bad_files_give_one_line(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def _torch_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1000)}, buffer)
    return buffer.getvalue()


def _write_zip(path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")


# -- atomic saving --------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, torch
    from mska_core.checkpoints import make_payload, save_checkpoint
    big = {f"layer{i}.weight": torch.full((1024, 1024), 2.0) for i in range(96)}  # 384 MiB
    print("ready", flush=True)
    save_checkpoint(make_payload("model", big, epoch=2), sys.argv[1])
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(make_payload("model", _sd(), epoch=1), path)
    before = path.read_bytes()
    env = {**os.environ, "MSKA_LOAD_PLUGINS": ""}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 120
    temporary = []
    while time.monotonic() < deadline:  # kill as soon as the temporary file holds some data
        temporary = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if temporary and temporary[0].stat().st_size > (1 << 20):
            break
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert temporary, "the writer never started writing"
    assert path.read_bytes() == before
    checkpoint = load_checkpoint(path)
    assert checkpoint.metadata["epoch"] == 1
    torch.testing.assert_close(checkpoint.state_dict["blocks.0.weight"], _sd()["blocks.0.weight"])
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers and list_checkpoints(tmp_path) == [path]
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(leftovers[0])


def test_list_checkpoints_skips_temporary_files(tmp_path):
    save_checkpoint(make_payload("model", _sd()), tmp_path / "a.pt")
    (tmp_path / ".a.pt.x1y2.tmp").write_bytes(b"PK\x03\x04partial")
    assert list_checkpoints(tmp_path) == [tmp_path / "a.pt"]


def test_checkpoint_record_describes_itself(tmp_path):
    checkpoint = Checkpoint("mska", {"kind": "backbone", "arch": "vit_tiny_test"}, _sd(), tmp_path / "f.pt")
    assert checkpoint.describe() == f"{tmp_path / 'f.pt'} (format mska, kind backbone, arch vit_tiny_test, 2 tensors)"


# -- saving through the formats -------------------------------------------------------------------


class NpzFormat:
    """A plugin format that reads and writes numpy ``.npz`` archives (its own real files)."""

    @hookimpl
    def mska_checkpoint_formats(self):
        import numpy as np

        def write(checkpoint, path):
            state = {k: v.numpy() for k, v in checkpoint.state_dict.items()}
            with open(path, "wb") as handle:
                np.savez(handle, **state)

        def sniff(probe):
            return probe.path.suffix == ".npz"

        def read(probe):
            with np.load(probe.path) as archive:
                return Checkpoint("npz", {}, {k: torch.from_numpy(archive[k]) for k in archive.files}, probe.path)

        return [CheckpointFormat(name="npz", sniff=sniff, read=read, write=write, suffixes=(".npz",))]


def test_save_checkpoint_writes_through_the_format_that_claims_the_suffix(tmp_path):
    from safetensors import safe_open

    from mska_core.registry import make_registry

    registry = make_registry(NpzFormat())
    payload = make_payload("backbone", _sd(2.0), stream="face", epoch=3, registry=registry)
    save_checkpoint(payload, tmp_path / "w.npz", registry=registry)
    assert zipfile.is_zipfile(tmp_path / "w.npz")  # numpy's archive, not a torch file
    back = load_checkpoint(tmp_path / "w.npz", registry=registry)
    assert back.format == "npz" and torch.equal(back.state_dict["blocks.0.weight"], _sd(2.0)["blocks.0.weight"])
    save_checkpoint(payload, tmp_path / "w.safetensors", registry=registry)
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["stream"]) == "face"
    save_checkpoint(payload, tmp_path / "w.bin", registry=registry)  # no format claims .bin: ours
    assert torch.load(tmp_path / "w.bin", weights_only=True)["epoch"] == 3


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_read_payload_gives_back_the_payload_that_was_saved(tmp_path, suffix):
    payload = make_payload("model", _sd(3.0), stream="face", epoch=2, vocabularies={"gloss": ["a", "b"]})
    path = save_checkpoint(payload, tmp_path / f"m{suffix}")
    back = read_payload(path, kinds=("model",), require=("vocabularies",), registry=get_registry())
    assert back["kind"] == "model" and back["stream"] == "face" and back["vocabularies"] == {"gloss": ["a", "b"]}
    assert set(back["state_dict"]) == set(_sd()) and torch.equal(back["state_dict"]["blocks.0.weight"],
                                                                 _sd(3.0)["blocks.0.weight"])


@pytest.mark.parametrize(("write", "kwargs", "message"), [
    (lambda p: torch.save(_sd(), p), {}, r"a state_dict checkpoint, not an mska-core payload, which a test needs"),
    (lambda p: save_checkpoint(make_payload("backbone", _sd()), p), {"kinds": ("model", "training-state")},
     r"kind 'backbone', expected 'model' or 'training-state', which a test needs; do this"),
    (lambda p: save_checkpoint(make_payload("model", _sd()), p), {"require": ("vocabularies", "optimizer")},
     r"lacks 'vocabularies', 'optimizer', which a test needs"),
    (lambda p: save_checkpoint({**make_payload("model", _sd()), "format_version": 99}, p), {},
     r"format_version 99; this mska-core reads versions up to 1"),
], ids=["not ours", "wrong kind", "missing keys", "newer version"])
def test_read_payload_refuses_what_the_caller_cannot_use_in_one_line(tmp_path, write, kwargs, message):
    path = tmp_path / "c.pt"
    write(path)
    with pytest.raises(CheckpointError, match=message) as info:
        read_payload(path, needed_by="a test", hint="do this", registry=get_registry(), **kwargs)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_save_checkpoint_refuses_a_read_only_format():
    with pytest.raises(CheckpointError, match=r"format 'dino' can only be read; formats that write: mska, safetensors"):
        save_checkpoint(make_payload("backbone", _sd()), "x.pth", format="dino")


def test_payload_provenance_comes_from_the_registry_that_made_it():
    from mska_core.registry import make_registry

    payload = make_payload("backbone", _sd(), registry=make_registry(NpzFormat()))
    assert "NpzFormat" in payload["plugins"]
    assert "NpzFormat" not in make_payload("backbone", _sd())["plugins"]

"""``mska inspect``: real subprocess runs on real files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch

from mska_core.backbones import build_arch
from mska_core.checkpoints import make_payload, save_checkpoint


class Sentinel:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    model = build_arch("vit_tiny_test")
    payload = make_payload("backbone", model.state_dict(), stream="face", arch=model.arch,
                           arch_config=model.arch_config, epoch=4, global_step=80, min_loss=1.25)
    payload["plugins"] = {**payload["plugins"], "ghost-stream": "0.3.0", "core-losses": "0.0.1"}
    folder = tmp_path_factory.mktemp("inspect")
    return save_checkpoint(payload, folder / "face.pt"), save_checkpoint(payload, folder / "face.safetensors")


def _bad(tmp_path, case: str):
    path = tmp_path / "input.pt"
    if case == "missing":
        return tmp_path / "nothing-here.pt"
    if case == "directory":
        return tmp_path
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        torch.save({"w": torch.zeros(4096)}, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "random":
        path.write_bytes(os.urandom(8192))
    elif case == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("photos/a.jpg", b"\xff\xd8")
    elif case == "pickle":
        path.write_bytes(pickle.dumps({"x": Sentinel(str(tmp_path / "SENTINEL"))}))
    elif case == "torch-pickle":
        torch.save({"w": torch.zeros(2), "x": Sentinel(str(tmp_path / "SENTINEL"))}, path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("empty", "is empty"),
        ("truncated", "truncated"),
        ("random", "not a checkpoint"),
        ("zip", "not a torch checkpoint"),
        ("pickle", "refused: its pickle would import posix.system"),
        ("torch-pickle", "refused: its pickle would import posix.system"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(mska, tmp_path, case, message):
    result = mska("inspect", str(_bad(tmp_path, case)))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mska: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "SENTINEL").exists()


def test_inspect_shows_format_metadata_provenance_and_tree(mska, export):
    result = mska("inspect", str(export[0]))
    assert result.returncode == 0, result.stderr
    out = result.stderr
    assert "format mska" in out and "vit_tiny_test" in out and "1.25" in out
    assert "ghost-stream" in out and "missing" in out and "different" in out
    assert "blocks" in out and "patch_embed" in out and "88,272 parameters" in out


def test_json_gives_the_same_on_stdout(mska, export):
    result = mska("inspect", str(export[0]), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "mska" and info["metadata"]["kind"] == "backbone" and info["metadata"]["epoch"] == 4
    status = {row["name"]: row["status"] for row in info["provenance"]}
    assert status["ghost-stream"] == "missing" and status["core-losses"] == "different" and status["mska-core"] == "same"
    assert info["totals"]["tensors"] == 34 and info["totals"]["parameters"] == 88272
    blocks = next(node for node in info["tree"] if node["prefix"] == "blocks")
    assert [c["prefix"] for c in blocks["children"]] == ["blocks.0", "blocks.1"] and blocks["dtypes"] == ["float32"]
    assert "tensors" not in info


def test_tensors_lists_every_tensor(mska, export):
    info = json.loads(mska("inspect", str(export[1]), "--json", "--tensors").stdout)
    assert info["format"] == "safetensors" and info["metadata"]["stream"] == "face"
    rows = {t["key"]: t for t in info["tensors"]}
    assert rows["pos_embed"]["shape"] == [1, 65, 48] and rows["pos_embed"]["dtype"] == "float32"
    assert rows["pos_embed"]["bytes"] == 65 * 48 * 4 and len(rows) == 34
    human = mska("inspect", str(export[1]), "--tensors").stderr
    assert "blocks.1.mlp.fc2.weight" in human and "[48, 192]" in human


def test_safetensors_are_described_from_the_header_without_torch(export):
    code = textwrap.dedent(
        f"""
        import sys
        from mska_core.checkpoints import describe
        info = describe({str(export[1])!r})
        print(info["totals"]["tensors"], "torch" in sys.modules)
        """
    )
    env = {**os.environ, "MSKA_LOAD_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.split() == ["34", "False"], result.stderr


def _config(tmp_path, backbone: str) -> str:
    text = f"""
    [model]
    channels = [8, 8]
    inter_channels = [4, 4]
    temporal_kernels = [3, 3]
    strides = [2, 2]
    num_heads = 2
    head_hidden = 16
    head_ff = 32
    crop_dim = 16
    vocab_size = 10

    [model.streams.face]
    backbone = "file::{backbone}:vit_tiny_test"

    [model.streams.hand_left]
    [model.streams.hand_right]
    """
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_against_reports_per_stream_whether_it_would_load(mska, tmp_path, export):
    pytest.importorskip("mska_core.encoder")
    config = _config(tmp_path, export[0])
    result = mska("inspect", str(export[0]), "--against", config, "--json")
    assert result.returncode == 0, result.stderr
    against = json.loads(result.stdout)["against"]
    assert against["ok"] and [s["stream"] for s in against["streams"]] == ["face"]
    hand = build_arch("vit_tiny_test")
    save_checkpoint(make_payload("backbone", hand.state_dict(), stream="hand", arch="vit_tiny_test"), tmp_path / "hand.pt")
    result = mska("inspect", str(tmp_path / "hand.pt"), "--against", config)
    assert result.returncode == 1
    assert "hand_left" in result.stderr and "hand_right" in result.stderr and "fits nowhere" in result.stderr

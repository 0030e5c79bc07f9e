"""``mska inspect``: real subprocess runs on real files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

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
    out = result.stdout
    assert "format mska" in out and "vit_tiny_test" in out and "1.25" in out
    assert "ghost-stream" in out and "missing" in out and "different" in out
    assert "blocks" in out and "patch_embed" in out and "88,272 parameters" in out
    assert_fits_80_columns(result.stdout)


def test_json_gives_the_same_on_stdout(mska, export):
    result = mska("inspect", str(export[0]), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "mska" and info["metadata"]["kind"] == "backbone" and info["metadata"]["epoch"] == 4
    status = {row["name"]: row["status"] for row in info["provenance"]}
    assert status["ghost-stream"] == "missing" and status["core-losses"] == "different" and status["mska-core"] == "same"
    assert info["totals"]["tensors"] == 34 and info["totals"]["parameters"] == 88272
    assert info["totals"]["buffers"] == 0 and info["totals"]["by_dtype"]["float32"]["bytes"] == 88272 * 4
    blocks = next(node for node in info["tree"] if node["prefix"] == "blocks")
    assert [c["prefix"] for c in blocks["children"]] == ["blocks.0", "blocks.1"] and blocks["dtypes"] == ["float32"]
    assert "tensors" not in info


def test_tensors_lists_every_tensor(mska, export):
    info = json.loads(mska("inspect", str(export[1]), "--json", "--tensors").stdout)
    assert info["format"] == "safetensors" and info["metadata"]["stream"] == "face"
    rows = {t["key"]: t for t in info["tensors"]}
    assert rows["pos_embed"]["shape"] == [1, 65, 48] and rows["pos_embed"]["dtype"] == "float32"
    assert rows["pos_embed"]["bytes"] == 65 * 48 * 4 and len(rows) == 34
    human = mska("inspect", str(export[1]), "--tensors").stdout
    assert "blocks.1.mlp.fc2.weight" in human and "[48, 192]" in human
    assert_fits_80_columns(human)


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
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
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


def test_against_an_export_checks_the_streams_it_is_meant_for(mska, tmp_path, export):
    config = _config(tmp_path, export[0])
    result = mska("inspect", str(export[0]), "--against", config, "--json")
    assert result.returncode == 0, result.stderr
    against = json.loads(result.stdout)["against"]
    parts = {p["part"]: p for p in against["parts"]}
    assert against["ok"] and parts["stream face"]["status"] == "loads"
    assert parts["stream hand_left"]["status"] == "not in checkpoint" and parts["stream hand_left"]["ok"]
    assert parts["head fuse"]["status"] == "not in checkpoint"
    hand = build_arch("vit_tiny_test")
    save_checkpoint(make_payload("backbone", hand.state_dict(), stream="hand", arch="vit_tiny_test"), tmp_path / "hand.pt")
    result = mska("inspect", str(tmp_path / "hand.pt"), "--against", config)
    assert result.returncode == 1
    assert "stream hand_left" in result.stdout and "stream hand_right" in result.stdout
    assert "does not fit: stream hand_left, stream hand_right" in result.stdout
    assert_fits_80_columns(result.stdout)


def test_against_reports_keys_resampled_to_the_configs_image_size(mska, tmp_path, export):
    config = _config(tmp_path, export[0])
    text = Path(config).read_text().replace(":vit_tiny_test\"\n", ":vit_tiny_test\"\nimg_size = 56\n")
    Path(config).write_text(text)
    result = mska("inspect", str(export[0]), "--against", config, "--json")
    assert result.returncode == 0, result.stderr
    face = next(p for p in json.loads(result.stdout)["against"]["parts"] if p["part"] == "stream face")
    assert face["verdict"] == "loads with 1 key resampled" and face["resampled"][0].endswith("pos_embed")


def test_against_takes_set_like_every_command_that_reads_a_config(mska, tmp_path, export):
    config = _config(tmp_path, export[0])
    result = mska("inspect", str(export[0]), "--against", config, "--set", "model.streams.face.img_size=56",
                  "--json")
    assert result.returncode == 0, result.stderr
    face = next(p for p in json.loads(result.stdout)["against"]["parts"] if p["part"] == "stream face")
    assert face["verdict"] == "loads with 1 key resampled"
    result = mska("inspect", str(export[0]), "--set", "model.streams.face.img_size=56")
    assert result.returncode == 2 and "--set changes the config of --against" in result.stderr


def test_a_claim_the_tensors_contradict_is_flagged(mska, tmp_path):
    model = build_arch("vit_tiny_test")
    claimed = {**model.arch_config, "embed_dim": 64, "depth": 12}
    path = save_checkpoint(make_payload("backbone", model.state_dict(), stream="face", arch=model.arch,
                                        arch_config=claimed), tmp_path / "claims.pt")
    info = json.loads(mska("inspect", str(path), "--json").stdout)
    claims = {c["claim"]: c for c in info["claims"]}
    assert claims["arch_config.embed_dim"]["ok"] is False and claims["arch_config.embed_dim"]["found"] == 48
    assert claims["arch_config.depth"]["ok"] is False and claims["arch_config.depth"]["found"] == 2
    assert claims["arch_config.patch_size"]["ok"] is True
    human = mska("inspect", str(path)).stdout
    assert "claim does not hold: arch_config.embed_dim = 64" in " ".join(human.split())


def assert_fits_80_columns(text: str) -> None:
    assert text.strip(), "no output on stdout"
    widest = max(len(line) for line in text.splitlines())
    assert widest <= 80, f"a line of {widest} columns"


# -- --diff ------------------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path):
    """A: an export; B: the same tensors in safetensors under a model's prefix, with known changes."""
    torch.manual_seed(0)
    a = {"blocks.0.w": torch.randn(4, 3), "blocks.0.b": torch.randn(4), "blocks.1.w": torch.randn(4, 4),
         "norm.w": torch.ones(4), "old.w": torch.zeros(2)}
    b = {k: v.clone() for k, v in a.items() if k != "old.w"}
    b["blocks.1.w"][2, 1] += 0.5
    b["norm.w"] = torch.ones(5)
    b["new.w"] = torch.zeros(3)
    b = {f"encoder.backbone.{k}": v for k, v in b.items()}
    b["encoder.head.w"] = torch.randn(2, 2)
    path_a = save_checkpoint(make_payload("backbone", a, stream="face"), tmp_path / "a.pt")
    path_b = save_checkpoint(make_payload("model", b), tmp_path / "b.safetensors")
    return path_a, path_b


def test_diff_reports_each_key_across_formats_with_a_map(mska, pair):
    result = mska("inspect", str(pair[0]), "--diff", str(pair[1]), "--map", "=encoder.backbone.", "--json",
                  "--tensors")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["format_a"], report["format_b"]) == ("mska", "safetensors")
    status = {t["key"]: t["status"] for t in report["tensors"]}
    assert status == {"blocks.0.w": "identical", "blocks.0.b": "identical", "blocks.1.w": "changed",
                      "norm.w": "shape", "old.w": "only in A", "new.w": "only in B"}  # encoder.head.* unmapped
    changed = next(t for t in report["tensors"] if t["key"] == "blocks.1.w")
    assert changed["max_abs"] == pytest.approx(0.5) and changed["key_b"] == "encoder.backbone.blocks.1.w"
    assert report["totals"] == {**report["totals"], "identical": 2, "changed": 1, "shape": 1, "only_a": 1, "only_b": 1}
    blocks = {g["prefix"]: g for g in report["groups"]}["blocks.1"]
    assert blocks["changed"] == 1 and blocks["max_abs"] == pytest.approx(0.5)


def test_diff_prefix_keeps_keys_in_as_naming(mska, pair):
    report = json.loads(mska("inspect", str(pair[0]), "--diff", str(pair[1]), "--map", "=encoder.backbone.",
                             "--prefix", "blocks.0.", "--json", "--tensors").stdout)
    assert [(t["key"], t["status"]) for t in report["tensors"]] == [("blocks.0.w", "identical"), ("blocks.0.b", "identical")]


def test_diff_human_output_summarises_per_prefix_in_80_columns(mska, pair):
    result = mska("inspect", str(pair[0]), "--diff", str(pair[1]), "--map", "=encoder.backbone.")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "only in A (1): old.w [2]" in out and "only in B (1): new.w [3]" in out
    assert "shape changes (1): norm.w A [4], B [5]" in out
    assert "2 of 3 shared tensors identical, 1 changed (max abs 0.5)" in out
    assert_fits_80_columns(result.stdout)


def test_a_file_against_itself_is_identical(mska, export):
    report = json.loads(mska("inspect", str(export[0]), "--diff", str(export[1]), "--json").stdout)
    assert report["totals"]["identical"] == 34 and report["totals"]["keys"] == 34 and report["tensors"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map", "blocks."], "--map 'blocks.': expected A_PREFIX=B_PREFIX"),
        (["--map", "a=b=c"], "expected A_PREFIX=B_PREFIX (one '=')"),
        (["--map", "="], "give at least one prefix"),
    ],
)
def test_bad_map_syntax_is_one_line_and_exit_code_2(mska, pair, args, message):
    result = mska("inspect", str(pair[0]), "--diff", str(pair[1]), *args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_diff_with_a_missing_file_is_one_line_and_exit_code_2(mska, pair, tmp_path):
    result = mska("inspect", str(pair[0]), "--diff", str(tmp_path / "gone.pt"), "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"mska: error: {tmp_path / 'gone.pt'}: no such file"


def test_map_without_diff_is_a_usage_error(mska, pair):
    result = mska("inspect", str(pair[0]), "--map", "a=b")
    assert result.returncode == 2 and "--prefix and --map go with --diff B" in result.stderr

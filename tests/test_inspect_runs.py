"""``mska inspect`` on what real work leaves: the reference-layout checkpoint of the MSKA paper, and
the export, models and run folders of real ``mska pretrain`` and ``mska train`` runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_encoder_reference import PAPER_PRESET, reference_checkpoint

pytestmark = pytest.mark.slow

PAPER_PARAMETERS, PAPER_BUFFER_VALUES = 44_159_272, 49_292  # the reference's model; batch-norm running stats
PAPER_HEADS = ("fuse", "left", "right", "body")


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory) -> Path:
    """A checkpoint as the MSKA reference writes it, at the Phoenix-2014T vocabulary of the paper preset."""
    from mska_core.config import load_config
    from mska_core.encoder import MSKAEncoder

    torch.manual_seed(0)
    encoder = MSKAEncoder.from_config(load_config(PAPER_PRESET).model)
    path = tmp_path_factory.mktemp("reference") / "best.pth"
    torch.save({"model": reference_checkpoint(encoder), "optimizer": {}, "epoch": 40}, path)
    return path


def test_parameters_and_buffers_are_counted_apart_on_the_reference_layout_checkpoint(mska, reference_file):
    result = mska("inspect", str(reference_file), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "mska-paper"
    totals = info["totals"]
    assert (totals["parameters"], totals["buffers"]) == (PAPER_PARAMETERS, PAPER_BUFFER_VALUES)
    tree = {node["prefix"]: node for node in info["tree"]}
    assert tree["branches"]["parameters"] == 15_544_336 and tree["branches"]["buffers"] > 0
    assert tree["heads"]["parameters"] == PAPER_PARAMETERS - 15_544_336
    assert totals["bytes"] == 4 * (PAPER_PARAMETERS + PAPER_BUFFER_VALUES) + 4 * totals["by_dtype"]["int64"]["elements"]
    human = mska("inspect", str(reference_file)).stdout
    assert "44,159,272 parameters, 49,292 buffer values" in human


def test_a_vocabulary_mismatch_makes_against_exit_1_naming_the_heads(mska, reference_file, tmp_path):
    config = tmp_path / "paper_v1000.toml"
    config.write_text(PAPER_PRESET.read_text().replace("vocab_size = 1094", "vocab_size = 1000"))
    result = mska("inspect", str(reference_file), "--against", str(config), "--json")
    assert result.returncode == 1, result.stderr
    against = json.loads(result.stdout)["against"]
    assert against["failing"] == [*(f"head {h}" for h in PAPER_HEADS), "gloss vocabulary"]
    parts = {p["part"]: p for p in against["parts"]}
    assert all(parts[f"stream {s}"]["status"] == "loads" for s in ("hand_left", "face", "hand_right", "body"))
    assert parts["head fuse"]["mismatched"][0] == {
        "key": "encoder.heads.fuse.classifier.weight", "expected": [1000, 512], "found": [1094, 512]}
    human = mska("inspect", str(reference_file), "--against", str(config))
    assert human.returncode == 1
    text = flat(human.stdout)
    assert "differs: checkpoint 1094, config 1000" in text
    assert "the classifiers of heads fuse, left, right, body do not fit" in text
    assert "does not fit: head fuse, head left, head right, head body, gloss vocabulary" in text
    assert max(len(line) for line in human.stdout.splitlines()) <= 80


# -- a pretraining export, and models fine-tuned from it ------------------------------------------------

TRAIN = ["--set", "data.synthetic.num_train=2", "--set", "data.synthetic.num_dev=2",
         "--set", "data.synthetic.num_test=2", "--set", "data.synthetic.crop_size=28",
         "--set", "model.channels=[8, 8]", "--set", "model.inter_channels=[4, 4]",
         "--set", "model.temporal_kernels=[3, 3]", "--set", "model.strides=[2, 2]",
         "--set", "model.num_heads=2", "--set", "model.head_hidden=16", "--set", "model.head_ff=16",
         "--set", "model.crop_dim=8", "--set", "train.epochs=1", "--set", "train.batch_size=2",
         "--set", "train.test_beam_size=1", "--set", "train.progress=false", "--set", "run.device=cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A hand encoder pretrained with ``mska pretrain --export-checkpoint``, then two ``mska train``
    runs initialised from it (both hands): one with the hand streams frozen (their weights stay as
    initialised: the model before training) and one that trains them."""
    from conftest import run_mska

    root = tmp_path_factory.mktemp("runs")
    export = root / "dino_hands" / "encoder_hand.pt"
    done = run_mska("pretrain", "--stream", "hand", "--output-dir", str(root / "dino_hands"), "--epochs", "1",
                    "--export-checkpoint", "--output-path", str(export), "--batch-size", "4", "--img-size", "28",
                    "--set", "pretrain.max_steps=1", "--set", "pretrain.synthetic_images=4",
                    "--set", "pretrain.local_crops=1", "--set", "pretrain.out_dim=64",
                    "--set", "pretrain.probe_every=0", "--set", "pretrain.progress=false")
    assert done.returncode == 0, done.stderr
    spec = f"file::{export}:vit_tiny_test"
    frozen = ["--set", "model.streams.hand_left.freeze=true", "--set", "model.streams.hand_right.freeze=true"]
    for name, extra in (("initialised", frozen), ("trained", [])):
        done = run_mska("train", "--use-mska", "--mska-hand-state", str(export), "--hand-left-backbone", spec,
                        "--hand-right-backbone", spec, "--set", f"run.output_dir={root}", "--set", f"run.name={name}",
                        "--set", "optim.lr=0.01", *extra, *TRAIN)
        assert done.returncode == 0, done.stderr
    return root


def flat(text: str) -> str:
    """Human output as one line: table borders dropped, so text folded inside a cell reads on."""
    return " ".join(text.replace("│", " ").split())


def _totals(a, b, *maps: str) -> dict:
    from mska_core.checkpoints import diff_checkpoints
    from mska_core.checkpoints.inspector import parse_map

    return diff_checkpoints(a, b, maps=[parse_map(m) for m in maps]).totals()


def test_diff_shows_replicated_hand_tensors_identical_before_training_and_changed_after(mska, runs):
    export = runs / "dino_hands" / "encoder_hand.pt"
    before, after = runs / "initialised" / "last.pt", runs / "trained" / "last.pt"
    for hand in ("hand_left", "hand_right"):
        totals = _totals(export, before, f"=encoder.branches.{hand}.crop.backbone.")
        assert totals["keys"] == totals["identical"] == 34, totals
        totals = _totals(export, after, f"=encoder.branches.{hand}.crop.backbone.")
        assert totals["keys"] == 34 and totals["only_a"] == totals["only_b"] == totals["shape"] == 0
        assert totals["changed"] > 0 and totals["max_abs"] > 0, totals
    left_right = "encoder.branches.hand_left.crop.backbone.=encoder.branches.hand_right.crop.backbone."
    assert _totals(before, before, left_right)["identical"] == 34
    assert _totals(after, after, left_right)["changed"] > 0
    # The command line says the same, per module prefix.
    result = mska("inspect", str(export), "--diff", str(after), "--map", "=encoder.branches.hand_left.crop.backbone.",
                  "--depth", "1")
    assert result.returncode == 0, result.stderr
    cells = ([x for x in line.split() if x != "│"] for line in result.stdout.splitlines() if line.startswith("│ "))
    rows = {row[0]: row[1:] for row in cells}
    assert int(rows["blocks"][1]) > 0  # columns: same, chg, shape, A, B, max abs, max rel
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_a_trained_model_fits_the_config_of_its_run(mska, runs):
    folder = runs / "trained"
    result = mska("inspect", str(folder / "best.pt"), "--against", str(folder / "config.toml"), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    against = json.loads(result.stdout)["against"]
    assert against["ok"] and against["holds"] == "whole model"
    assert {p["part"]: p["status"] for p in against["parts"]} == {
        "stream hand_left": "loads", "stream face": "loads", "stream hand_right": "loads", "stream body": "loads",
        **{f"head {h}": "loads" for h in PAPER_HEADS}}
    checks = {c["name"]: c for c in against["checks"]}
    assert checks["gloss vocabulary"]["ok"] and checks["gloss vocabulary"]["note"] == "from the data"
    assert checks["layout"]["ok"] and checks["joints hand_left"]["checkpoint"] == 27


def test_run_folder_view(mska, runs, tmp_path):
    folder = tmp_path / "trained"
    shutil.copytree(runs / "trained", folder)
    (folder / "broken.pt").write_bytes((folder / "best.pt").read_bytes()[:4000])
    result = mska("inspect", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["run"] == "fine-tuning" and info["config"]["name"] == "trained"
    assert info["config"]["streams"] == ["hand_left", "hand_right"] or "hand_left" in info["config"]["streams"]
    assert info["best"]["epoch"] == 1 and info["best"]["selection"]["metric"] == "wer" and "wer" in info["best"]["metrics"]
    assert info["last"]["epoch"] == 1 and info["last"]["global_step"] == 1 and "wer" in info["last"]["metrics"]
    assert info["metrics"]["train_records"] >= 1 and len(info["metrics"]["evals"]) == 1
    assert {row["name"]: row["status"] for row in info["provenance"]}["mska-core"] == "same"
    reads = {c["path"]: c["reads"] for c in info["checkpoints"]}
    assert reads == {"best.pt": True, "last.pt": True, "broken.pt": False}
    broken = next(c for c in info["checkpoints"] if c["path"] == "broken.pt")
    assert "truncated" in broken["error"]
    human = mska("inspect", str(folder))
    assert human.returncode == 0 and max(len(line) for line in human.stdout.splitlines()) <= 80
    text = flat(human.stdout)
    assert "(fine-tuning run)" in text and "config: name trained" in text and "chosen on dev wer" in text
    assert "best.pt yes mska, model" in text and "broken.pt no" in text


def test_a_pretraining_folder_and_a_folder_without_a_run(mska, runs, tmp_path):
    info = json.loads(mska("inspect", str(runs / "dino_hands"), "--json").stdout)
    assert info["run"] == "pretraining" and info["config"]["pretrain"]["stream"] == "hand"
    export = next(c for c in info["checkpoints"] if c["path"] == "encoder_hand.pt")
    assert export["reads"] and export["kind"] == "stream-encoder"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    result = mska("inspect", str(tmp_path / "notes"))
    assert result.returncode == 2 and "is a directory but not a run folder" in result.stderr

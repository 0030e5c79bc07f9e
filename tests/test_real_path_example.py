"""``examples/real-path/run.py --lean``: rendered videos -> mska extract -> mska pretrain (face, hand)
-> mska train with the exports and crops read from disk -> mska evaluate -> mska predict VIDEO, every
step the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import mska_env

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "real-path" / "run.py"


@pytest.mark.slow
def test_the_real_path_example_runs_end_to_end_and_predicts_videos_as_evaluate_scores_them(tmp_path: Path):
    work = tmp_path / "work"
    result = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(work), "--lean", "--json"],
                            check=False, capture_output=True, text=True, env=mska_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert [step["command"] for step in summary["steps"]] == [
        "render", "extract", "extract", "extract", "pretrain", "pretrain", "train", "evaluate", "predict"]
    # fine-tuning read the extracted corpus and its crops, with the exports as backbones
    run_dir = Path(summary["best"]).parent
    config = (run_dir / "config.toml").read_text()
    assert f'path = "{work / "extracted"}"' in config and "crops = true" in config
    for stream, group in (("face", "face"), ("hand_left", "hand"), ("hand_right", "hand")):
        assert f'backbone = "file::{work / f"dino_{group}" / "backbone.pt"}"' in config, stream
    assert sorted(p.name for p in (work / "extracted" / "crops").iterdir()) == ["face", "hand_left", "hand_right"]
    # the raw test videos, extracted in memory, get what evaluate decoded from the files on disk
    evaluated = {row["name"]: row for row in map(json.loads, (work / "test-predictions.jsonl").read_text().splitlines())}
    assert summary["test"]["clips"] == len(evaluated) == len(summary["predictions"]) == 2
    for row in summary["predictions"]:
        assert row["frames_encoded"] == row["frames"] - row["frames"] % 4
        assert row["glosses"] == evaluated[row["name"]]["glosses"]
        assert row["translation"] == evaluated[row["name"]]["translation"]

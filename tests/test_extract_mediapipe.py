"""The MediaPipe Holistic example (``examples/mska-mediapipe``), a keypoint-estimator plugin installed
for real with pip. Its own tests need mediapipe 0.10.21 (numpy < 2) and run in an environment of their
own: see that example's README."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_extract import make_clip, run_extract

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mska-mediapipe"
MEDIAPIPE_PYTHON = os.environ.get("MSKA_MEDIAPIPE_PYTHON")


def pip_install(python: str, target: Path, *sources: Path) -> Path:
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), *map(str, sources)], check=True, capture_output=True, text=True)
    return target


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(sys.executable, tmp_path_factory.mktemp("mediapipe-site"), EXAMPLE)


def test_the_installed_example_lists_its_estimator_without_importing_mediapipe(example_site: Path, mska):
    result = mska("plugins", "--json", PYTHONPATH=str(example_site), MSKA_LOAD_PLUGINS="mediapipe")
    assert result.returncode == 0, result.stderr
    plugin = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}["mediapipe"]
    assert (plugin["distribution"], plugin["version"], plugin["status"]) == ("mska-mediapipe", "0.1.0", "loaded")
    assert plugin["provides"] == {"mska_keypoint_estimators": ["mediapipe-holistic"]}


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="mediapipe is installed here")
def test_an_estimator_that_cannot_be_built_stops_extraction_with_one_line(example_site: Path, tmp_path: Path):
    make_clip(tmp_path / "videos", None, "clip", frames=8)
    result = run_extract(str(tmp_path / "videos"), "--estimator", "mediapipe-holistic", "--out",
                         str(tmp_path / "out"), PYTHONPATH=str(example_site), MSKA_LOAD_PLUGINS="mediapipe")
    assert result.returncode == 2
    assert "mska-mediapipe" in result.stderr and "mediapipe" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out" / "keypoints").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not MEDIAPIPE_PYTHON,
    reason="set MSKA_MEDIAPIPE_PYTHON to a Python with mediapipe==0.10.21 (examples/mska-mediapipe/README.md); "
           "installing it here would download about 1 GB (jax, opencv) at test time",
)
def test_the_mediapipe_example_s_tests_pass_in_their_own_environment(tmp_path: Path):
    site = pip_install(MEDIAPIPE_PYTHON, tmp_path / "site", ROOT, EXAMPLE)  # mska-core as it is in this tree
    env = {"PYTHONPATH": str(site), "PATH": f"{Path(MEDIAPIPE_PYTHON).parent}:/usr/bin:/bin",
           "MSKA_LOAD_PLUGINS": "mediapipe", "HOME": str(tmp_path)}
    result = subprocess.run([MEDIAPIPE_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                             str(EXAMPLE / "tests")], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout and "skipped" not in result.stdout, result.stdout

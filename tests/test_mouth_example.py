"""The third-party example plugin, installed for real with pip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mska_core.plugins import load_plugins
from mska_core.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mska-mouth-stream"


@pytest.fixture(scope="module")
def mouth_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` the example into a private target folder (the test environment is untouched)."""
    target = tmp_path_factory.mktemp("mouth-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )
    return target


def test_pip_installed_example_is_listed_by_mska_plugins(mouth_site: Path, mska):
    result = mska("plugins", "--json", PYTHONPATH=str(mouth_site), MSKA_LOAD_PLUGINS="mouth")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    plugin = {p["name"]: p for p in listing["plugins"]}["mouth"]
    assert (plugin["distribution"], plugin["version"], plugin["status"]) == ("mska-mouth-stream", "0.1.0", "loaded")
    assert plugin["provides"] == {"mska_streams": ["mouth"]}
    assert "mouth" in [s["name"] for s in listing["streams"]]


def test_registry_returns_the_mouth_stream_once_installed(mouth_site: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(mouth_site))
    registry = Registry(load_plugins(env={"MSKA_LOAD_PLUGINS": "mouth"}))
    spec = registry.streams.get("mouth")
    assert spec.provider.distribution == "mska-mouth-stream"
    assert len(spec.joints_for("coco_wholebody")) == 20
    assert "mouth" in [s.name for s in registry.streams_for_layout("coco_wholebody")]


def test_example_is_invisible_when_external_plugins_are_off(mouth_site: Path, mska):
    result = mska("plugins", "--json", PYTHONPATH=str(mouth_site), MSKA_LOAD_PLUGINS="")
    assert "mouth" not in [s["name"] for s in json.loads(result.stdout)["streams"]]


def test_the_example_s_own_tests_pass_against_the_installed_package(mouth_site: Path):
    env = {"PYTHONPATH": str(mouth_site), "PATH": "/usr/bin:/bin", "MSKA_LOAD_PLUGINS": "mouth"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(EXAMPLE / "tests")],
        capture_output=True, text=True, env=env, cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""Shared fixtures. Tests never see plugins installed in the environment unless they ask for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load only mska-core's own plugins, and start every test with a fresh registry."""
    from mska_core.registry import set_registry

    monkeypatch.setenv("MSKA_LOAD_PLUGINS", "")
    for name in ("MSKA_STRICT_PLUGINS", "MSKA_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    set_registry(None)
    yield
    set_registry(None)


def mska_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess run of ``mska``: isolated plugins plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSKA_")}
    env["MSKA_LOAD_PLUGINS"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_mska(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``mska`` command (through ``python -m mska_core``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "mska_core", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else mska_env(),
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def mska():
    """``mska(*args, **env)`` runs the real command line in a subprocess."""

    def _run(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
        return run_mska(*args, env=mska_env(**env), cwd=cwd)

    return _run


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a shared machine they only wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

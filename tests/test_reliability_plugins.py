"""The plugin contract under failure (docs/reliability.md): real distributions with real entry points
(a dist-info on PYTHONPATH, as pip installs them), real ``mska`` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import mska_env, run_mska
from plugin_fixtures import install_distribution, stream_plugin_source
from test_reliability_runs import one_error_line, write_tiny

from mska_core import hookimpl


def plugin_env(site: Path, *names: str, **extra: str) -> dict[str, str]:
    return mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS=",".join(names), **extra)


def install(site: Path, name: str, source: str, version: str = "0.4") -> None:
    install_distribution(site, f"{name}-dist", version, {name: f"{name}_plugin"}, {f"{name}_plugin": source})


def listing(site: Path, *names: str, **extra: str) -> dict:
    proc = run_mska("plugins", "--json", env=plugin_env(site, *names, **extra))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # stdout holds the JSON and nothing else


# -- a plugin that ends the process on import never ends the command --------------------------------


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()", "GeneratorExit()"])
def test_a_plugin_raising_a_base_exception_on_import_is_failed_and_commands_go_on(tmp_path: Path, raised: str):
    install(tmp_path, "quitter", f"raise {raised}\n")
    data = listing(tmp_path, "quitter")
    assert data["failed"] == ["quitter"]
    (info,) = [p for p in data["plugins"] if p["name"] == "quitter"]
    assert raised.split("(")[0] in info["error"] and "quitter-dist 0.4" not in info["error"]
    proc = run_mska("config", "validate", str(write_tiny(tmp_path)), env=plugin_env(tmp_path, "quitter"))
    assert proc.returncode == 0, proc.stderr
    assert "quitter-dist 0.4" in proc.stderr  # reported once, on stderr


def test_a_plugin_raising_systemexit_from_a_hook_is_failed(tmp_path: Path):
    install(tmp_path, "hookquit", """
        from mska_core import hookimpl

        @hookimpl
        def mska_streams():
            raise SystemExit("bye")
    """)
    assert listing(tmp_path, "hookquit")["failed"] == ["hookquit"]


def test_what_a_plugin_prints_while_loading_and_listing_never_reaches_json_stdout(tmp_path: Path):
    install(tmp_path, "chatty", """
        import os, sys
        print("hello from import")
        os.write(1, b"raw bytes on fd 1\\n")
        from mska_core import StreamSpec, hookimpl

        @hookimpl
        def mska_streams():
            print("hello from a hook")
            return [StreamSpec(name="chat", joints={"coco_wholebody": (23, 24)})]
    """)
    proc = run_mska("plugins", "--json", env=plugin_env(tmp_path, "chatty"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "chat" in {s["name"] for s in data["streams"]}
    assert "hello from import" in proc.stderr and "raw bytes on fd 1" in proc.stderr and "hello from a hook" in proc.stderr


def test_an_undecorated_hook_function_is_reported_not_ignored(tmp_path: Path):
    install(tmp_path, "bare", """
        from mska_core import StreamSpec

        def mska_streams():
            return [StreamSpec(name="bare", joints={"coco_wholebody": (23,)})]
    """)
    data = listing(tmp_path, "bare")
    (info,) = [p for p in data["plugins"] if p["name"] == "bare"]
    assert info["status"] == "failed" and "mska_streams" in info["error"] and "@hookimpl" in info["error"]


# -- clashes are found at load time and left to the user, never to load order ------------------------


def test_a_stream_clashing_with_face_is_reported_for_check_json_and_strict(tmp_path: Path):
    install(tmp_path, "shadow", stream_plugin_source("face", "extra_stream"))
    data = listing(tmp_path, "shadow")
    assert data["failed"] == []
    (clash,) = data["clashes"]
    assert clash["name"] == "face" and clash["chosen"] is None
    assert {p["distribution"] for p in clash["providers"]} == {"mska-core", "shadow-dist"}
    assert "face" not in {s["name"] for s in data["streams"]}  # neither wins
    assert "extra_stream" in {s["name"] for s in data["streams"]}  # the plugin's other names still serve
    check = run_mska("plugins", "--check", env=plugin_env(tmp_path, "shadow"))
    assert check.returncode == 1
    strict = one_error_line(run_mska("plugins", env=plugin_env(tmp_path, "shadow", MSKA_STRICT_PLUGINS="1")))
    assert "shadow-dist 0.4" in strict and "'face'" in strict and "mska-core" in strict
    # a config that needs the name says who supplies it and how to choose
    line = one_error_line(run_mska("config", "validate", str(write_tiny(tmp_path)), env=plugin_env(tmp_path, "shadow")))
    assert "stream 'face' is supplied by plugin 'face'" in line and "shadow-dist 0.4" in line
    assert "[plugins.providers] face" in line


def test_plugins_disable_or_providers_in_a_config_resolve_a_clash_and_required_is_enforced(tmp_path: Path):
    install(tmp_path, "shadow", stream_plugin_source("face"))
    config = write_tiny(tmp_path)
    base = config.read_text()
    config.write_text(base + '\n[plugins]\ndisable = ["shadow"]\n')
    strict = plugin_env(tmp_path, "shadow", MSKA_STRICT_PLUGINS="1")
    proc = run_mska("config", "validate", str(config), env=strict)
    assert proc.returncode == 0, proc.stderr
    config.write_text(base + '\n[plugins.providers]\nface = "face"\n')
    proc = run_mska("config", "validate", str(config), env=strict)
    assert proc.returncode == 0, proc.stderr
    config.write_text(base + '\n[plugins]\nrequired = ["mouth"]\n')
    line = one_error_line(run_mska("config", "validate", str(config), env=plugin_env(tmp_path)))
    assert "required plugin(s) not loaded: mouth" in line


# -- every later call into plugin code names the plugin ---------------------------------------------


BROKEN_PARTS = """
    from mska_core import BackboneLoader, CheckpointFormat, LossSpec, hookimpl

    def build_loss(**options):
        if options.get("where") == "build":
            raise SystemExit("a loss factory that exits")
        import torch

        class Loss(torch.nn.Module):
            def forward(self, output, batch):
                raise ValueError("a loss forward that fails")

        return Loss()

    def load_backbone(payload, options):
        raise RuntimeError("a backbone loader that fails")

    def sniff(probe):
        raise KeyError("a sniff that fails")

    @hookimpl
    def mska_losses():
        return [LossSpec(name="brittle", build=build_loss)]

    @hookimpl
    def mska_backbone_loaders():
        return [BackboneLoader(scheme="brittle", load=load_backbone)]

    @hookimpl
    def mska_checkpoint_formats():
        return [CheckpointFormat(name="brittle", sniff=sniff, read=lambda probe: None)]
"""


@pytest.mark.slow
@pytest.mark.parametrize("case", [
    ("loss build", ["--set", "losses.brittle.where='build'"], "LossSpec 'brittle': build"),
    ("loss forward", ["--set", "losses.brittle.where='forward'"], "LossSpec 'brittle': build(...).forward"),
    ("backbone loader", ["--set", "model.streams.face.backbone='brittle::x'", "--set", "data.crops=true",
                         "--set", "losses.brittle.weight=0"], "BackboneLoader 'brittle': load"),
], ids=lambda case: case[0].replace(" ", "_"))
def test_a_failing_plugin_factory_loader_or_forward_is_one_line_naming_the_plugin(tmp_path: Path, case):
    _, args, where = case
    install(tmp_path, "brittle", BROKEN_PARTS, version="1.2")
    config = write_tiny(tmp_path)
    line = one_error_line(run_mska("train", "--config", str(config), "--set", "train.max_steps=1", *args,
                                   env=plugin_env(tmp_path, "brittle")))
    assert where in line and "plugin 'brittle' (brittle-dist 1.2)" in line and "MSKA_DISABLE_PLUGINS=brittle" in line


def test_a_format_whose_sniff_raises_is_failed_and_other_formats_still_read(tmp_path: Path):
    import torch

    install(tmp_path, "brittle", BROKEN_PARTS, version="1.2")
    path = tmp_path / "weights.pt"
    torch.save({"proj.weight": torch.ones(2, 2)}, path)
    proc = run_mska("inspect", str(path), "--json", env=plugin_env(tmp_path, "brittle"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)
    assert "brittle-dist 1.2" in proc.stderr and "a sniff that fails" in proc.stderr
    strict = one_error_line(run_mska("inspect", str(path), env=plugin_env(tmp_path, "brittle",
                                                                            MSKA_STRICT_PLUGINS="1")))
    assert "brittle-dist 1.2" in strict


# -- where plugin output is redirected ---------------------------------------------------------------


class _Squares:
    """A third party's loss, as an extra plugin (so the registry guards it)."""

    @hookimpl
    def mska_losses(self):
        import torch

        from mska_core import LossSpec

        class Squares(torch.nn.Module):
            def forward(self, output, batch):
                return (output * output).mean()

        return [LossSpec("squares", Squares, "mean square")]


def test_a_plugin_loss_forward_runs_without_re_pointing_file_descriptor_1(monkeypatch):
    import os

    import torch

    from mska_core.errors import PluginError
    from mska_core.registry import make_registry

    registry = make_registry(_Squares(), warn=False)
    calls = []
    real_dup2 = os.dup2
    monkeypatch.setattr(os, "dup2", lambda a, b, *rest: (calls.append((a, b)), real_dup2(a, b, *rest))[1])
    loss = registry.losses.get("squares").build()
    assert calls, "building a plugin's loss redirects what it prints"
    calls.clear()
    for _ in range(5):
        loss(torch.ones(3), None)
    assert calls == []  # the step's forward: no system calls
    with pytest.raises(PluginError, match="squares"):  # still attributed when it fails
        loss("not a tensor", None)


def test_overlapping_redirections_in_two_threads_restore_stdout_and_descriptor_1():
    import os
    import sys
    import threading

    from mska_core.plugins import plugin_output_to_stderr

    def target() -> str:
        return os.readlink("/proc/self/fd/1") if os.path.exists("/proc/self/fd/1") else str(os.fstat(1).st_ino)

    before, stdout = target(), sys.stdout
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with plugin_output_to_stderr():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with plugin_output_to_stderr():
            second_in.set()
            first_out.wait(5)  # the first ends while the second is still inside

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert target() == before and sys.stdout is stdout


# -- recovery hints that lead somewhere ------------------------------------------------------------


def test_the_hint_after_a_loss_plugin_fails_leads_to_a_run_that_works(tmp_path: Path):
    """The failure says to disable the plugin and to remove its [losses.X] table; following the first
    half alone names the disabled plugin and the table; following both trains."""
    install(tmp_path, "boomloss", """
        from mska_core import LossSpec, hookimpl

        def build():
            import torch

            class Boom(torch.nn.Module):
                def forward(self, output, batch):
                    raise RuntimeError("boom")

            return Boom()

        @hookimpl
        def mska_losses():
            return [LossSpec("boom", build, "always fails")]
    """)
    config = write_tiny(tmp_path)
    args = ("train", "--config", str(config), "--set", "train.max_steps=1", "--set", "losses.boom.weight=1")
    line = one_error_line(run_mska(*args, env=plugin_env(tmp_path, "boomloss")))
    assert "boom" in line and "MSKA_DISABLE_PLUGINS=boomloss" in line and "[losses.boom]" in line
    disabled = plugin_env(tmp_path, "boomloss", MSKA_DISABLE_PLUGINS="boomloss")
    line = one_error_line(run_mska(*args, env=disabled))
    assert "unknown loss 'boom'" in line and "boomloss (disabled)" in line and "[losses.boom]" in line
    proc = run_mska(*args, "--set", "losses.boom.weight=0", "--set", "run.name='again'", env=disabled)
    assert proc.returncode == 0, proc.stderr

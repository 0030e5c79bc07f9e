"""The plugin contract under failure (docs/reliability.md): real distributions with real entry points
(a dist-info on PYTHONPATH, as pip installs them), real ``mska`` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import mska_env, run_mska
from plugin_fixtures import install_distribution, stream_plugin_source
from test_reliability_runs import one_error_line, write_tiny


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

"""Stream identity (docs/reliability.md): a checkpoint records who supplied each stream and which joints
it read; loading it under another provider or other joints is one line, never a silent swap.

Real distributions with entry points (a dist-info on PYTHONPATH, as pip installs them) and real
``mska`` subprocesses; the registry-level tests use real plugin objects through ``make_registry``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import mska_env, run_mska
from plugin_fixtures import install_distribution
from test_reliability_runs import one_error_line
from test_train import TINY

from mska_core import StreamSpec, hookimpl
from mska_core.config.identity import check_stream_identity, joint_fingerprint, stream_identity
from mska_core.errors import CheckpointError, ConfigError
from mska_core.registry import make_registry

LIPS = tuple(range(71, 91))  # the 20 mouth points of COCO-WholeBody


def lips_source(joints: tuple[int, ...]) -> str:
    return f"""
        from mska_core import StreamSpec, hookimpl

        @hookimpl
        def mska_streams():
            return [StreamSpec(name="lips", joints={{"coco_wholebody": {joints!r}}})]
    """


def lips_config(folder: Path) -> Path:
    text = TINY.format(out=folder / "runs")
    start, end = text.index("[model.streams.face]"), text.index("[losses.ctc]")
    path = folder / "lips.toml"
    path.write_text(text[:start] + '[model.streams.lips]\n\n[model.heads.fuse]\nstreams = ["lips"]\n\n' + text[end:])
    return path


@pytest.fixture(scope="module")
def lips_run(tmp_path_factory) -> tuple[Path, Path]:
    """(site, last.pt) of a real run trained with plugin-a's ``lips``; plugin-b (another order), plugin-c
    (another count) and plugin-d (plugin-a's joints under another name) are installed beside it."""
    folder = tmp_path_factory.mktemp("identity")
    site = folder / "site"
    for name, joints in (("plugin_a", LIPS), ("plugin_b", tuple(reversed(LIPS))), ("plugin_c", LIPS[:12]),
                         ("plugin_d", LIPS)):
        install_distribution(site, name.replace("_", "-") + "-dist", "1.0", {name.replace("_", "-"): name},
                             {name: lips_source(joints)})
    config = lips_config(folder)
    proc = run_mska("train", "--config", str(config), "--set", "train.max_steps=1",
                    env=mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="plugin-a"))
    assert proc.returncode == 0, proc.stderr
    return site, folder / "runs" / "tiny" / "last.pt"


def evaluate(site: Path, checkpoint: Path, plugins: str, *extra: str):
    return run_mska("evaluate", "--checkpoint", str(checkpoint), "--split", "dev", *extra,
                    env=mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS=plugins))


@pytest.mark.slow
def test_a_stream_from_another_plugin_with_the_same_joint_count_in_another_order_is_refused(lips_run):
    site, last = lips_run
    assert evaluate(site, last, "plugin-a").returncode == 0
    line = one_error_line(evaluate(site, last, "plugin-b"))
    assert "stream 'lips' was trained with plugin 'plugin-a' (plugin-a-dist 1.0)" in line
    assert "plugin 'plugin-b' (plugin-b-dist 1.0) supplies it now" in line
    assert "20 joints in layout 'coco_wholebody', as before, but other ones or in another order" in line
    assert "--allow-stream-change" in line
    assert evaluate(site, last, "plugin-b", "--allow-stream-change").returncode == 0


@pytest.mark.slow
def test_a_stream_with_another_joint_count_is_one_line_not_a_size_mismatch(lips_run):
    site, last = lips_run
    line = one_error_line(evaluate(site, last, "plugin-c"))
    assert "'plugin-c'" in line and "12 joints in layout 'coco_wholebody' instead of 20" in line


@pytest.mark.slow
def test_the_same_joints_from_another_plugin_are_refused_naming_both(lips_run):
    site, last = lips_run
    line = one_error_line(evaluate(site, last, "plugin-d"))
    assert "'plugin-a'" in line and "'plugin-d'" in line and "with the same joints" in line


@pytest.mark.slow
def test_two_plugins_supplying_the_stream_neither_wins_and_the_user_chooses(lips_run):
    site, last = lips_run
    line = one_error_line(evaluate(site, last, "plugin-a,plugin-b"))
    assert "'plugin-a'" in line and "'plugin-b'" in line and "--set plugins.providers.lips=plugin-a" in line
    chosen = evaluate(site, last, "plugin-a,plugin-b", "--set", "plugins.providers.lips=plugin-a")
    assert chosen.returncode == 0, chosen.stderr
    line = one_error_line(evaluate(site, last, "plugin-a,plugin-b", "--set", "plugins.providers.lips=plugin-b"))
    assert "another order" in line


@pytest.mark.slow
def test_resume_under_another_stream_provider_is_refused(lips_run):
    site, last = lips_run
    config = last.parent.parent.parent / "lips.toml"
    proc = run_mska("train", "--config", str(config), "--resume", "--set", "train.max_steps=2",
                    env=mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="plugin-b"))
    line = one_error_line(proc)
    assert "stream 'lips' was trained with plugin 'plugin-a'" in line


# -- the record and the check, through real registries -----------------------------------------------


class LipsPlugin:
    def __init__(self, name: str, joints: tuple[int, ...]) -> None:
        self.__name__, self.joints = name, joints

    @hookimpl
    def mska_streams(self):
        return [StreamSpec(name="lips", joints={"coco_wholebody": self.joints})]


def test_the_recorded_identity_holds_the_provider_and_a_fingerprint_of_the_joints_in_order():
    spec = make_registry(LipsPlugin("plugin_a", LIPS)).streams.get("lips")
    identity = stream_identity(spec)
    assert identity["plugin"] == "plugin_a" and identity["distribution"] == "<extra>"
    assert identity["joints"]["coco_wholebody"] == joint_fingerprint(LIPS)
    assert joint_fingerprint(LIPS)["count"] == 20
    assert joint_fingerprint(LIPS) != joint_fingerprint(tuple(reversed(LIPS)))


def test_the_same_plugin_in_another_version_with_the_same_joints_loads():
    registry = make_registry(LipsPlugin("plugin_a", LIPS))
    stored = {"streams": {"lips": {**stream_identity(registry.streams.get("lips")), "version": "0.1"}}}
    check_stream_identity(["lips"], "coco_wholebody", stored, "best.pt", registry)
    moved = make_registry(LipsPlugin("plugin_b", LIPS))
    with pytest.raises(ConfigError, match="stream 'lips' was trained with plugin 'plugin_a'"):
        check_stream_identity(["lips"], "coco_wholebody", stored, "best.pt", moved)
    check_stream_identity(["lips"], "coco_wholebody", stored, "best.pt", moved, allow_change=True)


def test_a_checkpoint_that_recorded_no_identity_loads_as_before():
    registry = make_registry(LipsPlugin("plugin_b", LIPS))
    check_stream_identity(["lips"], "coco_wholebody", {"streams": {"lips": {}}}, "old.pt", registry)
    check_stream_identity(["lips"], "coco_wholebody", None, "old.pt", registry)


def test_load_mska_encoder_state_refuses_a_stream_whose_recorded_joints_or_provider_differ(tmp_path: Path):
    from mska_core import load_mska_encoder_state
    from mska_core.checkpoints import make_payload, save_checkpoint
    from mska_core.config import config_from_dict
    from mska_core.config.checks import providers_of
    from mska_core.encoder import MSKAEncoder

    model = {"channels": [4], "inter_channels": [2], "temporal_kernels": [3], "strides": [1], "num_heads": 1,
             "head_hidden": 8, "head_ff": 8, "vocab_size": 5, "streams": {"lips": {}}}
    config = config_from_dict({"model": model})
    trained_with = make_registry(LipsPlugin("plugin_a", LIPS))
    encoder = MSKAEncoder.from_config(config.model, registry=trained_with)
    payload = make_payload("model", {f"branches.lips.{k}": v for k, v in encoder.branches["lips"].state_dict().items()},
                           registry=trained_with, providers=providers_of(config, trained_with))
    path = save_checkpoint(payload, tmp_path / "best.pt", registry=trained_with)
    load_mska_encoder_state(MSKAEncoder.from_config(config.model, registry=trained_with), streams={"lips": path},
                            registry=trained_with)
    swapped = make_registry(LipsPlugin("plugin_b", tuple(reversed(LIPS))))
    target = MSKAEncoder.from_config(config.model, registry=swapped)
    with pytest.raises(CheckpointError, match=r"stream 'lips' was trained with plugin 'plugin_a'.*another order"):
        load_mska_encoder_state(target, streams={"lips": path}, registry=swapped)
    load_mska_encoder_state(target, streams={"lips": path}, registry=swapped, allow_stream_change=True)


def test_a_config_naming_streams_only_in_its_heads_gains_no_branch_from_a_stream_plugin():
    from mska_core.config import config_from_dict
    from mska_core.config.checks import check_against_registry, resolve_model
    from mska_core.encoder import MSKAEncoder

    model = {"channels": [4], "inter_channels": [2], "temporal_kernels": [3], "strides": [1], "num_heads": 1,
             "head_hidden": 8, "head_ff": 8, "vocab_size": 5, "heads": {"fuse": {"streams": ["hand_left", "face"]}}}
    config = config_from_dict({"model": model})
    registry = make_registry(LipsPlugin("plugin_a", LIPS))
    check_against_registry(config, "heads.toml", registry)
    assert MSKAEncoder.from_config(config.model, registry=registry).stream_names == ["hand_left", "face"]
    assert list(resolve_model(config, registry).model.streams) == ["hand_left", "face"]
    misspelt = config_from_dict({"model": {**model, "heads": {"fuse": {"streams": ["hand_lft"]}}}})
    with pytest.raises(ConfigError, match=r"heads.toml: model.heads.fuse.streams: unknown stream 'hand_lft' "
                                          r"\(did you mean 'hand_left'\?\)"):
        check_against_registry(misspelt, "heads.toml", registry)


@pytest.mark.slow
def test_predict_refuses_a_swapped_stream_and_takes_only_plugin_settings(lips_run, tmp_path: Path):
    import numpy as np

    site, last = lips_run
    clip = tmp_path / "clip.npy"
    points = np.zeros((24, 133, 3), dtype=np.float32)
    points[..., 2] = 1.0
    np.save(clip, points)

    def predict(plugins: str, *extra: str):
        return run_mska("predict", "--checkpoint", str(last), str(clip), "--json", *extra,
                        env=mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS=plugins))

    line = one_error_line(predict("plugin-b"))
    assert "stream 'lips' was trained with plugin 'plugin-a'" in line
    chosen = predict("plugin-a,plugin-b", "--set", "plugins.providers.lips=plugin-a")
    assert chosen.returncode == 0, chosen.stderr
    line = one_error_line(predict("plugin-a", "--set", "train.epochs=3"))
    assert "mska predict takes --set plugins.* keys only" in line


def test_a_pretraining_export_records_its_streams_and_takes_the_run_format(tmp_path: Path):
    import torch

    from mska_core.checkpoints import read_payload
    from mska_core.config import PretrainConfig
    from mska_core.training.dino import export

    registry = make_registry()
    cfg = PretrainConfig(stream="hand", output_dir=str(tmp_path), export_checkpoint=True)
    (path,) = export(torch.nn.Linear(2, 2), cfg, registry=registry, file_format="safetensors", stream="hand")
    assert path.name == "encoder_hand.safetensors"
    payload = read_payload(path, kinds=("stream-encoder",), registry=registry)
    recorded = payload["providers"]["streams"]
    assert set(recorded) == {"hand_left", "hand_right"}  # the streams of weight group 'hand'
    assert recorded["hand_left"]["distribution"] == "mska-core"
    assert recorded["hand_left"]["joints"]["coco_wholebody"]["count"] == 27

"""The plugin manager and registry: loading, isolation of failures, environment switches, clashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_fixtures import install_distribution, stream_plugin_source

from mska_core import StreamSpec, hookimpl
from mska_core.errors import DuplicateNameError, PluginError, UnknownNameError
from mska_core.plugins import load_plugins
from mska_core.registry import Registry, make_registry

PAPER_STREAMS = {"face": 26, "hand_left": 27, "hand_right": 27, "body": 79}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path where tests install distributions."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _registry(**env: str) -> Registry:
    return Registry(load_plugins(env=env))


def test_mska_streams_first_party_plugins_supply_the_paper_streams():
    streams = _registry(MSKA_LOAD_PLUGINS="").streams
    for name, count in PAPER_STREAMS.items():
        spec = streams.get(name)
        assert len(spec.joints_for("coco_wholebody")) == count
        assert spec.provider.distribution == "mska-core"


def test_hand_streams_share_the_hand_weight_group():
    streams = _registry(MSKA_LOAD_PLUGINS="").streams
    assert streams.get("hand_left").weight_group == streams.get("hand_right").weight_group == "hand"
    assert streams.get("face").weight_group == "face"


def test_body_stream_is_the_union_of_hands_and_face_in_every_layout():
    streams = _registry(MSKA_LOAD_PLUGINS="").streams
    for layout in ("coco_wholebody", "mediapipe_holistic"):
        union = set()
        for name in ("hand_left", "hand_right", "face"):
            union |= set(streams.get(name).joints_for(layout))
        assert set(streams.get("body").joints_for(layout)) == union
        assert len(streams.get("body").joints_for(layout)) == 79


def test_mska_keypoint_layouts_core_supplies_both_layouts_and_streams_fit_them():
    registry = _registry(MSKA_LOAD_PLUGINS="")
    assert registry.layouts.get("coco_wholebody").num_joints == 133
    assert registry.layouts.get("mediapipe_holistic").num_joints == 543
    for spec in registry.streams:
        for layout, indices in spec.joints.items():
            assert max(indices) < registry.layouts.get(layout).num_joints


def test_hand_streams_read_their_own_hand_in_each_layout():
    registry = _registry(MSKA_LOAD_PLUGINS="")
    for layout_name in ("coco_wholebody", "mediapipe_holistic"):
        parts = registry.layouts.get(layout_name).parts
        assert set(parts["left_hand"]) <= set(registry.streams.get("hand_left").joints_for(layout_name))
        assert set(parts["right_hand"]) <= set(registry.streams.get("hand_right").joints_for(layout_name))


def test_external_plugin_is_loaded_from_its_entry_point(site: Path):
    install_distribution(site, "lips-plugin", "1.2.3", {"lips": "lips_plugin"},
                         {"lips_plugin": stream_plugin_source("lips")})
    registry = _registry()
    spec = registry.streams.get("lips")
    assert (spec.provider.plugin, spec.provider.distribution, spec.provider.version) == (
        "lips", "lips-plugin", "1.2.3")


def test_plugin_that_raises_on_import_is_skipped_and_reported_once(site: Path, capsys):
    install_distribution(site, "broken-dist", "0.3", {"broken": "broken_plugin"},
                         {"broken_plugin": "raise RuntimeError('boom at import')\n"})
    registry = _registry()
    assert "face" in registry.streams  # everything else still works
    info = registry.host.infos["broken"]
    assert info.status == "failed" and "boom at import" in info.error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "broken" in err[0] and "broken-dist 0.3" in err[0] and "MSKA_DISABLE_PLUGINS=broken" in err[0]


def test_plugin_with_an_unknown_hook_is_skipped(site: Path):
    source = """
        from mska_core import hookimpl

        @hookimpl
        def mska_streamz():
            return []
    """
    install_distribution(site, "typo-dist", "1.0", {"typo": "typo_plugin"}, {"typo_plugin": source})
    info = _registry().host.infos["typo"]
    assert info.status == "failed" and "mska_streamz" in info.error


def test_plugin_with_a_wrong_hook_signature_is_skipped(site: Path):
    source = """
        from mska_core import hookimpl

        @hookimpl
        def mska_streams(layout):
            return []
    """
    install_distribution(site, "sig-dist", "1.0", {"sig": "sig_plugin"}, {"sig_plugin": source})
    registry = _registry()
    info = registry.host.infos["sig"]
    assert info.status == "failed" and "layout" in info.error
    assert "face" in registry.streams


def test_hook_that_raises_when_called_marks_its_plugin_failed_and_drops_all_its_records(site: Path):
    source = """
        from mska_core import StreamSpec, hookimpl

        @hookimpl
        def mska_streams():
            return [StreamSpec(name="half", joints={"coco_wholebody": (0,)})]

        @hookimpl
        def mska_losses():
            raise ValueError("no losses today")
    """
    install_distribution(site, "half-dist", "1.0", {"half": "half_plugin"}, {"half_plugin": source})
    registry = _registry()
    assert "half" not in registry.streams
    assert registry.host.infos["half"].status == "failed"
    assert "no losses today" in registry.host.infos["half"].error


def test_hook_that_returns_the_wrong_record_type_marks_its_plugin_failed():
    class WrongType:
        __name__ = "wrong"

        @hookimpl
        def mska_keypoint_layouts(self):
            return [{"name": "dict-not-record"}]

    registry = make_registry(WrongType(), warn=False)
    assert "coco_wholebody" in registry.layouts
    assert registry.host.infos["wrong"].status == "failed"
    assert "KeypointLayout" in registry.host.infos["wrong"].error


def test_strict_mode_makes_a_plugin_failure_fatal(site: Path):
    install_distribution(site, "broken-dist", "0.3", {"broken": "broken_plugin"},
                         {"broken_plugin": "raise ImportError('missing dependency')\n"})
    with pytest.raises(PluginError, match="broken"):
        load_plugins(env={"MSKA_STRICT_PLUGINS": "1"})


def test_disable_blocks_first_party_and_external_plugins_by_name(site: Path):
    install_distribution(site, "lips-plugin", "1.0", {"lips": "lips_plugin"},
                         {"lips_plugin": stream_plugin_source("lips")})
    registry = _registry(MSKA_DISABLE_PLUGINS="body, lips")
    assert "body" not in registry.streams and "lips" not in registry.streams
    assert registry.host.infos["body"].status == "disabled"
    assert "face" in registry.streams


def test_load_plugins_unset_loads_all_empty_loads_no_external_list_loads_only_those(site: Path):
    install_distribution(site, "a-dist", "1.0", {"plug_a": "plug_a"}, {"plug_a": stream_plugin_source("sa")})
    install_distribution(site, "b-dist", "1.0", {"plug_b": "plug_b"}, {"plug_b": stream_plugin_source("sb")})
    assert {"sa", "sb"} <= set(_registry().streams.names())
    none = _registry(MSKA_LOAD_PLUGINS="")
    assert not {"sa", "sb"} & set(none.streams.names()) and "face" in none.streams
    only_a = _registry(MSKA_LOAD_PLUGINS="plug_a")
    assert "sa" in only_a.streams and "sb" not in only_a.streams
    assert only_a.host.infos["plug_b"].status == "not loaded"


def test_two_plugins_supplying_one_stream_name_leave_it_to_the_user_naming_both(site: Path):
    install_distribution(site, "first-dist", "1.0", {"first": "first_plugin"},
                         {"first_plugin": stream_plugin_source("lips")})
    install_distribution(site, "second-dist", "2.0", {"second": "second_plugin"},
                         {"second_plugin": stream_plugin_source("lips")})
    registry = _registry()
    assert registry.host.infos["first"].status == registry.host.infos["second"].status == "loaded"
    with pytest.raises(DuplicateNameError) as caught:  # entry-point order decides nothing
        registry.streams.get("lips")
    assert "first-dist 1.0" in str(caught.value) and "second-dist 2.0" in str(caught.value)
    assert "[plugins.providers] lips" in str(caught.value)
    assert [c["name"] for c in registry.clashes()] == ["lips"]
    assert registry.with_choices({"lips": "second"}).streams.get("lips").provider.plugin == "second"
    assert registry.with_choices({"lips": "first"}).streams.get("lips").provider.plugin == "first"
    with pytest.raises(PluginError, match="second-dist 2.0"):
        Registry(load_plugins(env={"MSKA_STRICT_PLUGINS": "1"})).collect_all()


def test_a_provider_choice_in_the_config_resolves_a_clash_and_a_wrong_one_is_refused(site: Path):
    from mska_core.config import load_config
    from mska_core.errors import ConfigError
    from mska_core.registry import registry_for

    install_distribution(site, "first-dist", "1.0", {"first": "first_plugin"},
                         {"first_plugin": stream_plugin_source("lips")})
    install_distribution(site, "second-dist", "2.0", {"second": "second_plugin"},
                         {"second_plugin": stream_plugin_source("lips")})
    chosen = registry_for(load_config(None, ["plugins.providers.lips=second"]).plugins, _registry())
    assert chosen.streams.get("lips").provider.distribution == "second-dist"
    strict = Registry(load_plugins(env={"MSKA_STRICT_PLUGINS": "1"}))
    assert registry_for(load_config(None, ["plugins.providers.lips=first"]).plugins, strict).streams.get(
        "lips").provider.plugin == "first"
    with pytest.raises(ConfigError, match=r"plugins.providers.lips: plugin 'third' does not supply 'lips' "
                                          r"\(supplied by: first, second\)"):
        registry_for(load_config(None, ["plugins.providers.lips=third"]).plugins, _registry())


def test_a_stream_that_clashes_with_a_first_party_one_names_mska_core():
    class Clash:
        __name__ = "clash"

        @hookimpl
        def mska_streams(self):
            return [StreamSpec(name="face", joints={"coco_wholebody": (23,)})]

    registry = make_registry(Clash(), warn=False)
    assert registry.host.infos["clash"].status == "loaded"
    with pytest.raises(DuplicateNameError, match=r"plugin 'face' \(mska-core .*\) and plugin 'clash'"):
        registry.streams.get("face")
    with pytest.raises(DuplicateNameError):  # a config that names no streams is not built without it
        registry.streams_for_layout("coco_wholebody")
    assert registry.with_choices({"face": "face"}).streams.get("face").provider.distribution == "mska-core"


def test_a_plugin_that_supplies_one_name_twice_itself_is_failed():
    class Twice:
        __name__ = "twice"

        @hookimpl
        def mska_streams(self):
            return [StreamSpec(name="lips", joints={"coco_wholebody": (23,)}),
                    StreamSpec(name="lips", joints={"coco_wholebody": (24,)})]

    registry = make_registry(Twice(), warn=False)
    registry.collect_all()
    assert registry.host.infos["twice"].status == "failed"
    assert "supplied twice by this plugin" in registry.host.infos["twice"].error
    assert "lips" not in registry.streams


def test_unknown_name_lists_the_registered_ones_and_the_nearest():
    streams = _registry(MSKA_LOAD_PLUGINS="").streams
    with pytest.raises(UnknownNameError) as caught:
        streams.get("hand_lft")
    message = str(caught.value)
    assert "did you mean 'hand_left'" in message
    for name in PAPER_STREAMS:
        assert name in message


def test_required_plugin_that_is_missing_is_an_error():
    with pytest.raises(PluginError, match="mouth"):
        load_plugins(env={"MSKA_LOAD_PLUGINS": ""}, require=["mouth"])


def test_mska_plugins_json_lists_the_first_party_streams(mska):
    result = mska("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    streams = {s["name"]: s for s in listing["streams"]}
    assert set(PAPER_STREAMS) <= set(streams)
    assert {streams[name]["distribution"] for name in PAPER_STREAMS} == {"mska-core"}
    assert listing["failed"] == []


def test_mska_plugins_shows_a_failed_row_and_check_exits_1(mska, site: Path):
    install_distribution(site, "broken-dist", "0.3", {"broken": "broken_plugin"},
                         {"broken_plugin": "raise RuntimeError('boom at import')\n"})
    table = mska("plugins", PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="broken")
    assert table.returncode == 0
    assert "failed" in table.stdout and "broken-dist" in table.stdout  # the table, on stdout
    assert max(map(len, table.stdout.splitlines())) <= 80
    warnings = [line for line in table.stderr.splitlines() if line.startswith("mska: warning")]
    assert len(warnings) == 1
    check = mska("plugins", "--check", PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="broken")
    assert check.returncode == 1
    as_json = json.loads(mska("plugins", "--json", PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="broken").stdout)
    assert as_json["failed"] == ["broken"]


def test_strict_mode_on_the_command_line_exits_nonzero_naming_the_plugin(mska, site: Path):
    install_distribution(site, "broken-dist", "0.3", {"broken": "broken_plugin"},
                         {"broken_plugin": "raise RuntimeError('boom at import')\n"})
    result = mska("plugins", PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="broken", MSKA_STRICT_PLUGINS="1")
    assert result.returncode == 2
    assert "broken" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_listing_plugins_imports_neither_torch_nor_timm(tmp_path: Path):
    import subprocess
    import sys

    code = (
        "import sys; from mska_core.cli import main; main(['plugins', '--json']); "
        "sys.stderr.write(repr(sorted(m for m in ('torch', 'timm') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"MSKA_LOAD_PLUGINS": "", "PATH": "/usr/bin:/bin"})
    assert out.stderr.strip().endswith("[]")

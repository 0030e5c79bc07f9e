"""TOML configuration: schema, precise errors, overrides, and the config commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mska_core.config import (
    Config,
    config_from_dict,
    dumps_toml,
    load_config,
    parse_value,
    unstructure,
)
from mska_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "configs").glob("*.toml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file():
    config = load_config(None)
    assert isinstance(config, Config)
    assert config.model.attention == "paper"
    assert set(config.losses) == {"ctc", "distillation"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_validates(path: Path, mska):
    result = mska("config", "validate", str(path))
    assert result.returncode == 0, result.stderr


def test_misspelt_key_names_the_file_the_dotted_key_and_the_nearest_valid_key(tmp_path: Path):
    path = _write(tmp_path, "[model]\natention = 'paper'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: unknown key 'model.atention'; did you mean 'model.attention'?"


def test_misspelt_key_in_a_named_table_is_found(tmp_path: Path):
    path = _write(tmp_path, "[model.streams.face]\nfreez = true\n")
    with pytest.raises(ConfigError, match=r"'model.streams.face.freez'; did you mean 'model.streams.face.freeze'"):
        load_config(path)


def test_wrong_type_names_the_expected_type(tmp_path: Path):
    path = _write(tmp_path, "[train]\nepochs = 'ten'\n")
    with pytest.raises(ConfigError, match=r"train.epochs: expected an integer, got string 'ten'"):
        load_config(path)


def test_a_choice_outside_the_allowed_values_lists_them(tmp_path: Path):
    path = _write(tmp_path, "[model]\nattention = 'flash'\n")
    with pytest.raises(ConfigError, match=r"model.attention: expected one of 'paper', 'softmax'"):
        load_config(path)


def test_a_value_out_of_range_names_the_dotted_key(tmp_path: Path):
    path = _write(tmp_path, "[train]\nepochs = 0\n")
    with pytest.raises(ConfigError, match=r"train.epochs: must be positive, got 0"):
        load_config(path)


def test_missing_file_and_bad_toml_are_one_line_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    path = _write(tmp_path, "[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_set_values_are_read_as_toml_or_else_as_strings():
    assert parse_value("3") == 3
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("file::a/b.pt:dinov2_vits14") == "file::a/b.pt:dinov2_vits14"
    config = load_config(None, ["train.epochs=3", "model.streams.face.backbone=file::x.pt:vit_tiny_test"])
    assert config.train.epochs == 3
    assert config.model.streams["face"].backbone == "file::x.pt:vit_tiny_test"


def test_set_of_an_unknown_key_is_an_error_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'train.epochs'"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="expected dotted.key=VALUE"):
        load_config(None, ["train.epochs"])


def test_loss_tables_keep_their_options_beside_the_weight(tmp_path: Path):
    path = _write(tmp_path, "[losses.translation]\nweight = 0.5\nlabel_smoothing = 0.2\n")
    loss = load_config(path).losses["translation"]
    assert loss.weight == 0.5 and loss.options == {"label_smoothing": 0.2}


def test_resolved_config_round_trips_through_plain_data_and_toml(tmp_path: Path):
    config = load_config(ROOT / "examples" / "configs" / "quickstart.toml", ["train.epochs=2"])
    assert config_from_dict(unstructure(config)) == config
    path = tmp_path / "resolved.toml"
    path.write_text(dumps_toml(config))
    assert load_config(path) == config


def test_unknown_stream_in_a_config_lists_the_registered_streams(tmp_path: Path, mska):
    path = _write(tmp_path, "[model.streams.mouht]\n")
    result = mska("config", "validate", str(path))
    assert result.returncode == 2
    assert "model.streams.mouht" in result.stderr and "hand_left" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_validate_exits_2_naming_the_misspelt_key(tmp_path: Path, mska):
    path = _write(tmp_path, "[optim]\nlearning_rate = 0.1\n")
    result = mska("config", "validate", str(path))
    assert result.returncode == 2
    assert "optim.learning_rate" in result.stderr and "Traceback" not in result.stderr


def test_config_show_json_applies_overrides(mska):
    quickstart = str(ROOT / "examples" / "configs" / "quickstart.toml")
    result = mska("config", "show", quickstart, "--set", "train.epochs=4", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["train"]["epochs"] == 4 and shown["run"]["name"] == "quickstart"


def test_config_show_prints_toml_for_people(mska):
    result = mska("config", "show")
    assert result.returncode == 0
    assert "[model]" in result.stdout  # a command's human result goes to stdout
    assert max(map(len, result.stdout.splitlines())) <= 80


def test_config_reference_in_the_docs_matches_the_schema():
    from mska_core.config.reference import missing_descriptions, render

    assert missing_descriptions() == []
    docs = (ROOT / "docs" / "config.md").read_text()
    assert render() in docs, "regenerate with: python -m mska_core.config.reference --update docs/config.md"


def test_set_applies_the_same_way_to_a_file_and_to_a_stored_config():
    from mska_core.config import load_config

    quickstart = Path(__file__).resolve().parents[1] / "examples" / "configs" / "quickstart.toml"
    overrides = ["train.epochs=7", "losses.distillation.weight=0.5"]
    from_file = load_config(quickstart, overrides)
    from_stored = load_config(load_config(quickstart), overrides)  # as mska evaluate does with a checkpoint's
    assert from_file == from_stored
    assert from_file.train.epochs == 7 and from_file.losses["distillation"].weight == 0.5

"""The generated hook and record reference in docs/plugins.md is in step with the contract."""

from __future__ import annotations

from pathlib import Path

import attrs

from mska_core import hookspecs
from mska_core.plugin_reference import render

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def test_plugin_guide_holds_the_generated_reference():
    assert render() in GUIDE.read_text(), (
        "regenerate with: python -m mska_core.plugin_reference --update docs/plugins.md"
    )


def test_reference_lists_every_hook_record_field_and_error():
    text = render()
    for hook in hookspecs.HOOKS:
        assert f"| `{hook.name}()` | `Iterable[{hook.record.__name__}]` |" in text
    for record in {hook.record for hook in hookspecs.HOOKS}:
        assert f"#### `{record.__name__}`" in text
        for field in attrs.fields(record):
            if field.name != "provider":
                assert f"| `{field.name}` |" in text
    for error in ("MskaError", "PluginError", "ConfigError", "CheckpointError", "DataError"):
        assert f"| `{error}` |" in text

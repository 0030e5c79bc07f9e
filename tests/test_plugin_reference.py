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


def test_every_callable_of_every_record_is_shown_with_its_full_signature():

    from mska_core.plugin_reference import _field_notes

    for hook in hookspecs.HOOKS:
        notes = _field_notes(hook.record)
        for field in attrs.fields(hook.record):
            if "Callable" in str(field.type):
                assert field.name in notes, f"{hook.record.__name__}.{field.name} has no documented signature"
                assert "(" in notes[field.name] and "->" in notes[field.name], notes[field.name]


def test_reference_shows_what_the_callables_receive_and_return():
    from mska_core.plugin_reference import CONTRACT_TYPES, contract_type

    text = render()
    for dotted, hook in CONTRACT_TYPES:
        cls = contract_type(dotted)
        assert f"#### `{cls.__name__}` (`{cls.__module__}`, for `{hook}()`)" in text
        if attrs.has(cls):
            for field in attrs.fields(cls):
                if not field.name.startswith("_"):
                    assert f"| `{field.name}` |" in text
    for needed in ("FileProbe", "Checkpoint", "Corpus", "Sample", "StepOutput", "TrainBatch", "DecoderRequest",
                   "TextDecoder"):
        assert f"#### `{needed}`" in text
    assert "| `load() -> Any` |" in text and "| `describe() -> str` |" in text

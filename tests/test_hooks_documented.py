"""Every hook of the contract is documented (docstring and plugin guide) and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from mska_core import hookspecs
from mska_core.records import RECORD_TYPES

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugins.md").read_text()
OTHER_TESTS = "\n".join(
    path.read_text() for path in (ROOT / "tests").glob("test_*.py") if path.name != Path(__file__).name
)


def test_hook_names_and_record_types_agree():
    specs = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mska_")]
    assert sorted(specs) == sorted(hookspecs.HOOK_NAMES) == sorted(RECORD_TYPES)


@pytest.mark.parametrize("hook", hookspecs.HOOK_NAMES)
def test_hook_docstring_says_what_to_return_the_clash_rule_an_example_and_the_version(hook: str):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert RECORD_TYPES[hook].__name__ in doc
    assert "error naming both providers" in doc
    assert "Example::" in doc
    assert re.search(r"Added in \d+\.\d+", doc)


@pytest.mark.parametrize("hook", hookspecs.HOOK_NAMES)
def test_hook_has_a_section_in_the_plugin_guide(hook: str):
    assert re.search(rf"^### `{hook}\(\)`", GUIDE, re.MULTILINE), f"docs/plugins.md lacks a section for {hook}"


@pytest.mark.parametrize("hook", hookspecs.HOOK_NAMES)
def test_hook_is_exercised_by_a_test(hook: str):
    assert re.search(rf"def test_{hook}\w*\(", OTHER_TESTS), f"no test function named test_{hook}..."


@pytest.mark.parametrize("name", sorted(RECORD_TYPES.values(), key=lambda t: t.__name__), ids=lambda t: t.__name__)
def test_record_is_documented_in_the_plugin_guide(name: type):
    assert re.search(rf"`{name.__name__}[`(]", GUIDE)

"""Every hook of the contract is documented, and its documentation works.

The hooks are read from the one table, ``mska_core.hookspecs.HOOKS``, so a hook added there is held
to all of this with no change here. A hook's docstring example and the examples of its section in
docs/plugins.md are run as real plugins through a real registry: their records must come back from
the registry attribute the table names, stamped with the example plugin as provider.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import textwrap
import types
from pathlib import Path

import attrs
import pytest

import mska_core
from mska_core import hookspecs
from mska_core.hookspecs import HOOKS, Hook
from mska_core.registry import make_registry, record_name

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugins.md").read_text()
IDS = [hook.name for hook in HOOKS]


def docstring_example(hook: Hook) -> str:
    doc = inspect.getdoc(hook.spec) or ""
    match = re.search(r"Example::\n\n((?:(?: {4}.*)?\n)+)", doc + "\n")
    return textwrap.dedent(match.group(1)) if match else ""


def guide_section(hook: Hook) -> str:
    match = re.search(rf"^### `{hook.name}\(\)`\n(.*?)(?=^##)", GUIDE, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def run_example(source: str, hook: Hook, name: str) -> None:
    """Register ``source`` as a plugin module and check its records come out of the registry."""
    tree = ast.parse(source)
    namespace = {"hookimpl": mska_core.hookimpl, **{n: getattr(mska_core, n) for n in mska_core.__all__}}
    bound = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    for node in ast.walk(tree):  # the factories an example only names become placeholders
        if isinstance(node, ast.Name) and node.id not in namespace and node.id not in bound \
                and not hasattr(builtins, node.id):
            namespace[node.id] = lambda *args, **kwargs: None
    plugin = types.ModuleType(name)
    vars(plugin).update(namespace)
    exec(compile(tree, f"<{name}>", "exec"), vars(plugin))
    assert callable(getattr(plugin, hook.name, None)), f"the example does not define {hook.name}()"

    registry = make_registry(plugin, env={"MSKA_LOAD_PLUGINS": ""}, warn=False)
    catalog = getattr(registry, hook.attribute)
    info = registry.host.infos[name]
    assert info.status == "loaded", info.error
    supplied = list(getattr(plugin, hook.name)())
    assert supplied and all(isinstance(record, hook.record) for record in supplied)
    for record in supplied:
        found = catalog.get(record_name(record))
        assert type(found) is hook.record and found.provider.plugin == name
    assert info.provides[hook.name] == [record_name(record) for record in supplied]


def test_every_spec_function_is_in_the_table_of_hooks_and_known_to_pluggy():
    specs = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mska_")]
    assert sorted(specs) == sorted(hook.name for hook in HOOKS)
    registry = make_registry(env={"MSKA_LOAD_PLUGINS": ""})
    for hook in HOOKS:
        assert getattr(registry.host.pm.hook, hook.name).has_spec()
        assert attrs.has(hook.record) and "provider" in attrs.fields_dict(hook.record)
        assert getattr(mska_core, hook.record.__name__) is hook.record  # plugins import it from mska_core


@pytest.mark.parametrize("hook", HOOKS, ids=IDS)
def test_hook_docstring_says_what_to_return_the_clash_rule_and_the_version(hook: Hook):
    doc = inspect.getdoc(hook.spec) or ""
    assert hook.record.__name__ in doc
    assert "error naming both providers" in doc
    assert re.search(r"Added in \d+\.\d+", doc)


@pytest.mark.parametrize("hook", HOOKS, ids=IDS)
def test_hook_docstring_example_is_a_plugin_whose_records_the_registry_serves(hook: Hook):
    source = docstring_example(hook)
    assert source, f"the docstring of {hook.name} has no Example:: block"
    run_example(source, hook, f"docstring_example_{hook.attribute}")


@pytest.mark.parametrize("hook", HOOKS, ids=IDS)
def test_hook_section_of_the_plugin_guide_names_its_record_and_its_examples_work(hook: Hook):
    section = guide_section(hook)
    assert section.strip(), f"docs/plugins.md lacks a section '### `{hook.name}()`'"
    assert f"`{hook.record.__name__}" in section
    for number, block in enumerate(re.findall(r"```python\n(.*?)```", section, re.DOTALL)):
        run_example(block, hook, f"guide_example_{hook.attribute}_{number}")


def plugin_implementations(path: Path) -> set[str]:
    """Hook names a test module implements in a plugin: ``@hookimpl`` functions in its code, or in the
    source text of a plugin it installs."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            "hookimpl" in ast.unparse(decorator) for decorator in node.decorator_list
        ):
            found.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= set(re.findall(r"@hookimpl[^\n]*\n\s*def (mska_\w+)\(", node.value))
    return found


@pytest.mark.parametrize("hook", HOOKS, ids=IDS)
def test_hook_is_implemented_by_a_plugin_in_some_other_test(hook: Hook):
    implemented = set()
    for path in (ROOT / "tests").glob("*.py"):
        if path.name != Path(__file__).name:
            implemented |= plugin_implementations(path)
    assert hook.name in implemented, f"no test supplies a plugin implementing {hook.name}()"

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


# -- the guide's complete examples run for real: a format writes and reads, a loss forwards, a source opens


def guide_plugin(hook_name: str) -> types.ModuleType:
    """The last example of a hook's section in docs/plugins.md, as a plugin module."""
    section = guide_section(next(hook for hook in HOOKS if hook.name == hook_name))
    source = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[-1]
    module = types.ModuleType(f"guide_{hook_name}")
    exec(compile(source, f"<docs/plugins.md {hook_name}>", "exec"), vars(module))
    return module


def test_the_guide_format_writes_and_reads_a_run_checkpoint(tmp_path):
    import torch

    from mska_core.checkpoints import load_checkpoint, make_payload, read_payload, save_checkpoint

    registry = make_registry(guide_plugin("mska_checkpoint_formats"), env={"MSKA_LOAD_PLUGINS": ""})
    payload = make_payload("training-state", {"w": torch.arange(4.0)}, epoch=2, registry=registry,
                           optimizer={"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": []})
    path = save_checkpoint(payload, tmp_path / "last.mskz", registry=registry)
    assert load_checkpoint(path, registry=registry).format == "gz"
    back = read_payload(path, kinds=("training-state",), registry=registry)
    assert back["epoch"] == 2 and torch.equal(back["state_dict"]["w"], torch.arange(4.0))
    assert torch.equal(back["optimizer"]["state"][0]["step"], torch.tensor(3.0))


def test_the_guide_loss_forwards_a_step_output_and_a_batch():
    import torch

    from mska_core.encoder.records import EncoderOutput
    from mska_core.training.model import StepOutput

    registry = make_registry(guide_plugin("mska_losses"), env={"MSKA_LOAD_PLUGINS": ""})
    loss = registry.losses.get("logit_energy").build(scale=2.0)
    logits = {"fuse": torch.ones(2, 3, 5), "left": torch.full((2, 3, 5), 2.0)}
    encoder = EncoderOutput(stream_features={}, head_inputs={}, lengths=torch.tensor([3, 2]), logits=logits,
                            gloss_features={}, mask=torch.ones(2, 3, dtype=torch.bool))
    value = loss(StepOutput(encoder=encoder), None)
    assert value.ndim == 0 and float(value) == 2.0 * (1.0 + 4.0)


def test_the_guide_data_source_builds_a_corpus_with_its_options():
    from mska_core.config import DataConfig
    from mska_core.data.datasets import load_corpus

    registry = make_registry(guide_plugin("mska_data_sources"), env={"MSKA_LOAD_PLUGINS": ""})
    corpus = load_corpus(DataConfig(source="constant", options={"frames": 24}), registry=registry)
    assert [s.name for s in corpus.train] == ["a", "b"] and corpus.train[0].keypoints.shape == (24, 133, 3)
    assert load_corpus(DataConfig(source="constant"), registry=registry).dev[0].num_frames == 16


HEAVY = ("torch", "timm", "transformers", "safetensors", "numpy", "onnx", "onnxruntime", "tensorboard")


def test_plugin_examples_in_the_docs_import_heavy_libraries_inside_their_factories():
    offences = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL):
            if "@hookimpl" not in block:
                continue
            for node in ast.parse(textwrap.dedent(block)).body:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offences += [f"{page.name}: import {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not offences, "examples import heavy libraries at module level:\n" + "\n".join(offences)

"""The import rules of docs/architecture.md, checked on the source tree.

Every ``import``/``from ... import`` in ``mska_core`` is read with :mod:`ast` (imports inside functions
included, since the package imports heavy modules lazily), so a forbidden import fails here before a
reviewer has to spot it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mska_core"

#: The foundation: contracts and small utilities that every layer may import, and which import only
#: each other (mska_core/__init__.py re-exports the public API and sits above them).
FOUNDATION = {"errors", "records", "hookspecs", "lazy", "io", "run_files"}

#: Which of the package's rooms each room may import, besides the foundation and itself.
MAY_IMPORT: dict[str, set[str]] = {
    "layouts": set(),
    "plugins": {"__init__"},
    "registry": {"plugins"},
    "config": {"registry"},
    "backbones": {"__init__", "registry", "checkpoints"},
    "checkpoints": {"__init__", "registry", "config", "backbones", "encoder"},
    "losses": {"registry", "text"},
    "data": {"registry", "config", "encoder", "text"},
    "synthetic": {"registry", "config", "data"},
    "extract": {"registry", "config", "data", "synthetic"},
    "encoder": {"registry", "config", "backbones", "checkpoints"},
    "text": {"registry", "config", "checkpoints"},
    "evaluation": {"registry", "config", "data", "encoder", "text"},
    "training": {"__init__", "registry", "config", "backbones", "checkpoints", "losses", "data", "synthetic",
                 "encoder", "text", "evaluation"},
    "export": {"__init__", "registry", "config", "data", "encoder", "evaluation", "training"},
    # the generated plugin reference reads the contract types of every layer (never the commands)
    "plugin_reference": {"__init__", "registry", "config", "backbones", "checkpoints", "losses", "data",
                         "synthetic", "encoder", "text", "evaluation", "training", "export"},
}

#: The streams that first-party plugins declare: rooms below the command line never spell them out.
STREAM_NAMES = {"face", "hand", "hand_left", "hand_right", "body", "mouth"}
STREAM_FREE_ROOMS = ("encoder", "training")


def room_of(module: str) -> str | None:
    """``mska_core.data.pickles`` -> ``data``; ``mska_core`` -> ``__init__``; other packages -> None."""
    parts = module.split(".")
    if parts[0] != "mska_core":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def source_files() -> list[tuple[str, Path]]:
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        files.append((relative.parts[0].removesuffix(".py") if len(relative.parts) == 1 else relative.parts[0], path))
    return files


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "mska_core" and node.level == 0:
            # from mska_core import config -> the room config; from mska_core import __version__ -> __init__
            for alias in node.names:
                is_room = (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()
                found.append((node.lineno, f"mska_core.{alias.name}" if is_room else "mska_core"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_every_room_of_the_package_has_a_rule():
    rooms = {room for room, _ in source_files()} - {"__init__", "__main__", "cli", "py"}
    assert rooms <= FOUNDATION | set(MAY_IMPORT), (
        f"rooms without an import rule: {sorted(rooms - FOUNDATION - set(MAY_IMPORT))}; "
        "add them to docs/architecture.md and to MAY_IMPORT here"
    )


def test_the_core_never_imports_a_plugin():
    offences = [
        f"{where(path, line)} imports {module}"
        for _, path in source_files()
        for line, module in imported_modules(path)
        if module.split(".")[0].startswith("mska_") and module.split(".")[0] != "mska_core"
    ]
    assert not offences, "the core imports plugins:\n" + "\n".join(offences)


def test_nothing_below_the_command_line_imports_it():
    offences = [
        f"{where(path, line)} imports {module}"
        for room, path in source_files()
        if room not in ("cli", "__main__")
        for line, module in imported_modules(path)
        if room_of(module) == "cli"
    ]
    assert not offences, "modules below cli/ import it:\n" + "\n".join(offences)


@pytest.mark.parametrize("room", sorted(FOUNDATION | set(MAY_IMPORT)))
def test_each_room_imports_only_what_the_architecture_allows(room: str):
    allowed = {room} | FOUNDATION | (set() if room in FOUNDATION else MAY_IMPORT[room])
    offences = [
        f"{where(path, line)} imports {module}"
        for name, path in source_files()
        if name == room
        for line, module in imported_modules(path)
        if room_of(module) is not None and room_of(module) not in allowed
    ]
    assert not offences, f"{room} may import only {sorted(allowed)}:\n" + "\n".join(offences)


@pytest.mark.parametrize("room", STREAM_FREE_ROOMS)
def test_encoder_and_training_know_no_stream_names(room: str):
    offences = []
    for name, path in source_files():
        if name != room:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STREAM_NAMES:
                offences.append(f"{where(path, node.lineno)} spells out the stream {node.value!r}")
    assert not offences, (
        f"{room}/ must learn streams from the registry and the config:\n" + "\n".join(offences)
    )


#: The documented Python entry points that fall back to the process-wide registry when given none
#: (module relative to mska_core, function qualname). The commands in cli/ may too; nothing else may.
REGISTRY_ENTRY_POINTS = {
    ("__init__.py", "get_registry"),
    ("registry.py", "get_registry"),
    ("encoder/model.py", "MSKAEncoder.from_config"),
    ("backbones/spec.py", "parse_spec"),
    ("backbones/loaders.py", "load_backbone"),
    ("backbones/loaders.py", "build_arch"),
    ("checkpoints/payload.py", "make_payload"),
    ("checkpoints/payload.py", "load_checkpoint"),
    ("checkpoints/payload.py", "save_checkpoint"),
    ("checkpoints/encoder_state.py", "load_mska_encoder_state"),
    ("checkpoints/encoder_state.py", "check_mska_encoder_state"),
    ("checkpoints/inspector.py", "describe"),
    ("checkpoints/inspector.py", "describe_run"),
    ("checkpoints/inspector.py", "diff_checkpoints"),
    ("training/fit.py", "check_fit"),
    ("training/loop.py", "FineTuning.__init__"),
    ("training/dino.py", "pretrain"),
    ("export/onnx.py", "export_onnx"),
    ("export/embed.py", "embed"),
    # a worker process of `mska extract --workers` is a process of its own: it loads its plugins
    ("extract/runner.py", "_worker"),
}


def process_wide_registry_uses(path: Path) -> list[tuple[str, int]]:
    """``(function qualname, line)`` of every call of ``get_registry()`` in ``path``."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, (*scope, child.name))
                continue
            if isinstance(child, ast.Call):
                name = child.func.attr if isinstance(child.func, ast.Attribute) else getattr(child.func, "id", "")
                if name == "get_registry":
                    found.append((".".join(scope) or "<module>", child.lineno))
            visit(child, scope)

    visit(ast.parse(path.read_text()), ())
    return found


def test_only_commands_and_documented_entry_points_fall_back_to_the_process_wide_registry():
    offenders = []
    for _, path in source_files():
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/"):
            continue
        for function, line in process_wide_registry_uses(path):
            if (relative, function) not in REGISTRY_ENTRY_POINTS:
                offenders.append(f"{where(path, line)} in {function}()")
    assert not offenders, (
        "internal code takes its registry as an argument instead of calling get_registry(): "
        + "; ".join(offenders)
    )


def test_checkpoint_formats_and_payload_stand_on_the_schema_and_never_import_each_other():
    formats, payload = PACKAGE / "checkpoints" / "formats.py", PACKAGE / "checkpoints" / "payload.py"
    offences = [
        f"{where(path, line)} imports {module}"
        for path, other in ((formats, "mska_core.checkpoints.payload"), (payload, "mska_core.checkpoints.formats"))
        for line, module in imported_modules(path)
        if module == other
    ]
    assert not offences, "formats.py and payload.py import each other:\n" + "\n".join(offences)

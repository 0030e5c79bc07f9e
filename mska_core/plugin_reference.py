"""The hook and record reference of ``docs/plugins.md``, generated from the contract itself.

Everything here is read from :mod:`mska_core.hookspecs` (the table of hooks, their record types
and the version they appeared in), :mod:`mska_core.records` (each record's fields, types and defaults,
every callable's signature from the record's docstring), the objects those callables receive and
return (:data:`CONTRACT_TYPES`: ``FileProbe``, ``Checkpoint``, ``Corpus``, ``Sample``, a loss's
``StepOutput`` and ``TrainBatch``, ...; their fields and methods with full signatures) and
:mod:`mska_core.errors` (what plugin code raises), so a hook or field added there appears in the
reference when it is regenerated. It reads every layer of the package, so it sits above them all
(docs/architecture.md). A test keeps the page in step::

    python -m mska_core.plugin_reference --update docs/plugins.md
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Any

import attrs

BEGIN = "<!-- BEGIN GENERATED: python -m mska_core.plugin_reference -->"
END = "<!-- END GENERATED -->"


def _first_paragraph(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`")


def _added_in(obj: Any) -> str:
    match = re.search(r"Added in (\d+\.\d+(?:\.\d+)?)", inspect.getdoc(obj) or "")
    return match.group(1) if match else "?"


def _default(field: attrs.Attribute) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return "derived (see above)"
        return f"`{default.factory()!r}`"
    return f"`{default!r}`"


def _type(field: attrs.Attribute) -> str:
    text = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", repr(field.type))
    return f"`{text}`".replace("|", "\\|")


#: The objects that the callables of records receive or return, with the hook they belong to: the
#: reference shows each one's fields and methods, so a plugin author needs no other page.
CONTRACT_TYPES: tuple[tuple[str, str], ...] = (
    ("mska_core.backbones.spec.BackboneOptions", "mska_backbone_loaders"),
    ("mska_core.checkpoints.files.FileProbe", "mska_checkpoint_formats"),
    ("mska_core.checkpoints.payload.Checkpoint", "mska_checkpoint_formats"),
    ("mska_core.training.model.StepOutput", "mska_losses"),
    ("mska_core.data.collate.TrainBatch", "mska_losses"),
    ("mska_core.encoder.records.EncoderOutput", "mska_losses"),
    ("mska_core.encoder.records.ClipBatch", "mska_losses"),
    ("mska_core.data.samples.Corpus", "mska_data_sources"),
    ("mska_core.data.samples.Sample", "mska_data_sources"),
    ("mska_core.text.DecoderRequest", "mska_text_decoders"),
    ("mska_core.text.TextDecoder", "mska_text_decoders"),
    ("mska_core.text.TextTokenizer", "mska_text_decoders"),
)

#: What the fields every record has mean.
COMMON_NOTES = {
    "name": "the name configs and listings use; unique per kind (two plugins supplying one name: the user "
            "chooses, `[plugins.providers]`)",
    "description": "one line for `mska plugins`",
}


def contract_type(dotted: str) -> type:
    """The class ``dotted`` (``module.Class``) names."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def render() -> str:
    """The generated part of ``docs/plugins.md``."""
    from mska_core import errors, hookspecs

    out = [BEGIN, "", "### Reference (generated)", "",
           "Every hook takes no arguments and returns an iterable of one record type:", "",
           "| hook | returns | added in |", "|---|---|---|"]
    for hook in hookspecs.HOOKS:
        out.append(f"| `{hook.name}()` | `Iterable[{hook.record.__name__}]` | {_added_in(hook.spec)} |")
    out.append("")
    records = list(dict.fromkeys(hook.record for hook in hookspecs.HOOKS))
    nested = [t for t in _nested_records(records) if t not in records]
    for record in [*records, *nested]:
        out += [f"#### `{record.__name__}`", "", _first_paragraph(record), "",
                "| field | type | default | meaning |", "|---|---|---|---|"]
        meanings = {**COMMON_NOTES, **_field_notes(record)}
        for field in attrs.fields(record):
            if field.name == "provider":
                continue
            out.append(f"| `{field.name}` | {_type(field)} | {_default(field)} | {meanings.get(field.name, '')} |")
        out.append("")
    out += ["`provider` (a `Provider(plugin, distribution, version)`) is set by the registry on every record; "
            "plugins never set it.", ""]
    out += _render_contract_types()
    out += [
            "#### Exceptions", "",
            "Code a plugin supplies (hooks, factories, loaders, `sniff`/`read`/`write`, encoder factories, loss "
            "builds and forwards) raises one of these for bad input: the user sees its message as one line and "
            "`mska` exits 2. Any other exception — `SystemExit` and a self-raised `KeyboardInterrupt` included "
            "— is a bug of the plugin: it becomes a `PluginError` that names the plugin, its distribution and "
            "version (a hook that raises marks its plugin failed).", "",
            "| exception | raise it when |", "|---|---|"]
    for cls in _error_classes(errors.MskaError):
        out.append(f"| `{cls.__name__}` | {_first_paragraph(cls)} |")
    out += ["", END]
    return "\n".join(out) + "\n"


def _render_contract_types() -> list[str]:
    out = ["### What the callables receive and return (generated)", "",
           "Import each from the module named; build the records with their fields as keywords.", ""]
    for dotted, hook in CONTRACT_TYPES:
        cls = contract_type(dotted)
        out += [f"#### `{cls.__name__}` (`{cls.__module__}`, for `{hook}()`)", "", *_prose(cls)]
        notes = _field_notes(cls)
        comments = _trailing_comments(cls)
        if attrs.has(cls):
            out += ["| field | type | default | meaning |", "|---|---|---|---|"]
            for field in attrs.fields(cls):
                if field.name.startswith("_"):
                    continue
                meaning = notes.get(field.name) or comments.get(field.name, "")
                out.append(f"| `{field.name}` | {_type(field)} | {_default(field)} | {meaning} |")
            out.append("")
        elif getattr(cls, "_is_protocol", False):
            attributes = [name for name in getattr(cls, "__annotations__", {}) if not name.startswith("_")]
            if attributes:
                out += [f"Attributes: {', '.join(f'`{name}`' for name in attributes)}.", ""]
        members = _members(cls)
        if members:
            out += ["| member | what it does |", "|---|---|"]
            out += [f"| `{signature}` | {doc} |" for signature, doc in members]
            out.append("")
    return out


def _prose(obj: Any) -> list[str]:
    """The paragraphs of ``obj``'s docstring that are not field bullets, each followed by a blank line."""
    out = []
    for paragraph in (inspect.getdoc(obj) or "").split("\n\n"):
        if paragraph.strip() and not paragraph.lstrip().startswith("- "):
            out += [" ".join(paragraph.split()).replace("``", "`"), ""]
    return out


def _members(cls: type) -> list[tuple[str, str]]:
    """``(signature, first line of its docstring)`` of the public methods and properties ``cls`` defines."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if not callable(function):
            continue
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            continue
        parameters = [p for p in signature.parameters.values() if p.name not in ("self", "cls")]
        text = re.sub(r"(: |-> )'([^']*)'", r"\1\2", str(signature.replace(parameters=parameters)))
        shown = name if isinstance(value, property) else f"{name}{text}"
        if isinstance(value, property):
            shown += text.partition(")")[2]
        doc = _first_paragraph(function).replace("|", "\\|")
        out.append((shown.replace("|", "\\|"), doc))
    return out


def _trailing_comments(cls: type) -> dict[str, str]:
    """``{field: trailing comment}`` of a class's source (``keypoints: Any  # torch.Tensor [T, J, 3]``)."""
    try:
        lines = inspect.getsourcelines(cls)[0]
    except (OSError, TypeError):
        return {}
    out = {}
    for line in lines:
        match = re.match(r"\s+(\w+):[^#]*#\s*(.+)$", line)
        if match:
            out[match.group(1)] = match.group(2).strip().replace("|", "\\|")
    return out


def _field_notes(record: type) -> dict[str, str]:
    """``{field: text}`` from the record docstring's bullets that start with the field's name."""
    notes: dict[str, str] = {}
    doc = inspect.getdoc(record) or ""
    for bullet in re.split(r"\n(?=- )", doc):
        match = re.match(r"- ``(\w+)(?:\([^`]*\))?(?: -> [^`]*)?``", bullet)
        if match:
            text = " ".join(bullet[2:].split()).replace("|", "\\|").replace("``", "`")
            notes.setdefault(match.group(1), text.split("\n\n")[0])
    return notes


def _nested_records(records: list[type]) -> list[type]:
    """attrs classes that fields of ``records`` name (e.g. a crop region), in first-seen order."""
    import mska_core.records as module

    found: list[type] = []
    for record in records:
        for field in attrs.fields(record):
            text = field.type if isinstance(field.type, str) else ""
            for name in re.findall(r"[A-Z][A-Za-z]+", text):
                candidate = getattr(module, name, None)
                if isinstance(candidate, type) and attrs.has(candidate) and name != "Provider" \
                        and candidate not in found:
                    found.append(candidate)
    return found


def _error_classes(root: type) -> list[type]:
    out = [root]
    for sub in root.__subclasses__():
        if sub.__module__ == root.__module__:
            out += [c for c in _error_classes(sub) if c not in out]
    return out


def update(path: str) -> None:
    """Replace the generated part of the file at ``path`` (or append it) with :func:`render`."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END) + 1
        text = text[:start] + render() + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + render()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"] and len(sys.argv) == 3:
        update(sys.argv[2])
    else:
        sys.stdout.write(render())

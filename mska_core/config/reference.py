"""The configuration reference in ``docs/config.md``, generated from the schema.

Defaults and types come from the attrs classes of :mod:`mska_core.config.schema` and descriptions from
the comment that ends each field's line there (or from :data:`DESCRIPTIONS` for fields without one),
so the reference cannot drift from the code. ``python -m mska_core.config.reference`` prints the
generated section; a test checks that ``docs/config.md`` holds it unchanged.
"""

from __future__ import annotations

import inspect
import io
import tokenize
import typing
from collections.abc import Iterator
from typing import Any

import attrs

from mska_core.config import schema

BEGIN = "<!-- BEGIN GENERATED: python -m mska_core.config.reference -->"
END = "<!-- END GENERATED -->"

#: Descriptions of fields whose line in the schema carries no comment.
DESCRIPTIONS: dict[str, str] = {
    "run.name": "name of the run; its folder is `<output_dir>/<name>`",
    "run.output_dir": "folder that holds run folders",
    "run.device": "`auto` (a GPU when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`",
    "run.loggers": "experiment trackers fed every `metrics.jsonl` record (`tensorboard`, or a plugin's; docs/deploy.md)",
    "run.seed": "seed of every random generator (Python, torch, data order, augmentation)",
    "data.source": "a registered data source: `synthetic` (the embedded corpus), `mska-pickle`, `directory`, "
                   "`pose` (.pose files) or a plugin's (`mska plugins` lists them)",
    "data.invalid": "clips with NaN/inf values, confidences outside [0, 1], no frames or non-UTF-8 text: "
                    "`refuse` stops with the clips named, `repair` fixes or drops them (docs/data.md)",
    "data.dev": "the dev split's file, relative to `path`",
    "data.test": "the test split's file, relative to `path`",
    "data.crops": "also give the model per-frame face and hand crops (streams with a backbone read them)",
    "data.frame_width": "frame width in pixels, for normalising pixel coordinates to [-1, 1]",
    "data.frame_height": "frame height in pixels (y is flipped when normalising)",
    "data.normalize": "normalise the directory format's pixel coordinates like MSKA pickles",
    "data.synthetic.num_train": "training clips of the synthetic corpus",
    "data.synthetic.num_dev": "dev clips of the synthetic corpus",
    "data.synthetic.num_test": "test clips of the synthetic corpus",
    "data.synthetic.vocab_size": "glosses in the synthetic vocabulary",
    "data.synthetic.min_glosses": "fewest glosses in a synthetic sentence",
    "data.synthetic.max_glosses": "most glosses in a synthetic sentence",
    "data.synthetic.frames_per_gloss": "frames a synthetic gloss lasts (before signer variation)",
    "data.synthetic.crop_size": "side of the rendered face and hand crops, in pixels",
    "data.synthetic.seed": "seed of the synthetic corpus (the same seed gives the same corpus)",
    "data.augment.enabled": "temporal augmentation of training clips",
    "data.augment.speed_min": "slowest speed factor of temporal augmentation",
    "data.augment.speed_max": "fastest speed factor of temporal augmentation",
    "data.augment.max_frames": "longest clip after augmentation (longer clips are resampled)",
    "model.layout": "the keypoint layout clips are in (`mska plugins --all` lists layouts)",
    "model.attention": "`paper`: the reference's tanh attention with a global matrix; `softmax`: scaled dot-product attention",
    "model.in_channels": "values per joint (x, y, confidence)",
    "model.channels": "output channels of each attention block",
    "model.inter_channels": "query/key channels per head of each block",
    "model.temporal_kernels": "temporal convolution kernel of each block (odd)",
    "model.strides": "temporal stride of each block (the product is the downsampling of CTC lengths)",
    "model.num_heads": "attention heads per block",
    "model.head_hidden": "hidden width of each VisualHead (the gloss features)",
    "model.head_ff": "feed-forward width of each VisualHead",
    "model.head_kernel": "kernel of the VisualHead's convolutional feed-forward",
    "model.head_dropout": "dropout inside the VisualHeads",
    "model.crop_dim": "width crop-backbone features are projected to before merging with keypoint features",
    "model.streams": "`[model.streams.<name>]`: select streams and set their options (none: every stream with joints in `layout`)",
    "model.heads": "`[model.heads.<name>]`: recognition heads (none: the paper's heads for the four MSKA streams, else `fuse` plus one per stream)",
    "model.streams.<name>.keypoints": "give the stream its keypoint branch",
    "model.streams.<name>.img_size": "crop size the backbone is built for (none: the size of the crops the data provides; crops of another size are resized with a notice)",
    "model.streams.<name>.freeze": "keep the stream's weights fixed during fine-tuning (its crop backbone stays in eval mode, out of the optimiser)",
    "model.heads.<name>.streams": "streams whose features the head concatenates, in order",
    "losses": "`[losses.<name>]`: the losses to train with (`mska plugins --all` lists losses)",
    "losses.<name>.weight": "factor of this loss in the total",
    "losses.<name>.<option>": "any other key is passed to the loss's `build` (e.g. `label_smoothing`)",
    "optim.name": "optimiser",
    "optim.lr": "peak learning rate (after warm-up)",
    "optim.min_lr": "learning rate at the end of the cosine schedule",
    "optim.weight_decay": "decoupled weight decay",
    "optim.betas": "Adam's betas",
    "optim.warmup_steps": "steps of linear learning-rate warm-up",
    "optim.schedule": "learning-rate schedule after warm-up: `cosine` per step over the run, `cosine-epoch` the MSKA reference's (one value per epoch, over `t_max` epochs), `constant`",
    "train.epochs": "passes over the training split",
    "train.batch_size": "clips per optimiser step (over all processes)",
    "train.amp": "`bf16`: bfloat16 autocast for the forward pass; `fp16`: float16 autocast with a gradient scaler (its state in `last.pt`)",
    "train.num_workers": "data-loader worker processes",
    "train.test_beam_size": "CTC beam width on the test split (`mska evaluate`)",
    "train.translation_beam_size": "beam width of translation decoding",
    "train.max_steps": "stop after this many optimiser steps (schedules unchanged)",
    "pretrain.output_dir": "folder of the pretraining run (checkpoints, metrics.jsonl)",
    "pretrain.epochs": "passes over the crops",
    "pretrain.arch": "backbone architecture (`mska plugins --all` lists archs)",
    "pretrain.batch_size": "images per step",
    "pretrain.export_checkpoint": "write the stream-encoder export at the end",
    "pretrain.export_backbone": "also write a backbone file that `file::FILE:ARCH` loads",
    "pretrain.resume": "continue from the run's last checkpoint",
    "pretrain.num_workers": "data-loader worker processes",
    "pretrain.local_crops": "local crops per image (multi-crop)",
    "pretrain.global_crop_scale": "area range of the two global crops",
    "pretrain.local_crop_scale": "area range of the local crops",
    "pretrain.head_hidden_dim": "hidden width of the DINO head",
    "pretrain.head_bottleneck_dim": "bottleneck width before the prototypes",
    "pretrain.head_layers": "layers of the DINO head's MLP",
    "pretrain.student_temp": "student softmax temperature",
    "pretrain.teacher_temp": "teacher softmax temperature after warm-up",
    "pretrain.warmup_teacher_temp": "teacher temperature at the start",
    "pretrain.warmup_teacher_temp_epochs": "epochs of teacher temperature warm-up",
    "pretrain.center_momentum": "EMA momentum of the teacher-output centre",
    "pretrain.warmup_epochs": "epochs of linear learning-rate warm-up",
    "pretrain.min_lr": "learning rate at the end of the cosine schedule",
    "pretrain.weight_decay": "weight decay at the start (cosine to `weight_decay_end`)",
    "pretrain.weight_decay_end": "weight decay at the end",
    "pretrain.freeze_last_layer_epochs": "epochs during which the prototypes are not updated",
    "pretrain.probe_images": "held-out labelled synthetic crops of the k-NN probe",
    "plugins.disable": "plugins not to load (as `MSKA_DISABLE_PLUGINS`)",
    "plugins.required": "plugins that must be loaded, else the run stops",
    "plugins.providers": "`NAME = \"PLUGIN\"`: which plugin supplies a name that several loaded plugins supply "
                         "(without it, neither does; docs/plugins.md)",
    "data.options": "options of the data source: only the keys it declares (`DataSource.options`, "
                    "docs/data.md); unknown keys are refused",
    "run.format": "checkpoint format of `best`/`last` and of pretraining's default export: `mska` (`.pt`), "
                  "`safetensors`, or a plugin's that writes (docs/checkpoints.md)",
}

_TABLE_KEYS = {"streams": "<name>", "heads": "<name>", "losses": "<name>"}


def _field_comments() -> dict[tuple[str, str], str]:
    """``{(class name, field name): trailing comment}`` read from the schema's source."""
    source = inspect.getsource(schema)
    comments: dict[tuple[str, str], str] = {}
    lines = source.splitlines()
    trailing: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and lines[token.start[0] - 1].strip() != token.string.strip():
            trailing[token.start[0]] = token.string.lstrip("#").strip()
    for name, cls in inspect.getmembers(schema, inspect.isclass):
        if not attrs.has(cls) or cls.__module__ != schema.__name__:
            continue
        class_lines, first = inspect.getsourcelines(cls)
        for offset, line in enumerate(class_lines):
            stripped = line.strip()
            head = stripped.split(":", 1)[0]
            if head.isidentifier() and (first + offset) in trailing:
                comments[(cls.__name__, head)] = trailing[first + offset]
    return comments


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin in (typing.Union, __import__("types").UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    if origin in (tuple, list):
        return "array"
    if origin is dict:
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _default(field: attrs.Attribute) -> str:
    if field.default is attrs.NOTHING:
        return "required"
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        value = field.default.factory()
        if attrs.has(type(value)):
            return ""
        if isinstance(value, dict):
            return ", ".join(value) if value else "none"
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def iter_fields(cls: type, prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """``(dotted key, type, default, description)`` for every key of ``cls`` and its sub-tables."""
    comments = _field_comments()
    hints = typing.get_type_hints(cls)
    open_table = getattr(cls, "__mska_open_table__", None)
    for field in attrs.fields(cls):
        tp = hints[field.name]
        dotted = f"{prefix}.{field.name}" if prefix else field.name
        if field.name == open_table:
            dotted = f"{prefix}.<option>"
            yield dotted, "any", "", DESCRIPTIONS.get(dotted, "")
            continue
        if attrs.has(tp):
            yield from iter_fields(tp, dotted)
            continue
        description = DESCRIPTIONS.get(dotted) or comments.get((cls.__name__, field.name), "")
        description = description.replace("``", "`")
        yield dotted, _type_name(tp), _default(field), description
        value_type = typing.get_args(tp)[1] if typing.get_origin(tp) is dict else None
        if value_type is not None and attrs.has(value_type):
            yield from iter_fields(value_type, f"{dotted}.{_TABLE_KEYS.get(field.name, '<name>')}")


def render() -> str:
    """The generated Markdown section: one table per top-level TOML table."""
    out = [BEGIN, ""]
    hints = typing.get_type_hints(schema.Config)
    for field in attrs.fields(schema.Config):
        tp = hints[field.name]
        out.append(f"### `[{field.name}]`")
        out.append("")
        doc = inspect.getdoc(tp if attrs.has(tp) else schema.LossConfig) or ""
        summary = doc.split("\n\n")[0].replace("\n", " ").replace("``", "`")
        summary = summary.split(": ", 1)[1] if summary.startswith("`[") else summary
        out.append(summary[:1].upper() + summary[1:])
        out.append("")
        out.append("| key | type | default | meaning |")
        out.append("|---|---|---|---|")
        rows = iter_fields(tp, field.name) if attrs.has(tp) else _loss_rows(field)
        for dotted, type_name, default, description in rows:
            out.append(f"| `{dotted}` | {type_name} | {default} | {description} |")
        out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def _loss_rows(field: attrs.Attribute) -> Iterator[tuple[str, str, str, str]]:
    yield "losses", "table", _default(field), DESCRIPTIONS["losses"]
    yield from iter_fields(schema.LossConfig, "losses.<name>")


def missing_descriptions() -> list[str]:
    """Keys that have neither a comment in the schema nor an entry in :data:`DESCRIPTIONS`."""
    hints = typing.get_type_hints(schema.Config)
    missing = []
    for field in attrs.fields(schema.Config):
        tp = hints[field.name]
        rows = iter_fields(tp, field.name) if attrs.has(tp) else _loss_rows(field)
        missing.extend(dotted for dotted, _, _, description in rows if not description)
    return missing


def update(path: str) -> None:
    """Replace the generated section of the Markdown file at ``path``."""
    from pathlib import Path

    text = Path(path).read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    Path(path).write_text(text[:start] + render() + text[end:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--update"]:
        update(sys.argv[2])
    else:
        print(render(), end="")

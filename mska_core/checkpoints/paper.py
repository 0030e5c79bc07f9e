"""Key mapping between the MSKA reference implementation (``sutwangyan/MSKA``) and :class:`MSKAEncoder`.

The reference's ``Recognition`` network holds the keypoint backbone ``visual_backbone_keypoint``
(``DSTA``: ``{left,right,face,body}_input_map`` and ``{...}_graph_layers.<i>``) and four VisualHeads
``{fuse,left,right,body}_visual_head``; a checkpoint is ``{"model": state_dict, "optimizer",
"scheduler", "epoch"}`` with keys under ``recognition_network.`` (and ``module.`` when saved from
DistributedDataParallel). Our paper preset carries the same tensors, so conversion renames keys and
reshapes two parameters:

- ``alphas`` ``[1, S, 1, 1]`` becomes ``alpha`` ``[S]``;
- ``attention0s`` ``[1, S, V, V]`` becomes ``global_attention`` ``[S, V, V]``, with the constant
  buffer ``atts`` (zeros in every released model) added to it, which leaves the sum unchanged;
- the positional-encoding buffers (``pes.pe``, ``pe.pe``) are constants we compute, and are dropped.

Keys outside the recognition network (``translation_network.``, ``vl_mapper.`` of translation
checkpoints) are not part of the encoder and are left out. ``docs/encoder.md`` lists the mapping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from mska_core.config.schema import PAPER_STREAMS
from mska_core.errors import CheckpointError

#: Reference stream prefix -> our stream name (the reference's order is the paper preset's).
STREAMS = dict(zip(("left", "face", "right", "body"), PAPER_STREAMS))
#: Reference head prefix -> our head name.
HEADS = {"fuse": "fuse", "left": "left", "right": "right", "body": "body"}
#: Parts of a reference ``STAttentionBlock`` -> ours (``.0`` is the conv, ``.1`` the batch norm).
BLOCK_PARTS = {
    "in_nets": "qk",
    "out_nets": "attend",
    "downs1": "skip_attend",
    "ff_nets": "mix",
    "downs2": "skip_mix",
    "out_nett": "temporal",
    "downt2": "skip_temporal",
}
#: Parts of a reference ``VisualHead`` -> ours.
HEAD_PARTS = {
    "fc1": "project",
    "bn1.norm": "norm",
    "feedforward.layer_norm": "ff_norm",
    "feedforward.pwff_layer.0": "ff_expand",
    "feedforward.pwff_layer.3": "ff_contract",
    "layer_norm": "out_norm",
    "gloss_output_layer": "classifier",
}

_PREFIX = r"^(?:module\.)?(?:recognition_network\.)?"
_INPUT_MAP = re.compile(_PREFIX + r"visual_backbone_keypoint\.(left|right|face|body)_input_map\.([01])\.(\w+)$")
_BLOCK = re.compile(_PREFIX + r"visual_backbone_keypoint\.(left|right|face|body)_graph_layers\.(\d+)\.(.+)$")
_HEAD = re.compile(_PREFIX + r"(fuse|left|right|body)_visual_head\.(.+)$")
_OUTSIDE = re.compile(r"^(?:module\.)?(?:translation_network|vl_mapper|text_tokenizer|gloss_tokenizer)\.")
_NORM_OR_CONV = {"0": "conv", "1": "norm"}


def is_reference_state_dict(keys: Iterable[str]) -> bool:
    """Whether ``keys`` name the reference implementation's keypoint network."""
    return any(_BLOCK.match(key) or _INPUT_MAP.match(key) for key in keys)


def convert_reference_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The reference's ``state_dict`` (keys as ``sutwangyan/MSKA`` names them) with our keys.

    The result loads with ``strict=True`` into the paper preset (``examples/configs/mska-slr-paper.toml``
    at the checkpoint's vocabulary size). A key of the recognition network that has no counterpart
    is a :class:`~mska_core.errors.CheckpointError`.
    """
    converted: dict[str, Any] = {}
    constant_attention: dict[str, Any] = {}
    for key, value in state_dict.items():
        if _OUTSIDE.match(key):
            continue
        if match := _INPUT_MAP.match(key):
            stream, index, leaf = match.groups()
            converted[f"branches.{STREAMS[stream]}.keypoint.input_map.{_NORM_OR_CONV[index]}.{leaf}"] = value
        elif match := _BLOCK.match(key):
            stream, depth, rest = match.groups()
            prefix = f"branches.{STREAMS[stream]}.keypoint.blocks.{depth}"
            target = _block_key(rest, key)
            if target is None:
                continue  # a positional-encoding buffer
            if target == "atts":
                constant_attention[f"{prefix}.global_attention"] = value
            elif target == "alpha":
                converted[f"{prefix}.alpha"] = value.reshape(-1)
            elif target == "global_attention":
                converted[f"{prefix}.global_attention"] = value.reshape(value.shape[-3:])
            else:
                converted[f"{prefix}.{target}"] = value
        elif match := _HEAD.match(key):
            head, rest = match.groups()
            target = _head_key(rest, key)
            if target is not None:
                converted[f"heads.{HEADS[head]}.{target}"] = value
        else:
            raise CheckpointError(
                f"key {key!r} is not part of the MSKA reference's recognition network; "
                "is this a checkpoint of sutwangyan/MSKA (keypoint input)?"
            )
    for key, value in constant_attention.items():
        if key in converted:
            converted[key] = converted[key] + value.reshape(value.shape[-3:]).to(converted[key].dtype)
    return converted


def _block_key(rest: str, key: str) -> str | None:
    if rest == "alphas":
        return "alpha"
    if rest == "attention0s":
        return "global_attention"
    if rest == "atts":
        return "atts"
    if rest == "pes.pe":
        return None
    part, _, leaf = rest.partition(".")
    if part == "in_nets" and leaf in ("weight", "bias"):
        return f"qk.{leaf}"
    if part in BLOCK_PARTS:
        index, _, leaf = leaf.partition(".")
        if index in _NORM_OR_CONV and leaf:
            return f"{BLOCK_PARTS[part]}.{_NORM_OR_CONV[index]}.{leaf}"
    raise CheckpointError(f"key {key!r}: no counterpart in the paper preset's attention block")


def _head_key(rest: str, key: str) -> str | None:
    if rest == "pe.pe":
        return None
    part, _, leaf = rest.rpartition(".")
    if part in HEAD_PARTS:
        return f"{HEAD_PARTS[part]}.{leaf}"
    raise CheckpointError(f"key {key!r}: no counterpart in the paper preset's VisualHead")


def to_reference_state_dict(state_dict: Mapping[str, Any], *, prefix: str = "recognition_network.") -> dict[str, Any]:
    """Our paper preset's ``state_dict`` with the reference's key names and shapes (the inverse of
    :func:`convert_reference_state_dict`, without the constant buffers ``atts``, ``pes.pe``, ``pe.pe``)."""
    streams = {ours: theirs for theirs, ours in STREAMS.items()}
    heads = {ours: theirs for theirs, ours in HEADS.items()}
    blocks = {ours: theirs for theirs, ours in BLOCK_PARTS.items()}
    head_parts = {ours: theirs for theirs, ours in HEAD_PARTS.items()}
    parts = {"conv": "0", "norm": "1"}
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        fields = key.split(".")
        if fields[0] == "branches" and fields[2] == "keypoint" and fields[1] in streams:
            stream = streams[fields[1]]
            if fields[3] == "input_map":
                out[f"{prefix}visual_backbone_keypoint.{stream}_input_map.{parts[fields[4]]}.{fields[5]}"] = value
                continue
            if fields[3] == "blocks":
                base = f"{prefix}visual_backbone_keypoint.{stream}_graph_layers.{fields[4]}"
                part = fields[5]
                if part == "alpha":
                    out[f"{base}.alphas"] = value.reshape(1, -1, 1, 1)
                elif part == "global_attention":
                    out[f"{base}.attention0s"] = value.unsqueeze(0)
                elif part == "qk":
                    out[f"{base}.in_nets.{fields[6]}"] = value
                else:
                    out[f"{base}.{blocks[part]}.{parts[fields[6]]}.{fields[7]}"] = value
                continue
        if fields[0] == "heads" and fields[1] in heads:
            out[f"{prefix}{heads[fields[1]]}_visual_head.{head_parts[fields[2]]}.{fields[3]}"] = value
            continue
        raise CheckpointError(f"key {key!r} has no counterpart in the MSKA reference (is this the paper preset?)")
    return out

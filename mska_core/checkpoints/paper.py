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

The translation side of an S2T checkpoint converts on its own (:func:`convert_reference_translation`)
into the ``hf`` text decoder (:class:`mska_core.text.hf.PretrainedDecoder`) on the same mBART:

- ``vl_mapper.mapping.0`` / ``.2`` become ``mapper.project`` / ``mapper.out``;
- ``translation_network.model.*`` (the ``MBartForConditionalGeneration``) becomes ``lm.*``;
- of ``translation_network.gloss_embedding.weight`` (the G2T gloss table) S2T reads two rows, the
  ``</s>`` and source-language glosses, which it appends to every clip's features: those rows become
  ``mapper.suffix`` (their ids come from the reference's ``gloss2ids.pkl``: :func:`suffix_rows`).
"""

from __future__ import annotations

import re
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
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


# -- the S2T translation network ---------------------------------------------------------------------

_MAPPER = re.compile(r"^(?:module\.)?vl_mapper\.mapping\.([02])\.(weight|bias)$")
_LM = re.compile(r"^(?:module\.)?translation_network\.model\.(.+)$")
_GLOSS_TABLE = re.compile(r"^(?:module\.)?translation_network\.gloss_embedding\.weight$")
#: The reference's ``VLMapper.mapping`` indices -> our :class:`~mska_core.text.mapper.VLMapper` parts.
MAPPER_PARTS = {"0": "project", "2": "out"}
#: The gloss the reference's S2T config names as its source language (``GlossTokenizer.src_lang``).
SOURCE_GLOSS = "de_DGS"


def is_reference_translation(keys: Iterable[str]) -> bool:
    """Whether ``keys`` hold the reference's S2T translation side (``vl_mapper.`` and ``translation_network.``)."""
    keys = list(keys)
    return any(_MAPPER.match(k) for k in keys) and any(_LM.match(k) for k in keys)


def read_gloss2ids(path: str | Path) -> dict[str, int]:
    """The reference's ``gloss2ids.pkl`` (``{gloss: id}``), read without running pickled code."""
    from mska_core.checkpoints.files import read_plain_pickle

    table = read_plain_pickle(path)
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in table.items()):
        raise CheckpointError(f"{path}: expected a dict of glosses to ids")
    return table


def suffix_rows(gloss2ids: Mapping[str, int], source_gloss: str = SOURCE_GLOSS) -> tuple[int, int]:
    """The rows of the reference's gloss table that S2T appends to every clip: ``</s>`` and ``source_gloss``."""
    missing = [g for g in ("</s>", source_gloss) if g not in gloss2ids]
    if missing:
        raise CheckpointError(f"the reference's gloss2ids has no {', '.join(map(repr, missing))}; S2T needs both")
    return int(gloss2ids["</s>"]), int(gloss2ids[source_gloss])


def convert_reference_translation(state_dict: Mapping[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The S2T translation side of the reference's ``state_dict`` with the keys of the ``hf`` decoder
    (``mapper.*``, ``lm.*``); ``rows`` are the gloss-table rows of :func:`suffix_rows`. Recognition
    keys are left out (:func:`convert_reference_state_dict` converts them)."""
    converted: dict[str, Any] = {}
    for key, value in state_dict.items():
        if match := _MAPPER.match(key):
            converted[f"mapper.{MAPPER_PARTS[match.group(1)]}.{match.group(2)}"] = value
        elif match := _LM.match(key):
            converted[f"lm.{match.group(1)}"] = value
        elif _GLOSS_TABLE.match(key):
            if max(rows) >= value.shape[0]:
                raise CheckpointError(f"{key}: {value.shape[0]} rows, but the suffix needs rows {list(rows)}")
            converted["mapper.suffix"] = value[list(rows)].clone()
        elif key.startswith(("translation_network.", "vl_mapper.", "module.translation_network.", "module.vl_mapper.")):
            raise CheckpointError(f"key {key!r}: no counterpart in the hf decoder (is this the reference's S2T "
                                  "model with a projection VL mapper?)")
    if "mapper.suffix" not in converted:
        raise CheckpointError("the checkpoint has no translation_network.gloss_embedding.weight (S2T's suffix)")
    return converted


def load_reference_s2t(path: str | Path, *, encoder: Any, decoder: Any, gloss2ids: Mapping[str, int],
                       source_gloss: str = SOURCE_GLOSS, registry: Any = None) -> str:
    """Load the reference's S2T checkpoint ``path`` weight for weight: its recognition network into
    ``encoder`` (the paper preset) through the ``mska-paper`` format, its VL mapper and translation
    network into ``decoder`` (the ``hf`` decoder on the reference's mBART folder), both strictly.
    ``gloss2ids`` is the reference's G2T gloss table (:func:`read_gloss2ids`). Returns the format's name."""
    from mska_core.checkpoints.files import safe_torch_load
    from mska_core.checkpoints.payload import load_checkpoint

    checkpoint = load_checkpoint(path, registry=registry)
    if checkpoint.format != "mska-paper":
        raise CheckpointError(f"{path}: a {checkpoint.format} checkpoint, not the MSKA reference's")
    state = safe_torch_load(path)["model"]
    if not is_reference_translation(state):
        raise CheckpointError(f"{path}: the reference's recognition network only (no vl_mapper., "
                              "translation_network.): an S2G checkpoint, not S2T")
    encoder.load_state_dict(checkpoint.state_dict, strict=True)
    decoder.load_state_dict(convert_reference_translation(state, suffix_rows(gloss2ids, source_gloss)), strict=True)
    return checkpoint.format


def to_reference_translation(decoder_state: Mapping[str, Any], rows: Sequence[int], glosses: int) -> dict[str, Any]:
    """The ``hf`` decoder's ``state_dict`` with the reference's S2T keys (the inverse of
    :func:`convert_reference_translation`): a gloss table of ``glosses`` zero rows but ``rows``."""
    out: dict[str, Any] = {}
    parts = {ours: theirs for theirs, ours in MAPPER_PARTS.items()}
    for key, value in decoder_state.items():
        fields = key.split(".")
        if fields[0] == "mapper" and fields[1] in parts:
            out[f"vl_mapper.mapping.{parts[fields[1]]}.{fields[2]}"] = value
        elif key == "mapper.suffix":
            table = value.new_zeros(glosses, value.shape[1])
            table[list(rows)] = value
            out["translation_network.gloss_embedding.weight"] = table
        elif fields[0] == "lm":
            out[f"translation_network.model.{key[3:]}"] = value
        else:
            raise CheckpointError(f"key {key!r} has no counterpart in the reference's S2T model")
    return out


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

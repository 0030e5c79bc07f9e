"""Pretrained seq2seq language models from local HuggingFace folders: the ``hf`` text decoder.

``[losses.translation] decoder = "hf::PATH"`` names a folder written by ``save_pretrained`` (a
``config.json``, weights as ``model.safetensors`` or ``pytorch_model.bin``, the tokenizer's files):
mBART, T5, Marian, BART or any other ``AutoModelForSeq2SeqLM`` architecture transformers knows. The
recognition head's features reach the model's encoder through a :class:`~mska_core.text.mapper.VLMapper`
as ``inputs_embeds`` with an attention mask (the MSKA paper's S2T model); the model's decoder
translates, under teacher forcing in training and through the model's own ``generate`` at
evaluation.

Loading stays offline and safe: ``from_pretrained(path, local_files_only=True)``, never remote code
(a folder whose config or tokenizer asks for it, through ``auto_map`` or an architecture transformers
does not know, is refused), weights from safetensors, or from ``pytorch_model.bin`` after the
project's bounded pickle check and ``torch.load(weights_only=True)``.

The decoder's options are the keys of ``[losses.translation]`` it reads (:data:`OPTIONS`); the
checkpoint carries the model's config and tokenizer files (:meth:`PretrainedDecoder.artifacts`), so
``mska evaluate``/``mska predict`` rebuild it with the folder gone, its weights from the model's
state dict.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mska_core.errors import ConfigError
from mska_core.text import DecoderRequest
from mska_core.text.mapper import VLMapper

#: The decoder's options (keys of ``[losses.translation]``) and what each does.
OPTIONS: dict[str, str] = {
    "src_lang": "mBART source-language code (de_DE ...): its embedding ends the mapped features",
    "tgt_lang": "mBART target-language code: the first decoder token, forced in generation",
    "dropout": "overrides the model config's dropout (T5: dropout_rate)",
    "attention_dropout": "overrides the model config's attention_dropout",
    "source_suffix": "append </s> (and src_lang) embeddings after the features, as mBART inputs end (default true)",
    "embed_scale": "factor on the mapped features; default sqrt(d_model) for mBART and models that scale "
                   "their token embeddings, else 1",
    "token_map": "a pickle {tokenizer id: model id} for a model whose vocabulary was trimmed (the MSKA "
                 "reference's map_ids.pkl)",
}

#: What ``artifacts()`` returns under ``kind``.
KIND = "hf"
#: Weight files in the order they are preferred.
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
INSTALL = "pip install 'mska-core[transformers]'"


def build(request: DecoderRequest) -> PretrainedDecoder:
    """A :class:`PretrainedDecoder` from the folder ``request.payload`` (new model) or from
    ``request.stored`` (a checkpoint's artefacts; the folder is not read)."""
    options = check_options(request.options, where=f"hf::{request.payload}")
    transformers = _import_transformers(request.payload)
    if request.stored is not None:
        lm, tokenizer = _from_stored(transformers, request.stored)
        source = str(request.stored.get("source", request.payload))
        stored_map = request.stored.get("token_map")
        token_map = {int(a): int(b) for a, b in stored_map.tolist()} if stored_map is not None else None
    else:
        if not request.payload:
            raise ConfigError("losses.translation.decoder: 'hf' needs a folder: decoder = \"hf::PATH\"")
        lm, tokenizer = _from_folder(transformers, Path(request.payload).expanduser(), options)
        source = request.payload
        token_map = read_token_map(options["token_map"], lm) if "token_map" in options else None
    return PretrainedDecoder(lm, tokenizer, request.memory_dim, options, source=source,
                             fresh=request.stored is None, token_map=token_map)


def read_token_map(path: str, lm: nn.Module) -> dict[int, int]:
    """``{tokenizer id: model id}`` from a pickle of plain data (read without running anything), every
    model id within the LM's vocabulary."""
    from mska_core.checkpoints.files import read_plain_pickle

    table = read_plain_pickle(Path(path).expanduser())
    vocab = int(lm.config.vocab_size)
    if not isinstance(table, dict) or not all(isinstance(k, int) and isinstance(v, int) for k, v in table.items()):
        raise ConfigError(f"losses.translation.token_map: {path} is not a dict of token ids to model ids")
    outside = [v for v in table.values() if not 0 <= v < vocab]
    if outside:
        raise ConfigError(f"losses.translation.token_map: {path} maps to id {outside[0]}, outside the model's "
                          f"vocabulary of {vocab}")
    return table


def check_options(options: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """``options`` with their types checked; an unknown key is a :class:`ConfigError` listing the known."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"losses.translation: {', '.join(unknown)} is not an option of the decoder {where}; "
                          f"its options: {', '.join(OPTIONS)}")
    checked = dict(options)
    for key in ("src_lang", "tgt_lang"):
        if key in checked and not isinstance(checked[key], str):
            raise ConfigError(f"losses.translation.{key}: expected a language code (a string), got {checked[key]!r}")
    for key in ("dropout", "attention_dropout"):
        value = checked.get(key)
        if key in checked and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1):
            raise ConfigError(f"losses.translation.{key}: expected a probability in [0, 1), got {value!r}")
    if "source_suffix" in checked and not isinstance(checked["source_suffix"], bool):
        raise ConfigError(f"losses.translation.source_suffix: expected true or false, got {checked['source_suffix']!r}")
    if "token_map" in checked and not isinstance(checked["token_map"], str):
        raise ConfigError(f"losses.translation.token_map: expected a file path, got {checked['token_map']!r}")
    scale = checked.get("embed_scale")
    if "embed_scale" in checked and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0):
        raise ConfigError(f"losses.translation.embed_scale: expected a positive number, got {scale!r}")
    return checked


# -- loading ----------------------------------------------------------------------------------------


def _import_transformers(payload: str | None) -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"decoder hf::{payload}: the transformers library is not installed; {INSTALL}") from None
    return transformers


def read_folder_config(folder: Path) -> dict[str, Any]:
    """The folder's ``config.json`` after the checks made before transformers reads anything: the
    folder exists, it is a seq2seq model transformers knows, and nothing asks for remote code."""
    where = f"decoder hf::{folder}"
    if not folder.is_dir():
        raise ConfigError(f"{where}: no such folder; give a local HuggingFace model folder "
                          "(config.json, model.safetensors, tokenizer files), e.g. one written by save_pretrained")
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"{where}: no config.json in the folder; is it a HuggingFace model folder "
                          "(written by save_pretrained)?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: config.json is not readable JSON ({exc})") from None
    for name in ("config.json", "tokenizer_config.json"):
        file = folder / name
        asks = "auto_map" in (config if name == "config.json" else _json_or_empty(file))
        if asks:
            raise ConfigError(f"{where}: {name} asks for remote code (auto_map); mska never runs code from a "
                              "model folder: use an architecture transformers ships")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ConfigError(f"{where}: model_type {model_type!r} is not an architecture transformers ships (a custom "
                          "architecture needs remote code, which mska never runs)")
    if model_type not in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(f"{where}: {model_type!r} is not a seq2seq (encoder-decoder) model; use an mBART, T5, "
                          "Marian or BART folder, or another AutoModelForSeq2SeqLM architecture")
    return config


def _json_or_empty(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _weights(folder: Path) -> bool:
    """``True`` for safetensors weights; ``False`` for pickled ones, after the bounded check."""
    if any((folder / name).is_file() for name in SAFETENSORS):
        return True
    from mska_core.checkpoints.files import check_pickle_bounds, imported_globals, pickle_bytes, unsafe_globals
    from mska_core.errors import UnsafeCheckpointError

    for name in PICKLES:
        if (folder / name).is_file():
            shards = [name] if not name.endswith(".json") else sorted(set(_json_or_empty(folder / name)
                                                                            .get("weight_map", {}).values()))
            for shard in shards:
                path = folder / shard
                check_pickle_bounds(path)
                bad = unsafe_globals(imported_globals(pickle_bytes(path)))
                if bad:
                    raise UnsafeCheckpointError(
                        f"decoder hf::{folder}: {shard} refused: its pickle would import {', '.join(bad[:3])}, "
                        "which is not a tensor or plain data; nothing from it was run (save the model with "
                        "safetensors from code you trust)")
            return False
    raise ConfigError(f"decoder hf::{folder}: no weights in the folder ({', '.join(SAFETENSORS + PICKLES)})")


def _from_folder(transformers: Any, folder: Path, options: Mapping[str, Any]) -> tuple[nn.Module, Any]:
    read_folder_config(folder)
    where = f"decoder hf::{folder}"
    safetensors = _weights(folder)
    try:
        with _quiet(transformers):
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            _override_dropout(config, options, where)
            lm = transformers.AutoModelForSeq2SeqLM.from_pretrained(
                folder, config=config, local_files_only=True, trust_remote_code=False, use_safetensors=safetensors)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                                   trust_remote_code=False)
    except ConfigError:
        raise
    except Exception as exc:  # transformers' own errors: one line naming the folder
        raise ConfigError(f"{where}: transformers could not load it: {_first_line(exc)}") from None
    return lm, tokenizer


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' progress bars and info lines off while loading (stderr belongs to mska)."""
    logging = transformers.utils.logging
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _override_dropout(config: Any, options: Mapping[str, Any], where: str) -> None:
    if "dropout" in options:
        names = [n for n in ("dropout", "dropout_rate") if hasattr(config, n)]
        if not names:
            raise ConfigError(f"losses.translation.dropout: the {config.model_type} model in {where} has no dropout setting")
        setattr(config, names[0], float(options["dropout"]))
    if "attention_dropout" in options:
        if not hasattr(config, "attention_dropout"):
            raise ConfigError(f"losses.translation.attention_dropout: the {config.model_type} model in {where} has "
                              "no attention_dropout setting; leave it out")
        config.attention_dropout = float(options["attention_dropout"])


def _from_stored(transformers: Any, stored: Mapping[str, Any]) -> tuple[nn.Module, Any]:
    if stored.get("kind") != KIND:
        raise ConfigError(f"the checkpoint's text decoder artefacts are of kind {stored.get('kind')!r}, not {KIND!r}")
    config_dict = dict(stored["config"])
    config = transformers.AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    with _quiet(transformers):
        lm = transformers.AutoModelForSeq2SeqLM.from_config(config)  # weights follow from the model's state dict
        if "generation_config" in stored:
            lm.generation_config = transformers.GenerationConfig.from_dict(dict(stored["generation_config"]))
    with tempfile.TemporaryDirectory(prefix="mska-tokenizer-") as folder:
        for name, content in stored["tokenizer_files"].items():
            target = Path(folder) / Path(name).name
            if isinstance(content, str):
                target.write_text(content, encoding="utf-8")
            else:
                target.write_bytes(content.numpy().tobytes())
        with _quiet(transformers):
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                                   trust_remote_code=False)
    return lm, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- the tokenizer ----------------------------------------------------------------------------------


class PretrainedTokenizer:
    """The model's own tokenizer behind :class:`mska_core.text.TextTokenizer`.

    Targets are the text's tokens and ``</s>`` (the model's own target format; for mBART the
    trailing language code is left out, as the MSKA reference does); the decoder's inputs are the
    targets shifted right behind ``start_id``: the target-language code for mBART (``tgt_lang``), the
    config's ``decoder_start_token_id`` otherwise. With a ``token_map`` (a trimmed vocabulary), ids
    are the model's: a token the map lacks becomes the model's ``<unk>``.
    """

    def __init__(self, tokenizer: Any, *, mbart: bool, token_map: dict[int, int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.mbart = mbart
        self.token_map = token_map
        self.reverse = {v: k for k, v in token_map.items()} if token_map else None
        self.unk_id = self.model_id(tokenizer.unk_token_id) if tokenizer.unk_token_id is not None else None
        self.pad_id = self.model_id(tokenizer.pad_token_id)
        self.eos_id = self.model_id(tokenizer.eos_token_id)
        self.start_id = self.pad_id  # set by the decoder

    def model_id(self, token_id: int) -> int:
        """The model's id of the tokenizer's ``token_id``."""
        if self.token_map is None:
            return int(token_id)
        if token_id in self.token_map:
            return self.token_map[token_id]
        return self.token_map[self.tokenizer.unk_token_id]

    def __len__(self) -> int:
        return max(self.token_map.values()) + 1 if self.token_map else len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        """Target ids of ``text``, ending with ``</s>``."""
        if self.mbart:
            ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
        else:
            ids = list(self.tokenizer(text_target=text)["input_ids"])
            if not ids or ids[-1] != self.tokenizer.eos_token_id:
                ids.append(self.tokenizer.eos_token_id)
        return [self.model_id(i) for i in ids]

    def teacher_forcing(self, text: str) -> tuple[list[int], list[int]]:
        target = self.encode(text)
        return [self.start_id, *target[:-1]], target

    def decode(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.reverse is not None:
            ids = [self.reverse.get(i, self.tokenizer.unk_token_id) for i in ids]
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()


# -- the decoder ------------------------------------------------------------------------------------


class PretrainedDecoder(nn.Module):
    """A seq2seq LM (``lm``) reading a recognition head's features through ``mapper`` (:class:`VLMapper`).

    ``forward(memory [B, K, H], memory_lengths [B], text_input [B, L]) -> logits [B, L, V]``;
    ``generate`` decodes through ``lm.generate`` (beams, length penalty) from ``tokenizer.start_id``.
    """

    def __init__(self, lm: nn.Module, tokenizer: Any, memory_dim: int, options: Mapping[str, Any], *,
                 source: str | None = None, fresh: bool = True, token_map: dict[int, int] | None = None) -> None:
        super().__init__()
        config = lm.config
        self.options = dict(options)
        self.source = source
        mbart = config.model_type == "mbart"
        where = f"decoder hf::{source}"
        self.tokenizer = PretrainedTokenizer(tokenizer, mbart=mbart, token_map=token_map)
        start_id = config.decoder_start_token_id  # the model's id
        if mbart and "tgt_lang" in options:
            start_id = self.tokenizer.model_id(_token_id(tokenizer, options["tgt_lang"], "tgt_lang", where))
        self.tokenizer.start_id = int(start_id) if start_id is not None else self.tokenizer.pad_id
        suffix_tokens: list[int] = []
        if options.get("source_suffix", True):
            suffix_tokens = [self.tokenizer.eos_id]
            if "src_lang" in options:
                suffix_tokens.append(self.tokenizer.model_id(_token_id(tokenizer, options["src_lang"], "src_lang", where)))
        d_model = int(lm.get_input_embeddings().weight.shape[1])  # the encoder's input width (d_model)
        scale = options.get("embed_scale")
        if scale is None:
            scale = math.sqrt(d_model) if mbart or getattr(config, "scale_embedding", False) else 1.0
        self.mapper = VLMapper(memory_dim, d_model, suffix=len(suffix_tokens), scale=float(scale))
        self.lm = lm
        if fresh and suffix_tokens:
            table = lm.get_input_embeddings().weight  # [V, d], before the model's own scale
            self.mapper.init_suffix(table[suffix_tokens].detach())

    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor, text_input: torch.Tensor) -> torch.Tensor:
        embeds, mask = self.mapper(memory, memory_lengths)
        # right-padded inputs under the causal mask: no position reads the padding after it
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=text_input,
                      use_cache=False, return_dict=True)
        return out.logits  # [B, L, V]

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, memory_lengths: torch.Tensor, *, max_length: int, beam_size: int,
                 length_penalty: float) -> list[str]:
        embeds, mask = self.mapper(memory, memory_lengths)
        start = torch.full((memory.shape[0], 1), self.tokenizer.start_id, dtype=torch.long, device=memory.device)
        # decoder_start_token_id = the start token, else generate puts the config's in front of it (mBART:
        # </s> de_DE ...) unlike training; the rest (early stopping, a forced last </s>) as the model's
        # own generation config says
        sequences = self.lm.generate(
            inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=start, max_new_tokens=max_length,
            num_beams=beam_size, length_penalty=length_penalty, do_sample=False,
            decoder_start_token_id=self.tokenizer.start_id,
        )
        return [self.tokenizer.decode(row[1:].tolist()) for row in sequences]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"mapper": list(self.mapper.parameters()), "lm": list(self.lm.parameters())}

    def artifacts(self) -> dict[str, Any]:
        """The LM's config and generation config, the tokenizer's files (text as str, binary files as
        uint8 tensors) and the token map: enough to rebuild this decoder without its folder."""
        config = json.loads(self.lm.config.to_json_string(use_diff=False))
        with tempfile.TemporaryDirectory(prefix="mska-tokenizer-") as folder:
            self.tokenizer.tokenizer.save_pretrained(folder)
            files: dict[str, Any] = {}
            for path in sorted(Path(folder).iterdir()):
                data = path.read_bytes()
                try:
                    files[path.name] = data.decode("utf-8")
                except UnicodeDecodeError:
                    files[path.name] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        generation = json.loads(self.lm.generation_config.to_json_string(use_diff=False))
        stored: dict[str, Any] = {"kind": KIND, "source": self.source, "config": config,
                                  "generation_config": generation, "tokenizer_files": files}
        if self.tokenizer.token_map is not None:
            stored["token_map"] = torch.tensor(sorted(self.tokenizer.token_map.items()), dtype=torch.long)  # [N, 2]
        return stored


def _token_id(tokenizer: Any, token: str, key: str, where: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError(f"losses.translation.{key}: {token!r} is not a token of the tokenizer in {where}; "
                          "mBART language codes look like de_DE, en_XX")
    return int(token_id)

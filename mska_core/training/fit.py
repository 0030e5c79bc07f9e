"""Whether a checkpoint fits the whole model a config builds (``mska inspect PATH --against CONFIG``).

The model is built as ``mska train`` builds it: the encoder's streams and heads, and the translation
decoder when the config trains translation. Its vocabulary sizes come from ``model.vocab_size``
when the config sets it, else from the config's data (the training split's vocabularies, as
``mska train`` makes them); when the data cannot be read the checkpoint's own sizes are used and the
check says so.

The checkpoint is then compared part by part — each stream (``encoder.branches.<stream>``), each
head (``encoder.heads.<head>``), the decoder — and each part gets one verdict:

- ``loads``: every key is there with the model's shape;
- ``loads with N keys resampled``: crop-backbone keys of another shape that the architecture's
  conversion resamples to the model's (a ViT position embedding at another image size);
- ``does not fit``: keys missing, unexpected or of another shape (the first ones are named);
- ``not in checkpoint`` / ``not in config``: a part only one side has.

A whole model (our ``model`` and ``training-state`` payloads, a converted MSKA paper checkpoint)
must supply every part; an export (a crop backbone, a keypoint encoder) is checked against the
streams it is meant for (its ``stream``: a stream or a weight group), and the other parts are listed
as not in the checkpoint without counting against it. Beside the parts, the report checks the gloss
and text vocabulary sizes, the keypoint layout and each stream's joint count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.checkpoints.encoder_state import KeyMismatch, compare

LOADS, RESAMPLED, DOES_NOT_FIT = "loads", "loads with resampling", "does not fit"
NOT_IN_CHECKPOINT, NOT_IN_CONFIG = "not in checkpoint", "not in config"
_SHOWN = 2


@attrs.frozen
class PartFit:
    """The verdict for one part of the model (a stream, a head, the decoder)."""

    part: str  # "stream face", "head fuse", "decoder"
    target: str  # its module prefix in the model, "encoder.branches.face"
    status: str  # LOADS, RESAMPLED, DOES_NOT_FIT, NOT_IN_CHECKPOINT or NOT_IN_CONFIG
    tensors: int = 0  # tensors the checkpoint has for it
    resampled: tuple[str, ...] = ()
    mismatch: KeyMismatch = attrs.field(factory=KeyMismatch)
    note: str | None = None
    counts: bool = True  # whether NOT_IN_CHECKPOINT counts against the checkpoint (whole models)

    @property
    def ok(self) -> bool:
        if self.status == NOT_IN_CHECKPOINT:
            return not self.counts
        return self.status in (LOADS, RESAMPLED)

    @property
    def verdict(self) -> str:
        """The verdict as the report prints it."""
        if self.status == RESAMPLED:
            count = len(self.resampled)
            return f"loads with {count} key{'s' if count != 1 else ''} resampled"
        return self.status

    def detail(self) -> str:
        """What does not fit, first differing shapes first, keys relative to the part."""
        if self.note:
            return self.note
        if self.status == RESAMPLED:
            return ", ".join(_relative(k, self.target) for k in self.resampled[:_SHOWN]) + _more(self.resampled)
        m = self.mismatch
        parts = []
        if m.mismatched:
            shown = "; ".join(
                f"{_relative(k, self.target)}: checkpoint {_shape(found)}, config {_shape(expected)}"
                for k, expected, found in m.mismatched[:_SHOWN]
            )
            parts.append(f"{len(m.mismatched)} of another shape ({shown}{_more(m.mismatched)})")
        for label, keys in (("missing", m.missing), ("unexpected", m.unexpected)):
            if keys:
                shown = ", ".join(_relative(k, self.target) for k in keys[:_SHOWN])
                parts.append(f"{len(keys)} {label} ({shown}{_more(keys)})")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part, "target": self.target, "status": self.status, "verdict": self.verdict,
            "ok": self.ok, "tensors": self.tensors, "resampled": list(self.resampled), "detail": self.detail(),
            **self.mismatch.as_dict(),
        }


@attrs.frozen
class Check:
    """One property compared between the checkpoint and the config (vocabulary, layout, joints)."""

    name: str
    checkpoint: Any
    config: Any
    ok: bool | None  # None: could not be checked (see note)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": self.checkpoint, "config": self.config, "ok": self.ok,
                "note": self.note}


@attrs.frozen
class FitReport:
    """Every part and every check of one ``--against``; ``ok`` when nothing fails."""

    config: str
    source: str  # what the checkpoint is, e.g. "runs/tiny/best.pt (mska, model)"
    holds: str  # "whole model" or what an export holds
    parts: tuple[PartFit, ...] = ()
    checks: tuple[Check, ...] = ()

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts) and all(c.ok is not False for c in self.checks)

    @property
    def failing(self) -> list[str]:
        """The parts and checks that fail, by name."""
        return [p.part for p in self.parts if not p.ok] + [c.name for c in self.checks if c.ok is False]

    def __getitem__(self, part: str) -> PartFit:
        for entry in self.parts:
            if entry.part == part:
                return entry
        raise KeyError(part)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config, "source": self.source, "holds": self.holds, "ok": self.ok,
            "failing": self.failing, "parts": [p.as_dict() for p in self.parts],
            "checks": [c.as_dict() for c in self.checks],
        }


# -- the check ------------------------------------------------------------------------------------


def check_fit(path: str | Path, config_path: str | Path, *, select: str | None = None,
              overrides: Sequence[str] = (), registry: Any = None) -> FitReport:
    """Compare the checkpoint at ``path`` with the model that the config at ``config_path`` builds,
    after the ``--set`` ``overrides`` (``"dotted.key=VALUE"``)."""
    from mska_core.checkpoints.payload import load_checkpoint
    from mska_core.config import load_config

    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    config = load_config(config_path, overrides)
    checkpoint = load_checkpoint(path, select=select, registry=registry)
    return fit_report(checkpoint, config, config_name=str(config_path), registry=registry)


def fit_report(checkpoint: Any, config: Any, *, config_name: str = "config", registry: Any) -> FitReport:
    """:func:`check_fit` for a loaded :class:`~mska_core.checkpoints.Checkpoint` and a resolved config."""
    from mska_core.checkpoints.encoder_state import BACKBONE, MODEL, payload_holds

    state = dict(checkpoint.state_dict)
    gloss, text = _checkpoint_vocabularies(checkpoint.metadata, state)
    sizes = _config_vocabularies(config, gloss=gloss, text=text, registry=registry)
    model = _build(config, sizes, registry, _checkpoint_decoder(checkpoint.metadata, text))
    if sizes.texts is not None and model.decoder is not None:
        sizes = attrs.evolve(sizes, text=len(model.decoder.tokenizer))
    source = checkpoint.describe()
    holds = payload_holds(checkpoint)
    if holds == MODEL or any(k.startswith(("encoder.", "decoder.")) for k in state):
        parts = _whole_model_parts(model, _model_keys(state), registry)
        holds = MODEL
    else:
        parts = _export_parts(model, checkpoint, registry)
    checks = _vocabulary_checks(sizes, gloss, text, parts, model)
    if holds != BACKBONE:  # an image backbone has no joints: the layout is no concern of it
        checks += _layout_checks(checkpoint, config, model, parts)
    return FitReport(config_name, source, holds, tuple(parts), tuple(checks))


# -- vocabularies ----------------------------------------------------------------------------------


@attrs.frozen
class _Sizes:
    gloss: int
    gloss_from: str | None  # "model.vocab_size", "the data", or None (not known: the checkpoint's used)
    text: int | None  # None: the config trains no translation
    text_from: str | None
    unread: str = ""  # why the data could not be read
    texts: tuple[str, ...] | None = None  # the training split's translations (the decoder's tokenizer is fitted on them)


def _checkpoint_vocabularies(metadata: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
    from mska_core.checkpoints.inspector import vocabulary_size

    gloss = vocabulary_size(metadata.get("vocabularies"), "gloss")
    text = vocabulary_size(metadata.get("vocabularies"), "text")
    if gloss is None:
        rows = [v.shape[0] for k, v in state.items() if _is_classifier(k)]
        gloss = rows[0] if rows else None
    if text is None:
        embed = next((v for k, v in state.items() if k.endswith("decoder.embed.weight")), None)
        text = int(embed.shape[0]) if embed is not None else None
    return (int(gloss) if gloss is not None else None), text


def _is_classifier(key: str) -> bool:
    return key.endswith(".classifier.weight") and (key.startswith("heads.") or ".heads." in key)


def _config_vocabularies(config: Any, *, gloss: int | None, text: int | None, registry: Any) -> _Sizes:
    translation = "translation" in config.losses and config.losses["translation"].weight > 0
    # The data is read only when the checkpoint has something its sizes decide (heads, a decoder).
    need_data = (gloss is not None and config.model.vocab_size is None) or (text is not None and translation)
    data_gloss = None
    texts: tuple[str, ...] | None = None
    unread = ""
    if need_data:
        try:
            from mska_core.data.datasets import load_corpus
            from mska_core.data.vocab import Vocabularies

            layout = registry.layouts.get(config.model.layout)
            corpus = load_corpus(config.data, layout=layout.name, num_joints=layout.num_joints, registry=registry)
            vocabularies = Vocabularies.from_samples(corpus.train)
            data_gloss, texts = len(vocabularies.gloss), tuple(sample.text for sample in corpus.train)
        except Exception as exc:  # noqa: BLE001 - any failure to read the data only leaves sizes unchecked
            unread = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if config.model.vocab_size is not None:
        g, g_from = config.model.vocab_size, "model.vocab_size"
    elif data_gloss is not None:
        g, g_from = data_gloss, "the data"
    else:
        g, g_from = gloss or 1, None
    if not translation:
        t, t_from = None, None
    elif texts is not None:
        t, t_from = 0, "the data"  # the size of the tokenizer fitted on them, once the model is built
    else:
        t, t_from = text or 8, None
    return _Sizes(g, g_from, t, t_from, unread, texts if translation else None)


def _vocabulary_checks(sizes: _Sizes, gloss: int | None, text: int | None, parts: list[PartFit],
                       model: Any) -> list[Check]:
    checks = []
    heads = [p for p in parts if p.part.startswith("head ") and p.status != NOT_IN_CHECKPOINT]
    if gloss is not None and heads:
        if sizes.gloss_from is None:
            checks.append(Check("gloss vocabulary", gloss, None, None,
                                f"the config takes it from its data, which could not be read ({sizes.unread})"))
        else:
            bad = [p.part.split(" ", 1)[1] for p in heads
                   if any(k.endswith("classifier.weight") for k, _, _ in p.mismatch.mismatched)]
            ok = gloss == sizes.gloss
            note = f"from {sizes.gloss_from}"
            if not ok:
                names = ", ".join(bad) or ", ".join(model.encoder.heads)
                note += f"; the classifiers of heads {names} do not fit"
            checks.append(Check("gloss vocabulary", gloss, sizes.gloss, ok, note))
    has_decoder = any(p.part == "decoder" and p.status != NOT_IN_CHECKPOINT for p in parts)
    if text is not None and has_decoder:
        if sizes.text is None:
            checks.append(Check("text vocabulary", text, None, False,
                                "the config trains no translation: the checkpoint's decoder has no place"))
        elif sizes.text_from is None:
            checks.append(Check("text vocabulary", text, None, None,
                                f"the config takes it from its data, which could not be read ({sizes.unread})"))
        else:
            ok = text == sizes.text
            note = f"from {sizes.text_from}" + ("" if ok else "; the decoder's embedding and output do not fit")
            checks.append(Check("text vocabulary", text, sizes.text, ok, note))
    return checks


# -- the model --------------------------------------------------------------------------------------


def _checkpoint_decoder(metadata: Mapping[str, Any], text: int | None) -> dict[str, Any] | None:
    """The checkpoint's ``text_decoder`` entry, or one made of an earlier version's word vocabulary."""
    entry = metadata.get("text_decoder")
    if isinstance(entry, Mapping) and isinstance(entry.get("artifacts"), Mapping):
        return dict(entry)
    vocabularies = metadata.get("vocabularies")
    words = vocabularies.get("text") if isinstance(vocabularies, Mapping) else None
    if isinstance(words, Mapping) and isinstance(words.get("tokens"), (list, tuple)):
        return {"name": "mska", "artifacts": {"tokenizer": {"kind": "words", "tokens": list(words["tokens"])}}}
    return None


def _build(config: Any, sizes: _Sizes, registry: Any, stored: dict[str, Any] | None) -> Any:
    """The model ``mska train`` would build for ``config``: the gloss vocabulary at ``sizes.gloss``,
    the text decoder fitted on the data's translations, or, when they could not be read, rebuilt from
    the checkpoint's own (``stored``) or a word vocabulary of ``sizes.text`` placeholders."""
    from mska_core.data.vocab import GLOSS_SPECIALS, Vocabularies, Vocabulary
    from mska_core.text import split_decoder_name
    from mska_core.text.tokenizers import BOS, EOS, PAD, UNK
    from mska_core.training.model import build_model

    # Only the size matters for shapes; the tokens are placeholders.
    extra = [f"<gloss {i}>" for i in range(max(0, sizes.gloss - len(GLOSS_SPECIALS)))]
    vocabularies = Vocabularies(Vocabulary([*GLOSS_SPECIALS, *extra], GLOSS_SPECIALS))
    losses = {}
    if sizes.text is None:
        return build_model(config, vocabularies, registry=registry, losses=losses)
    translation = registry.losses.get("translation").build(**config.losses["translation"].options)
    losses["translation"] = translation
    if sizes.texts is not None:
        return build_model(config, vocabularies, registry=registry, losses=losses, texts=sizes.texts)
    same_decoder = stored is not None and split_decoder_name(str(stored.get("name")))[0] == \
        split_decoder_name(translation.decoder_name)[0]
    if not same_decoder:
        words = [PAD, BOS, EOS, UNK] + [f"<word {i}>" for i in range(max(0, sizes.text - 4))]
        stored = {"name": "mska", "artifacts": {"tokenizer": {"kind": "words", "tokens": words}}}
    return build_model(config, vocabularies, registry=registry, losses=losses, stored=stored)


def _model_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """A whole model's keys in the trained model's naming (``encoder.`` before encoder-level keys)."""
    if any(k.startswith(("encoder.", "decoder.")) for k in state):
        return dict(state)
    out = {}
    for key, value in state.items():
        if ".branches." in key and not key.startswith("branches."):
            key = key[key.index("branches."):]
        elif ".heads." in key and not key.startswith("heads."):
            key = key[key.index("heads."):]
        out[f"encoder.{key}"] = value
    return out


def _part_of(key: str) -> tuple[str, str]:
    """``(part name, module prefix)`` of a model key."""
    fields = key.split(".")
    if fields[0] == "encoder" and len(fields) > 2 and fields[1] == "branches":
        return f"stream {fields[2]}", f"encoder.branches.{fields[2]}"
    if fields[0] == "encoder" and len(fields) > 2 and fields[1] == "heads":
        return f"head {fields[2]}", f"encoder.heads.{fields[2]}"
    if fields[0] == "decoder":
        return "decoder", "decoder"
    return "other", ""


def _whole_model_parts(model: Any, state: dict[str, Any], registry: Any) -> list[PartFit]:
    expected = model.state_dict()
    groups: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    for key, value in expected.items():
        part, prefix = _part_of(key)
        groups.setdefault(part, (prefix, {}, {}))[1][key] = value
    for key, value in state.items():
        part, prefix = _part_of(key)
        groups.setdefault(part, (prefix, {}, {}))[2][key] = value
    parts = []
    for part, (prefix, want, have) in _ordered(groups):
        if not have:
            parts.append(PartFit(part, prefix, NOT_IN_CHECKPOINT, note=f"{len(want)} tensors in the model"))
            continue
        if not want:
            parts.append(PartFit(part, prefix, NOT_IN_CONFIG, tensors=len(have),
                                 note=f"{len(have)} tensors the config's model has no place for"))
            continue
        have, resampled = _resample_backbone(model, part, prefix, have, want, registry)
        mismatch = compare(want, have)
        status = DOES_NOT_FIT if not mismatch.ok else RESAMPLED if resampled else LOADS
        parts.append(PartFit(part, prefix, status, tensors=len(have), resampled=resampled, mismatch=mismatch))
    return parts


def _ordered(groups: dict[str, Any]) -> list[tuple[str, Any]]:
    rank = {"stream": 0, "head": 1, "decoder": 2, "other": 3}
    return sorted(groups.items(), key=lambda item: rank[item[0].split(" ", 1)[0]])


def _resample_backbone(model: Any, part: str, prefix: str, have: dict[str, Any], want: Mapping[str, Any],
                       registry: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Run a stream's crop-backbone keys through its architecture's conversion; return the converted
    keys and those whose shape the conversion changed to the model's."""
    if not part.startswith("stream "):
        return have, ()
    crop = getattr(model.encoder.branches[part.split(" ", 1)[1]], "crop", None)
    arch = getattr(getattr(crop, "backbone", None), "arch", None)
    base = f"{prefix}.crop.backbone."
    sub = {k[len(base):]: v for k, v in have.items() if k.startswith(base)}
    if not sub or not arch or arch not in registry.backbone_archs:
        return have, ()
    img_size = (getattr(crop.backbone, "arch_config", None) or {}).get("img_size")
    try:
        converted = registry.backbone_archs.get(arch).convert_state_dict(sub, img_size=img_size)
    except Exception:  # noqa: BLE001 - an unconvertible backbone is reported by the key comparison
        return have, ()
    resampled = tuple(
        base + k for k, v in converted.items()
        if k in sub and tuple(sub[k].shape) != tuple(v.shape) and base + k in want
        and tuple(want[base + k].shape) == tuple(v.shape)
    )
    rest = {k: v for k, v in have.items() if not k.startswith(base)}
    return {**rest, **{base + k: v for k, v in converted.items()}}, resampled


def _export_parts(model: Any, checkpoint: Any, registry: Any) -> list[PartFit]:
    """Parts for an export: the streams it is meant for, through the encoder-state check."""
    from mska_core.checkpoints.encoder_state import BACKBONE, check_mska_encoder_state

    encoder = model.encoder
    targets = target_streams(encoder, checkpoint)
    report = check_mska_encoder_state(encoder, streams={s: checkpoint for s in targets}, registry=registry)
    parts = []
    for stream in encoder.stream_names:
        prefix = f"encoder.branches.{stream}"
        if stream not in targets:
            parts.append(PartFit(f"stream {stream}", prefix, NOT_IN_CHECKPOINT, counts=False))
            continue
        entry = report[stream]
        target = f"encoder.{entry.target}"
        if entry.error:
            parts.append(PartFit(f"stream {stream}", target, DOES_NOT_FIT, tensors=entry.tensors, note=entry.error))
            continue
        resampled: tuple[str, ...] = ()
        if entry.holds == BACKBONE and entry.mismatch.ok:
            want = _module(encoder, entry.target).state_dict()
            resampled = tuple(
                f"{target}.{k}" for k, v in checkpoint.state_dict.items()
                if k in want and tuple(v.shape) != tuple(want[k].shape)
            )
        status = DOES_NOT_FIT if not entry.mismatch.ok else RESAMPLED if resampled else LOADS
        mismatch = KeyMismatch(
            tuple(f"{target}.{k}" for k in entry.mismatch.missing),
            tuple(f"{target}.{k}" for k in entry.mismatch.unexpected),
            tuple((f"{target}.{k}", e, f) for k, e, f in entry.mismatch.mismatched),
        )
        parts.append(PartFit(f"stream {stream}", target, status, tensors=entry.tensors, resampled=resampled,
                             mismatch=mismatch))
    for head in encoder.heads:
        parts.append(PartFit(f"head {head}", f"encoder.heads.{head}", NOT_IN_CHECKPOINT, counts=False))
    if model.decoder is not None:
        parts.append(PartFit("decoder", "decoder", NOT_IN_CHECKPOINT, counts=False))
    return parts


def target_streams(encoder: Any, checkpoint: Any) -> list[str]:
    """The streams a checkpoint is meant for: its ``stream`` (a name or weight group), else all."""
    names = list(encoder.stream_names)
    stream = checkpoint.metadata.get("stream")
    if stream:
        chosen = [s for s in names if s == stream or encoder.specs[s].weight_group == stream]
        if chosen:
            return chosen
    return names


def _module(root: Any, dotted: str) -> Any:
    module = root
    for name in dotted.split("."):
        module = getattr(module, name) if not isinstance(module, Mapping) else module[name]
    return module


# -- layout and joints -------------------------------------------------------------------------------


def _layout_checks(checkpoint: Any, config: Any, model: Any, parts: list[PartFit]) -> list[Check]:
    checks = []
    stored = checkpoint.metadata.get("config")
    stored_model = stored.get("model") if isinstance(stored, Mapping) else None
    layout = stored_model.get("layout") if isinstance(stored_model, Mapping) else None
    if layout is not None:
        ok = layout == config.model.layout
        checks.append(Check("layout", layout, config.model.layout, ok,
                            "" if ok else "keypoint indices differ between the layouts"))
    offered = {p.part.split(" ", 1)[1] for p in parts if p.part.startswith("stream ") and p.status != NOT_IN_CHECKPOINT}
    for stream in model.encoder.stream_names:
        if stream not in offered:
            continue
        expected = _joints(model.encoder.state_dict(), f"branches.{stream}.keypoint.")
        found = _checkpoint_joints(checkpoint, stream)
        if expected is None or found is None:
            continue
        ok = expected == found
        checks.append(Check(f"joints {stream}", found, expected, ok,
                            "" if ok else f"the config's layout gives stream {stream!r} {expected} joints"))
    return checks


def _joints(state: Mapping[str, Any], prefix: str) -> int | None:
    key = f"{prefix}blocks.0.global_attention"
    return int(state[key].shape[-1]) if key in state else None


def _checkpoint_joints(checkpoint: Any, stream: str) -> int | None:
    state = checkpoint.state_dict
    for prefix in (f"encoder.branches.{stream}.keypoint.", f"branches.{stream}.keypoint.", "keypoint.", ""):
        found = _joints(state, prefix)
        if found is not None:
            return found
    return None


def _relative(key: str, prefix: str) -> str:
    return key[len(prefix) + 1:] if prefix and key.startswith(prefix + ".") else key


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _more(items: tuple[Any, ...]) -> str:
    return f", +{len(items) - _SHOWN} more" if len(items) > _SHOWN else ""

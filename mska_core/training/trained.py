"""Loading a fine-tuned model back from ``best.pt`` / ``last.pt`` (for evaluate and predict).

The text decoder is rebuilt from the checkpoint alone: its ``text_decoder`` entry (name, head,
memory and the decoder's ``artifacts()``), through the registry's text decoders. A checkpoint of an
earlier version has no such entry but a word vocabulary (``vocabularies.text``): its decoder is the
built-in one with that vocabulary (:class:`~mska_core.text.tokenizers.WordTokenizer`), reading the
gloss-compressed memory it was trained on unless its config says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import CheckpointError


@attrs.frozen
class TrainedModel:
    """A fine-tuned model with everything needed to run it on new clips."""

    model: Any  # SignModel, in eval mode
    config: Any  # the resolved Config the run was trained with
    vocabularies: Any
    payload: dict[str, Any]
    path: Path


def load_trained(path: str | Path, *, registry: Any, device: Any = "cpu", overrides: Any = (),
                 allow_stream_change: bool = False) -> TrainedModel:
    """Rebuild the model stored in a ``mska train`` checkpoint (kind ``model`` or ``training-state``)
    over the plugins of ``registry`` (as the stored config's ``[plugins]`` table narrows it).

    The ``plugins.*`` entries of ``overrides`` (a command's ``--set``) change the stored ``[plugins]``
    table before the model is rebuilt (``--set plugins.providers.lips=PLUGIN`` chooses who supplies a
    stream); the others are the caller's to apply. A stream that another plugin supplies now, or whose joints changed,
    is refused in one line (:func:`~mska_core.config.identity.check_stream_identity`) unless
    ``allow_stream_change``.
    """
    from mska_core.checkpoints import read_payload
    from mska_core.config import config_from_dict
    from mska_core.data.vocab import Vocabularies
    from mska_core.training.model import build_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    payload = read_payload(
        path, kinds=("model", "training-state"), require=("vocabularies", "config"),
        needed_by="rebuilding the model", hint="give the best.pt or last.pt of a 'mska train' run",
        registry=registry,
    )
    if not isinstance(payload["config"], dict):
        raise CheckpointError(
            f"{path}: the checkpoint's 'config' is not a table, which rebuilding the model needs; it is damaged "
            "or was not written by mska train — use the run's other checkpoint"
        )
    from mska_core.config.checks import check_providers
    from mska_core.config.identity import check_stream_identity
    from mska_core.registry import registry_for

    config = config_from_dict(payload["config"], source=f"{path} (stored config)")
    plugin_overrides = [o for o in overrides if o.strip().startswith("plugins.")]
    if plugin_overrides:
        from mska_core.config import load_config

        config = load_config(config, plugin_overrides)
    registry = registry_for(config.plugins, registry)
    # A stored config names its streams; one a missing plugin supplied is named with its distribution,
    # one another plugin supplies now (or with other joints) is refused.
    check_providers(config, payload.get("providers"), str(path), registry)
    check_stream_identity(config.model.streams, config.model.layout, payload.get("providers"), str(path),
                          registry, allow_change=allow_stream_change)
    vocabularies = Vocabularies.from_dict(payload["vocabularies"])
    translation = None
    if "translation" in config.losses and config.losses["translation"].weight > 0:
        translation = registry.losses.get("translation").build(**config.losses["translation"].options)
    stored = stored_decoder(payload, vocabularies, path) if translation is not None else None
    model = build_model(config, vocabularies, registry=registry,
                        losses={"translation": translation} if translation is not None else {}, stored=stored)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the stored weights do not fit the stored config (missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]}); was the checkpoint written by another mska-core version?"
        )
    return TrainedModel(model=model.to(device).eval(), config=config, vocabularies=vocabularies,
                        payload=payload, path=path)


def stored_decoder(payload: dict[str, Any], vocabularies: Any, path: Path) -> dict[str, Any]:
    """The checkpoint's ``text_decoder`` entry, or the equivalent of an earlier version's word
    vocabulary (the built-in decoder, memory ``"glosses"``)."""
    entry = payload.get("text_decoder")
    if isinstance(entry, dict) and isinstance(entry.get("artifacts"), dict):
        return entry
    if vocabularies.text is not None:
        return {"name": "mska", "memory": "glosses",
                "artifacts": {"tokenizer": {"kind": "words", "tokens": list(vocabularies.text.tokens)}}}
    raise CheckpointError(
        f"{path}: the stored config trains translation but the checkpoint carries no text decoder "
        "('text_decoder') and no text vocabulary; it is damaged or was not written by mska train"
    )

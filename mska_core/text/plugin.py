"""Built-in plugin: the text decoders mska-core supplies.

- ``mska``: the built-in transformer decoder with a byte-level BPE tokenizer fitted on the training
  split (:mod:`mska_core.text.builtin`);
- ``hf``: a pretrained HuggingFace seq2seq model from a local folder, ``hf::PATH``
  (:mod:`mska_core.text.hf`), behind ``pip install 'mska-core[transformers]'``.

Each record's ``build`` imports its module (and torch, transformers) only when a decoder is built, so
listing plugins stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from mska_core.hookspecs import hookimpl
from mska_core.records import TextDecoderSpec

#: The extra that the ``hf`` decoder needs.
TRANSFORMERS_EXTRA = "pip install 'mska-core[transformers]'"


def _deferred(target: str, *, needs: str | None = None) -> Callable[..., Any]:
    """A factory that imports ``module:attr`` on first call and calls it with the request; when
    ``needs`` (a distribution's import name) is not installed, one line says how to install it."""
    module_name, _, attr = target.partition(":")

    def build(request: Any) -> Any:
        from mska_core.errors import ConfigError

        if needs is not None and importlib.util.find_spec(needs) is None:
            raise ConfigError(f"losses.translation.decoder: this decoder needs the {needs} library, which is not "
                              f"installed; {TRANSFORMERS_EXTRA}")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == needs:
                raise ConfigError(f"losses.translation.decoder: this decoder needs the {needs} library, which is "
                                  f"not installed; {TRANSFORMERS_EXTRA}") from None
            if exc.name == module_name:
                raise ConfigError(f"losses.translation.decoder: {module_name} is missing from this installation of "
                                  "mska-core; reinstall it") from None
            raise
        return getattr(module, attr)(request)

    build.__qualname__ = build.__name__ = f"build_{module_name.rsplit('.', 1)[-1]}"
    build.__doc__ = f"Build {target} from a DecoderRequest."
    return build


@hookimpl
def mska_text_decoders() -> list[TextDecoderSpec]:
    return [
        TextDecoderSpec("mska", _deferred("mska_core.text.builtin:build"),
                        "transformer decoder trained from scratch, byte-level BPE fitted on the training split"),
        TextDecoderSpec("hf", _deferred("mska_core.text.hf:build", needs="transformers"),
                        "pretrained HuggingFace seq2seq model from a local folder (hf::PATH)"),
    ]

"""Backbone spec strings: ``SCHEME::PAYLOAD`` and the payload of ``file::PATH[:ARCH]``.

This module is cheap to import (no torch): the command line and config checks use it to validate
specs before anything is built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import BackboneError

SEPARATOR = "::"
_DRIVE = re.compile(r"^[A-Za-z]$")


@attrs.frozen
class BackboneOptions:
    """What a :class:`~mska_core.records.BackboneLoader` receives besides the spec's payload.

    - ``img_size``: the square input size the backbone is built for (``None``: the size the weights
      carry, else the architecture's default).
    - ``spec``: the whole spec, for messages.
    - ``registry``: the registry to look architectures and checkpoint formats up in.
    """

    img_size: int | None = None
    spec: str = ""
    registry: Any = attrs.field(default=None, eq=False, repr=False)


def parse_spec(spec: str, *, registry: Any = None) -> tuple[str, str]:
    """Split ``spec`` at its first ``::`` into ``(scheme, payload)`` and check the scheme is registered.

    Raises :class:`~mska_core.errors.BackboneError` when there is no ``::``, the payload is empty,
    or no loaded plugin supplies the scheme; the message lists the registered schemes.
    """
    if registry is None:
        from mska_core.registry import get_registry

        registry = get_registry()
    schemes = registry.backbone_loaders.names()
    listing = ", ".join(f"{s}::" for s in schemes) or "none (is the core-backbones plugin disabled?)"
    if not isinstance(spec, str) or SEPARATOR not in spec:
        hint = f"; for a file write 'file::{spec}'" if _looks_like_path(str(spec)) else ""
        raise BackboneError(
            f"backbone spec {spec!r} has no '::'; write SCHEME::PAYLOAD with a registered scheme "
            f"({listing}){hint}"
        )
    scheme, payload = spec.split(SEPARATOR, 1)
    if scheme not in schemes:
        from mska_core.registry import suggest

        raise BackboneError(
            f"backbone spec {spec!r}: unknown scheme {scheme!r}{suggest(scheme, schemes)}; "
            f"registered: {listing}"
        )
    if not payload:
        raise BackboneError(f"backbone spec {spec!r}: nothing after '::' (e.g. 'file::weights.pt:dinov2_vits14')")
    return scheme, payload


def split_file_payload(payload: str) -> tuple[str, str | None]:
    """Split the payload of ``file::PATH[:ARCH]`` into ``(path, arch or None)``.

    The split is at the last ``:`` and only when what follows is an identifier, what precedes is
    not a lone drive letter (``C:weights.pt``), and the whole payload is not itself an existing
    file; so Windows paths and paths that contain colons keep working.
    """
    head, sep, tail = payload.rpartition(":")
    if not sep or not head or not tail.isidentifier() or _DRIVE.match(head):
        return payload, None
    if Path(payload).expanduser().is_file():
        return payload, None
    return head, tail


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".pt", ".pth", ".ckpt", ".safetensors", ".bin"))

"""Stream identity: what a checkpoint records about each of its streams, and the check on loading.

A trained model's keypoint branch learned joint-by-joint matrices for the joints its stream read, in
their order. A checkpoint therefore records, for every stream, the plugin that supplied it (plugin,
distribution, version) and a fingerprint of its joints in every layout (their count and a hash of the
indices in order). Loading the checkpoint where another plugin supplies the stream, or where the
stream reads other joints (another count, or the same count in another order), would silently score
the wrong joints or end in a size mismatch; :func:`check_stream_identity` refuses it in one line that
names the stream, both providers and what differs. ``allow_change`` (``--allow-stream-change``)
turns the refusal off for a user who knows the change is harmless.

A plugin's version may change freely: the same plugin with the same joints is the same stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from mska_core.errors import ConfigError


def joint_fingerprint(indices: Iterable[int]) -> dict[str, Any]:
    """``{"count": n, "sha256": first 16 hex digits}`` of joint indices, in their order."""
    indices = [int(i) for i in indices]
    digest = hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:16]
    return {"count": len(indices), "sha256": digest}


def stream_identity(spec: Any) -> dict[str, Any]:
    """What a checkpoint records about one stream: its provider and the fingerprint of its joints per
    layout (plain data)."""
    provider = spec.provider
    out: dict[str, Any] = {}
    if provider is not None:
        out.update(plugin=provider.plugin, distribution=provider.distribution, version=provider.version)
    out["joints"] = {layout: joint_fingerprint(indices) for layout, indices in spec.joints.items()}
    return out


def check_stream_identity(streams: Iterable[str], layout: str, stored: Any, source: str, registry: Any, *,
                          allow_change: bool = False) -> None:
    """Raise :class:`ConfigError` when a stream of ``streams`` is supplied by another plugin than the
    one ``stored`` (a checkpoint's ``providers``) names, or reads other joints in ``layout``.

    Streams the checkpoint says nothing about (written before identities were recorded) pass. A name
    that several loaded plugins supply is refused naming the checkpoint's provider, so the user
    chooses it (``[plugins.providers]``, ``--set plugins.providers.NAME=PLUGIN``).
    """
    recorded = (stored.get("streams") if isinstance(stored, Mapping) else None) or {}
    for name in streams:
        entry = recorded.get(name)
        if not isinstance(entry, Mapping) or not entry.get("plugin") or name not in registry.streams:
            continue
        trained_with = _describe(entry)
        suppliers = registry.streams.suppliers(name)
        if len(suppliers) > 1:
            names = " and ".join(str(spec.provider) for spec in suppliers)
            raise ConfigError(
                f"{source}: stream {name!r} was trained with {trained_with}, and {names} both supply it now; "
                f"choose one with --set plugins.providers.{name}={entry['plugin']} (or [plugins.providers]), "
                "or disable the other plugin"
            )
        if not allow_change:
            check_same_stream(name, entry, suppliers[0], layout, source)


def check_same_stream(name: str, entry: Mapping[str, Any], spec: Any, layout: str, source: str) -> None:
    """Raise :class:`ConfigError` when ``spec`` (the stream ``name`` as supplied now) comes from another
    plugin than the recorded ``entry`` (one stream of a checkpoint's ``providers``), or reads other
    joints in ``layout``. An entry without a recorded plugin or joints checks nothing of it."""
    if not isinstance(entry, Mapping) or not entry.get("plugin"):
        return
    now = spec.provider
    moved = now is not None and (now.plugin, now.distribution) != (entry.get("plugin"), entry.get("distribution"))
    joints = _joint_change(entry, spec, layout)
    if moved or joints:
        raise ConfigError(
            f"{source}: stream {name!r} was trained with {_describe(entry)}, but {now} supplies it now "
            f"{joints or 'with the same joints'}; install the original plugin (or choose it with "
            f"--set plugins.providers.{name}={entry['plugin']}), or pass --allow-stream-change to load it "
            "anyway"
        )


def _joint_change(entry: Mapping[str, Any], spec: Any, layout: str) -> str:
    """How ``spec``'s joints in ``layout`` differ from the recorded ones (empty when they do not, or when
    nothing was recorded)."""
    stored = (entry.get("joints") or {}).get(layout)
    current = joint_fingerprint(spec.joints_for(layout))
    if not isinstance(stored, Mapping) or stored.get("sha256") == current["sha256"]:
        return ""
    if stored.get("count") != current["count"]:
        return f"with {current['count']} joints in layout {layout!r} instead of {stored.get('count')}"
    return f"with {current['count']} joints in layout {layout!r}, as before, but other ones or in another order"


def _describe(entry: Mapping[str, Any]) -> str:
    return f"plugin {entry.get('plugin')!r} ({entry.get('distribution', '?')} {entry.get('version', '?')})"

"""Build real installed distributions (a ``*.dist-info`` with entry points) in a temporary folder.

This is the layout pip writes into site-packages; putting the folder on ``sys.path`` (or
``PYTHONPATH``) makes ``importlib.metadata`` find the entry points exactly as for a pip install.
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def install_distribution(
    site: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Write modules and a dist-info for ``dist`` into ``site``; return ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[mska]\n{lines}")
    (info / "RECORD").write_text("")
    return site


def stream_plugin_source(*names: str) -> str:
    """Source of a plugin module that supplies streams ``names`` (two face points each)."""
    specs = ", ".join(
        f'StreamSpec(name="{name}", joints={{"coco_wholebody": (23, 24)}})' for name in names
    )
    return f"""
        from mska_core import StreamSpec, hookimpl

        @hookimpl
        def mska_streams():
            return [{specs}]
    """

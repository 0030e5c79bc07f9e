"""Tests of the mouth plugin, run against the installed mska-core."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mska_mouth_stream

from mska_core.registry import make_registry


def test_the_hook_returns_one_mouth_stream_with_twenty_points_per_layout():
    (spec,) = mska_mouth_stream.mska_streams()
    assert spec.name == "mouth"
    assert len(spec.joints_for("coco_wholebody")) == 20
    assert len(spec.joints_for("mediapipe_holistic")) == 20


def test_mouth_points_lie_in_the_face_part_of_each_layout():
    registry = make_registry(mska_mouth_stream)
    spec = registry.streams.get("mouth")
    for layout_name in ("coco_wholebody", "mediapipe_holistic"):
        face = set(registry.layouts.get(layout_name).parts["face"])
        assert set(spec.joints_for(layout_name)) <= face


def test_installed_entry_point_is_listed_by_mska_plugins():
    env = dict(os.environ, MSKA_LOAD_PLUGINS="mouth")
    out = subprocess.run(
        [sys.executable, "-m", "mska_core", "plugins", "--json"],
        capture_output=True, text=True, env=env, check=True,
    )
    listing = json.loads(out.stdout)
    assert "mouth" in [stream["name"] for stream in listing["streams"]]

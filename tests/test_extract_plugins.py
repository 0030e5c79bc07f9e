"""Plugins extend ``mska extract`` with no change to the core: a keypoint estimator and a stream with
its own crop region, each installed as a real distribution (a dist-info with an entry point)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plugin_fixtures import install_distribution
from test_extract import COLOURS, colour_shares, crops_of, make_clip, run_extract

#: An estimator that finds the test signer's painted parts: the face's points on the red blob's
#: bounding box, each hand's on the green or blue one; confidence 0 where a colour is absent.
BLOB_ESTIMATOR = '''
import os

import numpy as np

from mska_core import KeypointEstimator, hookimpl

__version__ = "0.3.0"
PARTS = {(220, 30, 30): range(23, 91), (30, 200, 30): range(91, 112), (30, 60, 230): range(112, 133)}


class BlobFinder:
    def __init__(self, options):
        self.options = dict(options)

    def __call__(self, frame):
        points = np.zeros((133, 3), dtype=np.float32)
        pixels = frame.astype(np.int32)
        for colour, joints in PARTS.items():
            near = np.abs(pixels - colour).sum(axis=2) < 90
            ys, xs = np.nonzero(near)
            if len(xs) < 10:
                continue
            corners = [(xs.min(), ys.min()), (xs.max(), ys.max())]
            for k, joint in enumerate(joints):
                points[joint] = (*corners[k % 2], 1.0)
        return points

    def close(self):
        with open(os.environ["BLOB_CLOSED"], "a") as handle:
            handle.write("closed\\n")


@hookimpl
def mska_keypoint_estimators():
    return [KeypointEstimator(name="colour-blobs", layout="coco_wholebody", build=BlobFinder,
                              description="bounding boxes of painted colours")]
'''

#: A stream plugin with a crop region of its own: the right hand with a wide margin around it.
WIDE_HAND_STREAM = '''
from mska_core import CropRegion, StreamSpec, hookimpl


@hookimpl
def mska_streams():
    hand = range(112, 133)
    return [StreamSpec(name="right_hand_wide", joints={"coco_wholebody": tuple(hand)},
                       crop_region=CropRegion(joints={"coco_wholebody": hand}, scale=2.5, min_size=16))]
'''


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugin-signers")
    for index, clip_id in enumerate(("delta", "echo")):
        make_clip(root / "videos", root / "keypoints", clip_id, frames=10, seed=index)
    return root


def test_mska_keypoint_estimators_a_plugin_estimator_finds_the_points_mska_extract_crops(signers, tmp_path):
    site = install_distribution(tmp_path / "site", "mska-colour-blobs", "0.3.0",
                                {"blobs": "mska_colour_blobs"}, {"mska_colour_blobs": BLOB_ESTIMATOR})
    closed = tmp_path / "closed.txt"
    out = tmp_path / "out"
    result = run_extract(str(signers / "videos"), "--estimator", "colour-blobs", "--out", str(out),
                         "--crop-size", "40", "--json", PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="blobs",
                         BLOB_CLOSED=str(closed))
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["written"]) == ["delta", "echo"]
    rows = [line.split("\t") for line in (out / "clips.tsv").read_text().splitlines()[1:]]
    assert {(row[6], row[7], row[8]) for row in rows} == {("coco_wholebody", "estimator:colour-blobs", "0.3.0")}
    points = np.load(out / "keypoints" / "delta.npy")
    assert points.shape == (10, 133, 3) and (points[:, 23:133, 2] == 1).all()
    for stream in COLOURS:
        for index, crop in enumerate(crops_of(out, stream, "echo")):
            shares = colour_shares(crop)
            assert shares[stream] > 0.08 and max(v for k, v in shares.items() if k != stream) < 0.01, (index, shares)
    assert closed.read_text() == "closed\n"  # built once, closed once when extraction ended


def test_mska_keypoint_estimators_an_estimator_in_worker_processes_is_built_and_closed_in_each(signers, tmp_path):
    site = install_distribution(tmp_path / "site", "mska-colour-blobs", "0.3.0",
                                {"blobs": "mska_colour_blobs"}, {"mska_colour_blobs": BLOB_ESTIMATOR})
    closed = tmp_path / "closed.txt"
    result = run_extract(str(signers / "videos"), "--estimator", "colour-blobs", "--out", str(tmp_path / "out"),
                         "--crop-size", "40", "--workers", "2", PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="blobs",
                         BLOB_CLOSED=str(closed))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out" / "keypoints").iterdir())) == 2
    assert 1 <= closed.read_text().count("closed") <= 2


def test_a_stream_plugin_with_a_crop_region_gets_crops(signers, tmp_path):
    site = install_distribution(tmp_path / "site", "mska-wide-hand", "1.0",
                                {"wide": "mska_wide_hand"}, {"mska_wide_hand": WIDE_HAND_STREAM})
    out = tmp_path / "out"
    result = run_extract(str(signers / "videos"), "--keypoints", str(signers / "keypoints"), "--out", str(out),
                         "--crop-size", "64", PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="wide")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "crops").iterdir()) == ["face", "hand_left", "hand_right",
                                                                  "right_hand_wide"]
    crops = crops_of(out, "right_hand_wide", "delta")
    assert len(crops) == 10
    for crop in crops:
        shares = colour_shares(crop)
        assert shares["hand_right"] > 0.02 and shares["hand_left"] < 0.01 and shares["face"] < 0.01, shares
    with np.load(out / "boxes" / "delta.npz") as boxes:  # the plugin's scale, not the hand plugin's
        assert (boxes["right_hand_wide"][:, 2] > 1.4 * boxes["hand_right"][:, 2]).all()


def test_an_estimator_that_returns_the_wrong_shape_fails_its_clips_naming_it(signers, tmp_path):
    source = BLOB_ESTIMATOR.replace("        return points\n", "        return points[:100]\n")
    site = install_distribution(tmp_path / "site", "mska-colour-blobs", "0.3.0",
                                {"blobs": "mska_colour_blobs"}, {"mska_colour_blobs": source})
    out = tmp_path / "out"
    result = run_extract(str(signers / "videos" / "delta.mp4"), "--estimator", "colour-blobs", "--out", str(out),
                         PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="blobs", BLOB_CLOSED=str(tmp_path / "c"))
    assert result.returncode == 1
    assert "'colour-blobs' returned points of shape (100, 3)" in result.stderr
    assert not (out / "keypoints" / "delta.npy").exists()

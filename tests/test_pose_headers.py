"""Every common .pose header is read into a registered layout, through the header maps the layouts
declare (a plugin layout adds its own), by the one keypoint reader of ``source = "pose"``, ``mska
extract --keypoints`` and ``mska predict``."""

from __future__ import annotations

import numpy as np
import pytest
from pose_files import KINDS, write

from mska_core import KeypointLayout, PoseHeaderMap, get_registry, hookimpl
from mska_core.data.keypoint_files import read_keypoint_file
from mska_core.errors import DataError
from mska_core.registry import make_registry

WIDTH, HEIGHT = 640, 480


def coco_clip(frames: int = 5, seed: int = 0) -> np.ndarray:
    """COCO-WholeBody points in pixels, confidence 0.8; the right hand not found in frame 1."""
    rng = np.random.default_rng(seed)
    points = np.zeros((frames, 133, 3), dtype=np.float32)
    points[..., 0] = rng.uniform(1, WIDTH - 1, size=(frames, 133))
    points[..., 1] = rng.uniform(1, HEIGHT - 1, size=(frames, 133))
    points[..., 2] = 0.8
    points[1, 112:133] = 0.0
    return points


def layouts(registry=None):
    return {layout.name: layout for layout in (registry or get_registry()).layouts}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_common_header_kind_reads_into_its_layout_with_the_header_frame_size(kind, tmp_path):
    writer, layout = KINDS[kind]
    coco = coco_clip()
    clip = read_keypoint_file(writer(tmp_path / f"{kind}.pose", coco, width=WIDTH, height=HEIGHT), layouts())
    assert clip.layout == layout and clip.frame_size == (WIDTH, HEIGHT) and clip.name == kind
    points = clip.points
    if layout == "coco_wholebody":  # OpenPose and MMPose: every COCO-WholeBody joint comes back
        np.testing.assert_allclose(points, coco, atol=1e-3)
        return
    assert points.shape == (5, 543, 3)
    np.testing.assert_allclose(points[:, 501:522], coco[:, 91:112], atol=1e-3)  # left hand
    np.testing.assert_allclose(points[:, 522:543], coco[:, 112:133], atol=1e-3)  # right hand
    assert (points[1, 522:543] == 0).all()  # not found: missing, not a point at the origin with confidence
    np.testing.assert_allclose(points[:, 11], coco[:, 5], atol=1e-3)  # LEFT_SHOULDER from the left shoulder
    np.testing.assert_allclose(points[:, 33 + 0], coco[:, 23], atol=1e-3)  # face mesh point 0


def test_reduced_holistic_fills_its_178_points_and_leaves_the_rest_missing(tmp_path):
    writer, _ = KINDS["holistic-reduced"]
    clip = read_keypoint_file(writer(tmp_path / "r.pose", coco_clip(), width=WIDTH, height=HEIGHT), layouts())
    found = clip.points[0, :, 2] > 0
    assert int(found.sum()) == 8 + 128 + 21 + 21
    assert found[11] and not found[0]  # shoulders kept, the nose (a face point of the pose) dropped
    assert found[33 + 0] and not found[33 + 4]  # face contour kept, the nose tip of the mesh dropped
    assert (clip.points[0, ~found] == 0).all()


def test_refined_irises_and_world_landmarks_are_left_out(tmp_path):
    writer, _ = KINDS["holistic-refined"]
    coco = coco_clip()
    clip = read_keypoint_file(writer(tmp_path / "f.pose", coco, width=WIDTH, height=HEIGHT), layouts())
    np.testing.assert_allclose(clip.points[:, 33 + 467], coco[:, 23 + 467 % 68], atol=1e-3)
    assert clip.points.shape[1] == 543


def test_a_header_read_into_another_layout_than_asked_names_the_layout_to_choose(tmp_path):
    writer, _ = KINDS["openpose-137"]
    path = writer(tmp_path / "o.pose", coco_clip(), width=WIDTH, height=HEIGHT)
    with pytest.raises(DataError, match=r"o.pose: a openpose_137 file, read into layout 'coco_wholebody'.*"
                                        r"set model.layout = \"coco_wholebody\""):
        read_keypoint_file(path, layouts(), "mediapipe_holistic")


class HandsLayout:
    """A plugin layout of two hands only, with a header map for its own two-component .pose files."""

    @hookimpl
    def mska_keypoint_layouts(self):
        hands = [f"h{i}" for i in range(21)]
        return [KeypointLayout(
            name="two_hands", num_joints=42, parts={"left_hand": range(21), "right_hand": range(21, 42)},
            pose_headers=[PoseHeaderMap(name="glove", components={
                "LEFT": {name: i for i, name in enumerate(hands)},
                "RIGHT": {name: 21 + i for i, name in enumerate(hands)}})],
            mirror=[(i, 21 + i) for i in range(21)])]


def test_a_plugin_layout_reads_its_own_pose_header(tmp_path):
    from pose_format.pose_header import PoseHeaderComponent

    registry = make_registry(HandsLayout())
    components = [PoseHeaderComponent(name=side, points=[f"h{i}" for i in range(21)], limbs=[],
                                      colors=[(0, 0, 0)], point_format="XYC") for side in ("LEFT", "RIGHT")]
    points = coco_clip()[:, 91:133]
    clip = read_keypoint_file(write(tmp_path / "g.pose", points, components, width=WIDTH, height=HEIGHT),
                              layouts(registry))
    assert clip.layout == "two_hands"
    np.testing.assert_allclose(clip.points, points, atol=1e-3)


def test_a_header_no_layout_reads_says_what_it_found_and_how_to_add_one(tmp_path):
    from pose_format.pose_header import PoseHeaderComponent

    component = PoseHeaderComponent(name="BODY_25", points=[f"p{i}" for i in range(25)], limbs=[],
                                    colors=[(0, 0, 0)], point_format="XYC")
    path = write(tmp_path / "x.pose", np.ones((2, 25, 3)), [component], width=WIDTH, height=HEIGHT)
    with pytest.raises(DataError, match=r"BODY_25 \(25\)\) match no header kind.*a layout plugin can add one"):
        read_keypoint_file(path, layouts())


def test_a_header_map_naming_a_joint_outside_its_layout_is_refused():
    with pytest.raises(ValueError, match="names a joint outside 0..9"):
        KeypointLayout(name="small", num_joints=10,
                       pose_headers=[PoseHeaderMap(name="big", components={"A": {"p": 12}})])


def test_the_one_reader_reads_npy_npz_and_pickle_entries_alike(tmp_path):
    import pickle

    points = coco_clip()
    np.save(tmp_path / "a.npy", points)
    np.savez(tmp_path / "b.npz", keypoints=points)
    with open(tmp_path / "c.pkl", "wb") as handle:
        pickle.dump({"train/c": {"name": "train/c", "gloss": "A", "text": "a", "num_frames": 5, "keypoint": points}},
                    handle)
    for path, entry, name in ((tmp_path / "a.npy", None, "a"), (tmp_path / "b.npz", None, "b"),
                              (tmp_path / "c.pkl", "train/c", "train/c"), (tmp_path / "c.pkl", None, "train/c")):
        clip = read_keypoint_file(path, layouts(), entry=entry)
        assert (clip.layout, clip.name, clip.frame_size) == ("coco_wholebody", name, None)
        np.testing.assert_array_equal(clip.points, points)

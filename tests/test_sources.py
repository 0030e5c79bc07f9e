"""Data sources are plugins (mska_data_sources): the built-in ones, a plugin's, .pose files, and the
validation every source's clips go through on the way in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mska_core import DataSource, get_registry, hookimpl
from mska_core.config import DataConfig
from mska_core.data import Corpus, Sample
from mska_core.data.datasets import load_corpus
from mska_core.errors import DataError, DuplicateNameError
from mska_core.registry import make_registry


def _clip(frames: int = 8, joints: int = 133) -> torch.Tensor:
    points = torch.rand(frames, joints, 3) * 2 - 1
    points[..., 2] = 0.9
    return points


class ReplaySource:
    """A plugin source that serves clips from memory."""

    def __init__(self, name: str = "replay", **clips: torch.Tensor) -> None:
        self.name, self.clips = name, clips

    def open(self, data, layout):
        samples = [Sample(name=name, keypoints=points, gloss="A B", text="a b") for name, points in self.clips.items()]
        return Corpus(train=samples, dev=samples[:1], test=samples[:1], source=f"{self.name}: memory",
                      layout=layout.name)

    @hookimpl
    def mska_data_sources(self):
        return [DataSource(name=self.name, open=self.open, description="clips from memory")]


def test_mska_data_sources_of_a_plugin_are_named_in_data_source():
    registry = make_registry(ReplaySource(one=_clip(), two=_clip(12)))
    assert {"synthetic", "mska-pickle", "directory", "pose", "replay"} <= set(registry.data_sources.names())
    corpus = load_corpus(DataConfig(source="replay"), registry=registry)
    assert [s.name for s in corpus.train] == ["one", "two"] and corpus.source == "replay: memory"


def test_mska_data_sources_clips_of_a_plugin_are_validated_like_every_source():
    broken = _clip()
    broken[3, 7, 0] = float("nan")
    registry = make_registry(ReplaySource(good=_clip(), broken=broken))
    with pytest.raises(DataError, match=r"invalid clip \(replay: memory \(train\): clip 'broken': 1 points with NaN"):
        load_corpus(DataConfig(source="replay"), registry=registry)


def test_mska_data_sources_a_plugin_that_reuses_a_built_in_name_is_contested_and_named():
    clash = ReplaySource("directory")
    clash.__name__ = "clash"
    registry = make_registry(clash, warn=False)
    with pytest.raises(DuplicateNameError, match=r"mska-core .*plugin 'clash'"):
        registry.data_sources.get("directory")
    assert registry.with_choices({"directory": "core-data"}).data_sources.get(
        "directory").provider.distribution == "mska-core"


# --- .pose files -----------------------------------------------------------------------------------


def _component(name: str, count: int, point_format: str):
    from pose_format.pose_header import PoseHeaderComponent

    return PoseHeaderComponent(name=name, points=[f"{name.lower()}_{i}" for i in range(count)], limbs=[],
                               colors=[(255, 255, 255)], point_format=point_format)


def write_pose(path, points, components, *, width: int = 640, height: int = 480, fps: float = 25.0):
    """A real .pose file (pose-format's own writer) of one person: ``points`` [T, P, 3] or [T, P, 4]
    (coordinates then confidence); a confidence of 0 is a point the estimator did not find."""
    import numpy as np
    from numpy import ma
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    points = np.asarray(points, dtype=np.float32)
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=components)
    body = NumPyPoseBody(fps=fps, data=ma.masked_array(points[:, None, :, :-1]), confidence=points[:, None, :, -1])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        Pose(header, body).write(handle)
    return path


def coco_wholebody_components():
    from pose_format.utils.cocowholebody133_header import cocowholebody_components

    return cocowholebody_components()


def holistic_components():
    """The components pose-format's MediaPipe Holistic writer uses (built by hand: its helper imports
    mediapipe), with refined irises (478 face points) and the world landmarks after the hands."""
    return [_component("POSE_LANDMARKS", 33, "XYZC"), _component("FACE_LANDMARKS", 478, "XYZC"),
            _component("LEFT_HAND_LANDMARKS", 21, "XYZC"), _component("RIGHT_HAND_LANDMARKS", 21, "XYZC"),
            _component("POSE_WORLD_LANDMARKS", 33, "XYZC")]


def test_a_coco_wholebody_pose_file_reads_as_pixels_and_confidence(tmp_path):
    import numpy as np

    from mska_core.data.pose import read_pose

    points = np.random.default_rng(0).uniform(1, 400, size=(6, 133, 3)).astype(np.float32)
    points[..., 2] = 0.5
    points[2, 100, 2] = 0.0  # a point the estimator missed
    clip = read_pose(write_pose(tmp_path / "a.pose", points, coco_wholebody_components(), fps=30),
                     get_registry().layouts)
    assert (clip.layout, clip.fps, clip.width, clip.height) == ("coco_wholebody", 30.0, 640, 480)
    assert clip.keypoints.shape == (6, 133, 3) and clip.keypoints.dtype == np.float32
    expected = points.copy()
    expected[2, 100] = 0.0  # missing: coordinates and confidence 0
    assert np.allclose(clip.keypoints, expected)


def test_holistic_components_map_to_the_543_joints_of_mediapipe_holistic(tmp_path):
    import numpy as np

    from mska_core.data.pose import read_pose

    total = 33 + 478 + 21 + 21 + 33
    points = np.zeros((3, total, 4), dtype=np.float32)
    points[..., 0] = np.arange(total)  # x = the point's index in the file
    points[..., 3] = 1.0
    clip = read_pose(write_pose(tmp_path / "h.pose", points, holistic_components()), get_registry().layouts)
    keypoints, layout = clip.keypoints, clip.layout
    assert layout == "mediapipe_holistic" and keypoints.shape == (3, 543, 3)
    # pose 0-32, face 33-500 (the first 468 of 478), left hand 501-521, right hand 522-542
    expected = [*range(33), *range(33, 33 + 468), *range(511, 532), *range(532, 553)]
    assert keypoints[0, :, 0].tolist() == expected


def test_a_pose_file_whose_components_fit_no_layout_says_what_it_found(tmp_path):
    import numpy as np

    from mska_core.data.pose import read_pose

    path = write_pose(tmp_path / "x.pose", np.ones((2, 25, 3)), [_component("BODY_25", 25, "XYC")])
    with pytest.raises(DataError, match=r"x.pose: the pose header's components \(BODY_25 \(25\)\) match no header"):
        read_pose(path, get_registry().layouts)
    (tmp_path / "bad.pose").write_bytes(b"not a pose file")
    with pytest.raises(DataError, match="bad.pose: not a readable .pose file"):
        read_pose(tmp_path / "bad.pose", get_registry().layouts)


def write_pose_corpus(root, corpus, *, width: int = 640, height: int = 480):
    """The clips of a synthetic corpus as .pose files in pixels (the inverse of the reference's
    normalisation) with SPLIT.tsv annotation tables."""
    for split in ("train", "dev", "test"):
        lines = ["id\tgloss\ttext"]
        for sample in corpus.split(split):
            points = sample.keypoints.numpy().copy()
            points[..., 0] = (points[..., 0] + 1) / 2 * width
            points[..., 1] = height - (points[..., 1] + 1) / 2 * height
            write_pose(root / split / f"{sample.name}.pose", points, coco_wholebody_components(), width=width,
                       height=height)
            lines.append(f"{sample.name}\t{sample.gloss}\t{sample.text}")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_the_pose_source_reads_splits_normalised_with_each_files_frame_size(tmp_path):
    from mska_core.config import SyntheticConfig
    from mska_core.synthetic.corpus import make_corpus

    corpus = make_corpus(SyntheticConfig(num_train=2, num_dev=1, num_test=1, vocab_size=4))
    root = write_pose_corpus(tmp_path / "poses", corpus)
    read = load_corpus(DataConfig(source="pose", path=str(root)), registry=get_registry())
    assert read.source == f"pose: {root}" and [s.name for s in read.train] == [s.name for s in corpus.train]
    first, original = read.train[0], corpus.train[0]
    assert first.gloss == original.gloss and first.path.endswith("train-00000.pose")
    seen = original.keypoints[..., 2] > 0
    assert torch.allclose(first.keypoints[seen], original.keypoints[seen], atol=1e-4)
    with pytest.raises(DataError, match=r"match no header kind of layout 'mediapipe_holistic'"):
        load_corpus(DataConfig(source="pose", path=str(root)), layout="mediapipe_holistic",
                    registry=get_registry())


# --- validation on the way in ---------------------------------------------------------------------


def _directory_corpus(root, clips: dict, tsv_extra: bytes = b""):
    """A directory-format corpus whose train split holds ``clips`` ({id: [T, J, 3] array}); dev and
    test hold one good clip each."""
    import numpy as np

    good = _clip().numpy()
    for split, items in (("train", clips), ("dev", {"d0": good}), ("test", {"t0": good})):
        (root / split).mkdir(parents=True, exist_ok=True)
        lines = [b"id\tgloss\ttext"]
        for name, points in items.items():
            np.save(root / split / f"{name}.npy", np.asarray(points, dtype=np.float32))
            lines.append(f"{name}\tA B\ta b".encode())
        if split == "train":
            lines.append(tsv_extra) if tsv_extra else None
        (root / f"{split}.tsv").write_bytes(b"\n".join(lines) + b"\n")
    return root


def test_nan_and_inf_coordinates_are_refused_naming_the_clip_and_its_file(tmp_path, caplog):
    broken = _clip().numpy()
    broken[2, 5, 1] = float("inf")
    root = _directory_corpus(tmp_path, {"good": _clip().numpy(), "broken": broken})
    with pytest.raises(DataError) as caught:
        load_corpus(DataConfig(source="directory", path=str(root)), registry=get_registry())
    message = str(caught.value)
    assert "clip 'broken'" in message and str(root / "train" / "broken.npy") in message
    assert "1 points with NaN or infinite values" in message and 'invalid = "repair"' in message
    assert "\n" not in message  # one line
    assert any("broken" in r.getMessage() for r in caplog.records)  # and one line per clip on stderr


def test_repair_zeroes_non_finite_points_and_clips_confidences(tmp_path, caplog):
    broken = _clip().numpy()
    broken[2, 5, 0] = float("nan")
    broken[4, 9, 2] = float("nan")
    broken[1, 3, 2] = 1.7
    broken[1, 4, 2] = -0.2
    root = _directory_corpus(tmp_path, {"broken": broken})
    corpus = load_corpus(DataConfig(source="directory", path=str(root), invalid="repair"),
                         registry=get_registry())
    points = corpus.train[0].keypoints
    assert torch.isfinite(points).all()
    assert points[2, 5].tolist() == [0.0, 0.0, 0.0] and points[4, 9].tolist() == [0.0, 0.0, 0.0]
    assert points[1, 3, 2] == 1.0 and points[1, 4, 2] == 0.0
    assert torch.equal(points[0], torch.from_numpy(broken[0]))  # untouched frames stay as they were
    assert any("clip 'broken'" in r.getMessage() and "repaired" in r.getMessage() for r in caplog.records)


def test_empty_clips_are_refused_or_dropped_with_a_warning(tmp_path, caplog):
    import numpy as np

    nothing = _clip().numpy()
    nothing[..., 2] = 0.0  # every point missing
    root = _directory_corpus(tmp_path, {"empty": np.zeros((0, 133, 3)), "unseen": nothing, "good": _clip().numpy()})
    with pytest.raises(DataError, match=r"2 invalid clips \(first: .*clip 'empty'.*no frames"):
        load_corpus(DataConfig(source="directory", path=str(root)), registry=get_registry())
    corpus = load_corpus(DataConfig(source="directory", path=str(root), invalid="repair"),
                         registry=get_registry())
    assert [s.name for s in corpus.train] == ["good"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2 and "no point with a confidence above 0" in dropped[1]


def test_a_joint_count_that_does_not_match_the_layout_is_refused_even_when_repairing(tmp_path):
    root = _directory_corpus(tmp_path, {"small": _clip(joints=17).numpy()})
    with pytest.raises(DataError, match=r"clip 'small'.*17 joints per frame, the layout has 133"):
        load_corpus(DataConfig(source="directory", path=str(root), invalid="repair"), registry=get_registry())


def test_one_clip_with_the_wrong_joint_count_is_dropped_when_repairing_not_blocking_the_corpus(tmp_path, caplog):
    root = _directory_corpus(tmp_path, {"good": _clip().numpy(), "small": _clip(joints=17).numpy()})
    with pytest.raises(DataError, match=r"clip 'small'.*17 joints per frame"):
        load_corpus(DataConfig(source="directory", path=str(root)), registry=get_registry())
    corpus = load_corpus(DataConfig(source="directory", path=str(root), invalid="repair"),
                         registry=get_registry())
    assert [s.name for s in corpus.train] == ["good"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "clip 'small'" in dropped[0] and str(root / "train" / "small.npy") in dropped[0]


def test_text_that_is_not_utf8_is_refused_or_replaced(tmp_path):
    root = _directory_corpus(tmp_path, {"good": _clip().numpy()}, tsv_extra=b"latin\tCAF\xc9\tcaf\xe9")
    import numpy as np

    np.save(root / "train" / "latin.npy", _clip().numpy())
    with pytest.raises(DataError, match=r"clip 'latin'.*gloss has bytes that are not UTF-8.*text has"):
        load_corpus(DataConfig(source="directory", path=str(root)), registry=get_registry())
    corpus = load_corpus(DataConfig(source="directory", path=str(root), invalid="repair"),
                         registry=get_registry())
    latin = corpus.train[1]
    assert (latin.gloss, latin.text) == ("CAF\ufffd", "caf\ufffd")


def test_mska_pickle_clips_are_validated_too(tmp_path):
    import pickle

    points = _clip().clone()
    points[..., 2] = 3.0  # confidences outside [0, 1]
    entry = {"name": "p0", "gloss": "A", "text": "a", "num_frames": 8, "keypoint": points}
    for split in ("train", "dev", "test"):
        with open(tmp_path / f"labels.{split}", "wb") as handle:
            pickle.dump({"p0": entry}, handle)
    with pytest.raises(DataError, match=r"clip 'p0' \(.*labels.train\): 1064 confidences outside \[0, 1\]"):
        load_corpus(DataConfig(source="mska-pickle", path=str(tmp_path)), registry=get_registry())


@pytest.mark.slow
def test_pose_files_train_and_predict_never_guesses_from_an_all_nan_clip(tmp_path, mska):
    """`mska train` from real .pose files (one step), then `mska predict` on its checkpoint: a clip of
    NaN is refused, or, when repairing, gets no prediction at all."""
    import json

    import numpy as np
    from test_train import write_config

    from mska_core.config import SyntheticConfig
    from mska_core.synthetic.corpus import make_corpus

    corpus = make_corpus(SyntheticConfig(num_train=4, num_dev=2, num_test=2, vocab_size=5, min_glosses=1,
                                         max_glosses=2, frames_per_gloss=6))
    root = write_pose_corpus(tmp_path / "poses", corpus)
    proc = mska("train", "--config", str(write_config(tmp_path)), "--set", "data.source=pose",
                "--set", f"data.path={root}", "--set", "train.epochs=1", "--set", "train.max_steps=1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    (step,) = [r for r in records if r["kind"] == "train"]
    assert np.isfinite(step["loss"]) and step["loss"] > 0
    assert 'source = "pose"' in (Path(summary["run_dir"]) / "config.toml").read_text()

    checkpoint = summary["best"] or summary["last"]
    np.save(tmp_path / "good.npy", corpus.test[0].keypoints.numpy())
    np.save(tmp_path / "nan.npy", np.full((16, 133, 3), np.nan, dtype=np.float32))
    refused = mska("predict", "--checkpoint", checkpoint, str(tmp_path / "nan.npy"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "clip 'nan'" in refused.stderr and "NaN" in refused.stderr and "--invalid repair" in refused.stderr
    repaired = mska("predict", "--checkpoint", checkpoint, "--invalid", "repair", str(tmp_path / "good.npy"),
                    str(tmp_path / "nan.npy"), "--json")
    assert repaired.returncode == 1, repaired.stderr
    good, nan = json.loads(repaired.stdout)
    assert isinstance(good["gloss"], str) and good["translation"] is not None
    assert nan["gloss"] is None and nan["translation"] is None and nan["error"] == "no usable keypoints"


def test_crop_streams_on_a_source_that_renders_no_crops_are_a_clear_error(tmp_path):
    from mska_core.config import AugmentConfig
    from mska_core.data.datasets import ClipDataset
    from mska_core.data.vocab import Vocabularies

    corpus = load_corpus(DataConfig(source="directory", path=str(_directory_corpus(tmp_path, {"a": _clip().numpy()}))),
                         registry=get_registry())
    assert corpus.render_crops is None  # only the synthetic source renders crops
    with pytest.raises(DataError, match=r"data.crops: streams face read crops, but this data source renders none"):
        ClipDataset(corpus.train, Vocabularies.from_samples(corpus.train), AugmentConfig(), train=True,
                    crop_streams=[get_registry().streams.get("face")], render_crops=corpus.render_crops)


def test_mska_data_sources_are_listed_by_mska_plugins(mska):
    import json

    proc = mska("plugins", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    provided = {p["name"]: p["provides"].get("mska_data_sources", []) for p in json.loads(proc.stdout)["plugins"]}
    assert provided["core-synthetic"] == ["synthetic"]
    assert provided["core-data"] == ["mska-pickle", "directory", "pose", "shards"]
    table = mska("plugins", "--all")
    assert table.returncode == 0 and "data sources" in table.stdout + table.stderr


# --- options of a data source ([data.options]) -----------------------------------------------------


class SplitFieldSource:
    """A plugin source that declares options and serves one clip per declared ``copies``."""

    __name__ = "split_field_source"

    def __init__(self) -> None:
        self.received: list[dict] = []

    def open(self, data, layout):
        self.received.append(dict(data.options))
        samples = [Sample(name=f"c{i}", keypoints=_clip(), gloss="A", text="a") for i in range(data.options["copies"])]
        return Corpus(train=samples, dev=samples[:1], test=samples[:1], source="split-field", layout=layout.name)

    @hookimpl
    def mska_data_sources(self):
        return [DataSource(name="split-field", open=self.open, options={"split_field": "split", "copies": 2})]


def test_data_options_reach_the_source_with_its_declared_defaults():
    plugin = SplitFieldSource()
    registry = make_registry(plugin)
    corpus = load_corpus(DataConfig(source="split-field", options={"copies": 3}), registry=registry)
    assert len(corpus.train) == 3
    assert plugin.received == [{"split_field": "split", "copies": 3}]
    load_corpus(DataConfig(source="split-field"), registry=registry)
    assert plugin.received[-1] == {"split_field": "split", "copies": 2}


def test_an_unknown_data_option_is_refused_with_the_dotted_key_and_the_nearest_one():
    from mska_core.errors import ConfigError

    registry = make_registry(SplitFieldSource())
    with pytest.raises(ConfigError, match=r"unknown key 'data.options.split_fild' \(did you mean 'split_field'\?\); "
                                          r"data source 'split-field' \(plugin 'split_field_source'.*takes: split_field, copies"):
        load_corpus(DataConfig(source="split-field", options={"split_fild": "x"}), registry=registry)
    with pytest.raises(ConfigError, match=r"data.options.copies: expected an integer .* got 'many'"):
        load_corpus(DataConfig(source="split-field", options={"copies": "many"}), registry=registry)
    with pytest.raises(ConfigError, match=r"unknown key 'data.options.split_field'; data source 'synthetic' .*takes: no options"):
        load_corpus(DataConfig(source="synthetic", options={"split_field": "x"}), registry=get_registry())


SOURCE_PLUGIN = """
    from mska_core import DataSource, hookimpl

    def open_corpus(data, layout):
        raise NotImplementedError

    @hookimpl
    def mska_data_sources():
        return [DataSource(name="tsv-plus", open=open_corpus, options={"split_field": "split"})]
"""


def test_mska_config_validate_checks_data_options_against_the_source(tmp_path: Path):
    from conftest import mska_env, run_mska
    from plugin_fixtures import install_distribution
    from test_reliability_runs import one_error_line

    site = install_distribution(tmp_path / "site", "tsv-plus", "1.2", {"tsv-plus": "tsv_plus"},
                                {"tsv_plus": SOURCE_PLUGIN})
    config = tmp_path / "c.toml"
    config.write_text('[data]\nsource = "tsv-plus"\n\n[data.options]\nsplit_field = "fold"\n')
    env = mska_env(PYTHONPATH=str(site), MSKA_LOAD_PLUGINS="tsv-plus")
    proc = run_mska("config", "validate", str(config), env=env)
    assert proc.returncode == 0, proc.stderr
    line = one_error_line(run_mska("config", "validate", str(config), "--set", "data.options.split_fields=1", env=env))
    assert "unknown key 'data.options.split_fields' (did you mean 'split_field'?)" in line
    assert "data source 'tsv-plus' (plugin 'tsv-plus' (tsv-plus 1.2))" in line

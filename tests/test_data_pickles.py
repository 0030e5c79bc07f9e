"""MSKA / TwoStream pickles: the reference's layout and normalisation, and refusal of code-running files."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch

from mska_core import get_registry
from mska_core.config import DataConfig
from mska_core.data.datasets import load_corpus
from mska_core.data.pickles import load_split, read_pickle
from mska_core.errors import UnsafeCheckpointError


def reference_split(count: int = 3, frames: int = 9) -> dict:
    """A split as the reference keeps it: name -> {name, gloss, text, num_frames, keypoint [T, 133, 3]}."""
    gen = torch.Generator().manual_seed(0)
    split = {}
    for i in range(count):
        name = f"train/clip{i}"
        keypoint = torch.rand(frames, 133, 3, generator=gen) * torch.tensor([210.0, 260.0, 1.0])
        split[name] = {"name": name, "gloss": "REGEN MORGEN", "text": "morgen regnet es",
                       "num_frames": frames, "keypoint": keypoint}
    return split


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_reference_pickle_reads_back_exactly(tmp_path, protocol):
    split = reference_split()
    path = tmp_path / "labels.train"
    with path.open("wb") as handle:
        pickle.dump(split, handle, protocol=protocol)
    back = read_pickle(path)
    assert list(back) == list(split)
    for name in split:
        assert torch.equal(back[name]["keypoint"], split[name]["keypoint"])
        assert back[name]["num_frames"] == split[name]["num_frames"]


def test_numpy_keypoints_are_read_too(tmp_path):
    split = {"a": {"name": "a", "gloss": "A", "text": "a", "num_frames": np.int64(4),
                   "keypoint": np.ones((4, 133, 3), np.float32)}}
    for protocol in (2, 5):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps(split, protocol=protocol))
        assert np.array_equal(read_pickle(path)["a"]["keypoint"], split["a"]["keypoint"])


def test_reference_normalisation_flips_y_and_maps_to_unit_range(tmp_path):
    keypoint = torch.zeros(4, 133, 3)
    keypoint[:, 0] = torch.tensor([0.0, 0.0, 0.9])  # top-left corner, confidence 0.9
    keypoint[:, 1] = torch.tensor([210.0, 260.0, 0.5])  # bottom-right corner
    keypoint[:, 2] = torch.tensor([105.0, 130.0, 0.0])  # centre
    path = tmp_path / "labels.dev"
    path.write_bytes(pickle.dumps({"c": {"name": "c", "gloss": "A", "text": "a", "num_frames": 4,
                                         "keypoint": keypoint}}))
    sample = load_split(path, width=210, height=260)[0]
    assert sample.keypoints[0, 0].tolist() == pytest.approx([-1.0, 1.0, 0.9])
    assert sample.keypoints[0, 1].tolist() == pytest.approx([1.0, -1.0, 0.5])
    assert sample.keypoints[0, 2].tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_corpus_reads_the_reference_file_names(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"labels.{split}").write_bytes(pickle.dumps(reference_split(2)))
    corpus = load_corpus(DataConfig(source="mska-pickle", path=str(tmp_path)), registry=get_registry())
    assert len(corpus.train) == len(corpus.dev) == len(corpus.test) == 2
    assert corpus.train[0].gloss == "REGEN MORGEN"
    assert corpus.train[0].keypoints.shape == (9, 133, 3)


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "labels.train"
    path.write_bytes(pickle.dumps({"x": {"keypoint": _RunsCode(str(marker))}}))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_pickle(path)
    assert not marker.exists()
    # The real thing: pickle.load would have run it.
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_code_hidden_in_a_tensor_storage_is_refused(tmp_path):
    # torch.storage._load_from_bytes is allowed, but what it holds is read with weights_only=True.
    marker = tmp_path / "ran"
    inner = io.BytesIO()
    torch.save(_RunsCode(str(marker)), inner)

    class Smuggler:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    path = tmp_path / "labels.dev"
    path.write_bytes(pickle.dumps({"x": {"keypoint": Smuggler()}}))
    with pytest.raises(UnsafeCheckpointError, match="tensor storage"):
        read_pickle(path)
    assert not marker.exists()

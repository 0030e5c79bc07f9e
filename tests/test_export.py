"""``mska export --onnx``: the artefact equals torch at several lengths and batch sizes, carries its
vocabulary and preprocessing, and ``mska predict --onnx`` prints the checkpoint's glosses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_mska
from test_train import write_config

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run trained one epoch (with a translation decoder) and its ONNX export, both through
    the real command line: ``(best.pt, model.onnx)``."""
    folder = tmp_path_factory.mktemp("export")
    result = run_mska("train", "--config", str(write_config(folder)), "--set", "train.epochs=1", "--json")
    assert result.returncode == 0, result.stderr
    best = Path(json.loads(result.stdout)["best"])
    onnx_path = folder / "deploy" / "model.onnx"
    result = run_mska("export", "--checkpoint", str(best), "--onnx", str(onnx_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["onnx"] == str(onnx_path) and report["max_relative_error"] < 1e-4
    return best, onnx_path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from mska_core.config import SyntheticConfig
    from mska_core.synthetic.corpus import make_corpus

    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for index, clip in enumerate(make_corpus(SyntheticConfig(num_train=1, num_dev=1, num_test=3, vocab_size=5)).test):
        paths.append(folder / f"clip{index}.npy")
        np.save(paths[-1], clip.keypoints.numpy())
    return paths


@pytest.mark.parametrize(("batch", "frames"), [(1, 8), (2, 24), (3, 61)])
def test_onnx_outputs_equal_torch_within_1e_4_relative(exported, batch, frames):
    import onnxruntime

    from mska_core.export.onnx import RecognitionGraph
    from mska_core.registry import get_registry
    from mska_core.training.trained import load_trained

    best, onnx_path = exported
    trained = load_trained(best, registry=get_registry())
    graph = RecognitionGraph(trained.model.encoder).eval()
    generator = torch.Generator().manual_seed(batch * 100 + frames)
    keypoints = torch.rand(batch, frames, 133, 3, generator=generator)
    keypoints[..., :2] = keypoints[..., :2] * 2 - 1
    lengths = torch.tensor([frames, frames // 2 + 1, 5][:batch])
    with torch.no_grad():
        expected = graph(keypoints, lengths)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["log_probs.fuse", "log_probs.hand", "lengths_out"]
    got = session.run(None, {"keypoints": keypoints.numpy(), "lengths": lengths.numpy()})
    assert torch.equal(torch.from_numpy(got[-1]), expected[-1])
    for value, reference in zip(got[:-1], expected[:-1]):
        assert value.shape == tuple(reference.shape) and value.shape[:2] == (batch, (frames + 3) // 4)
        np.testing.assert_allclose(value, reference.numpy(), rtol=1e-4, atol=1e-6)


def test_the_metadata_holds_the_vocabulary_layout_and_preprocessing(exported):
    import onnx

    best, onnx_path = exported
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    stored = torch.load(best, weights_only=True)
    assert props["mska.format"] == "mska-onnx" and props["mska.format_version"] == "1"
    assert json.loads(props["mska.gloss_vocabulary"]) == stored["vocabularies"]["gloss"]["tokens"]
    assert json.loads(props["mska.heads"]) == ["fuse", "hand"]
    assert props["mska.layout"] == "coco_wholebody" and props["mska.num_joints"] == "133"
    preprocessing = json.loads(props["mska.preprocessing"])
    assert preprocessing["frame_multiple"] == 4
    assert preprocessing["normalize"] == stored["config"]["data"]["normalize"]
    assert props["mska.translation"] == "not exported"
    graph_inputs = onnx.load(str(onnx_path)).graph.input
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph_inputs]
    assert isinstance(dims[0][0], str) and isinstance(dims[0][1], str) and dims[0][2:] == [133, 3]


def test_predict_onnx_prints_the_glosses_predict_checkpoint_prints(exported, clips):
    best, onnx_path = exported
    names = [str(p) for p in clips]
    from_onnx = run_mska("predict", "--onnx", str(onnx_path), *names)
    from_checkpoint = run_mska("predict", "--checkpoint", str(best), *names)
    assert from_onnx.returncode == 0 and from_checkpoint.returncode == 0, from_onnx.stderr + from_checkpoint.stderr
    assert from_onnx.stdout == "".join(line + "\n" for line in from_checkpoint.stdout.splitlines()
                                       if not line.startswith("  translation:"))
    assert from_onnx.stdout.count("gloss:") == 3
    assert "translation decoder is not in the ONNX export" in from_onnx.stderr
    as_json = json.loads(run_mska("predict", "--onnx", str(onnx_path), *names, "--json").stdout)
    reference = json.loads(run_mska("predict", "--checkpoint", str(best), *names, "--json").stdout)
    assert [r["glosses"] for r in as_json] == [r["glosses"] for r in reference]
    assert all(r["translation"] is None for r in as_json)


def test_predict_onnx_in_windows_gives_the_checkpoints_windows(exported, clips):
    best, onnx_path = exported
    args = (str(clips[2]), "--window", "16", "--json")
    from_onnx = json.loads(run_mska("predict", "--onnx", str(onnx_path), *args).stdout)
    from_checkpoint = json.loads(run_mska("predict", "--checkpoint", str(best), *args).stdout)
    assert from_onnx[0]["windows"] == from_checkpoint[0]["windows"] > 1
    assert from_onnx[0]["glosses"] == from_checkpoint[0]["glosses"]


def test_a_file_that_is_not_an_export_is_one_line_and_exit_code_2(tmp_path, exported, clips):
    import onnx

    best, onnx_path = exported
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    result = run_mska("predict", "--onnx", str(tmp_path / "junk.onnx"), str(clips[0]))
    assert result.returncode == 2 and "onnxruntime cannot read it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    result = run_mska("predict", "--onnx", str(tmp_path / "bare.onnx"), str(clips[0]))
    assert result.returncode == 2 and "not an ONNX model written by mska export" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_refuses_crop_streams_in_one_line(tmp_path):
    from mska_core.backbones.vit import build_vit
    from mska_core.encoder import MSKAEncoder
    from mska_core.errors import ExportError
    from mska_core.export.onnx import refuse_crop_streams
    from mska_core.registry import get_registry
    from mska_core.training.model import SignModel
    from mska_core.training.trained import TrainedModel
    from test_train import tiny_config

    torch.save(build_vit("vit_tiny_test", img_size=28).state_dict(), tmp_path / "vit.pt")
    config = tiny_config(tmp_path, "data.crops=true", f'model.streams.face.backbone="file::{tmp_path / "vit.pt"}:vit_tiny_test"')
    encoder = MSKAEncoder.from_config(config.model, vocab_size=5, registry=get_registry())
    trained = TrainedModel(model=SignModel(encoder), config=config, vocabularies=None, payload={},
                           path=tmp_path / "best.pt")
    with pytest.raises(ExportError, match=r"streams face read image crops.*\[data\] crops = false") as error:
        refuse_crop_streams(trained)
    assert "\n" not in str(error.value)


def test_export_without_the_onnx_packages_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from mska_core.errors import ExportError
    from mska_core.export.onnx import export_onnx

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    with pytest.raises(ExportError, match=r"needs onnxscript: pip install 'mska-core\[onnx\]'"):
        export_onnx(tmp_path / "best.pt", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()

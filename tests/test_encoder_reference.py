"""The reference implementation's checkpoints (sutwangyan/MSKA) convert into the paper preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mska_core.checkpoints.paper import (
    convert_reference_state_dict,
    is_reference_state_dict,
    to_reference_state_dict,
)
from mska_core.config import load_config
from mska_core.encoder import ClipBatch, MSKAEncoder
from mska_core.errors import CheckpointError

PAPER_PRESET = Path(__file__).resolve().parents[1] / "examples" / "configs" / "mska-slr-paper.toml"
VOCAB = 40
PREFIX = "recognition_network.visual_backbone_keypoint."


@pytest.fixture(scope="module")
def paper_encoder() -> MSKAEncoder:
    torch.manual_seed(0)
    encoder = MSKAEncoder.from_config(load_config(PAPER_PRESET).model, vocab_size=VOCAB)
    with torch.no_grad():  # trained-looking statistics, so that a misplaced tensor shows in the outputs
        for name, tensor in encoder.state_dict().items():
            if name.endswith("running_mean"):
                tensor.normal_(0, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(("alpha", "global_attention")):
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return encoder.eval()


def reference_checkpoint(encoder: MSKAEncoder) -> dict:
    """A reference-style state dict: our tensors under the reference's names, plus its constant buffers."""
    state = to_reference_state_dict(encoder.state_dict())
    for stream, joints in (("left", 27), ("right", 27), ("face", 26), ("body", 79)):
        for depth, channels in enumerate((64, 64, 64, 128, 128, 256, 256, 256)):
            state[f"{PREFIX}{stream}_graph_layers.{depth}.atts"] = torch.zeros(1, 6, joints, joints)
            state[f"{PREFIX}{stream}_graph_layers.{depth}.pes.pe"] = torch.zeros(1, channels, 4, joints)
    for head in ("fuse", "left", "right", "body"):
        state[f"recognition_network.{head}_visual_head.pe.pe"] = torch.zeros(1, 8, 512)
    return state


def test_reference_names_and_shapes(paper_encoder):
    state = reference_checkpoint(paper_encoder)
    assert is_reference_state_dict(state)
    assert state[f"{PREFIX}left_input_map.0.weight"].shape == (64, 3, 1, 1)
    assert state[f"{PREFIX}body_graph_layers.0.in_nets.weight"].shape == (2 * 6 * 16, 64, 1, 1)
    assert state[f"{PREFIX}body_graph_layers.0.alphas"].shape == (1, 6, 1, 1)
    assert state[f"{PREFIX}body_graph_layers.0.attention0s"].shape == (1, 6, 79, 79)
    assert state[f"{PREFIX}face_graph_layers.4.out_nets.0.weight"].shape == (256, 6 * 128, 1, 1)
    assert state[f"{PREFIX}face_graph_layers.0.out_nett.0.weight"].shape == (64, 64, 7, 1)
    assert f"{PREFIX}right_graph_layers.4.downt2.1.running_var" in state
    assert f"{PREFIX}right_graph_layers.5.downs1.0.weight" not in state  # 256 -> 256, stride 1: identity
    assert state["recognition_network.fuse_visual_head.feedforward.pwff_layer.0.weight"].shape == (2048, 512, 3)
    assert state["recognition_network.body_visual_head.gloss_output_layer.weight"].shape == (VOCAB, 512)
    assert not is_reference_state_dict(paper_encoder.state_dict())


def test_a_reference_checkpoint_round_trips_into_the_paper_preset(paper_encoder, tmp_path):
    path = tmp_path / "best.pth"
    torch.save({"model": reference_checkpoint(paper_encoder), "optimizer": {}, "scheduler": {}, "epoch": 3}, path)
    checkpoint = torch.load(path, weights_only=True)
    converted = convert_reference_state_dict(checkpoint["model"])

    fresh = MSKAEncoder.from_config(load_config(PAPER_PRESET).model, vocab_size=VOCAB).eval()
    fresh.load_state_dict(converted, strict=True)
    points = torch.rand(2, 24, 133, 3) * 2 - 1
    batch = ClipBatch(points, torch.tensor([24, 24]))
    with torch.no_grad():
        expected, got = paper_encoder(batch), fresh(batch)
    for head in expected.logits:
        torch.testing.assert_close(got.logits[head], expected.logits[head], rtol=0, atol=0)
        torch.testing.assert_close(got.gloss_features[head], expected.gloss_features[head], rtol=0, atol=0)


def test_ddp_prefixes_and_translation_keys_are_handled(paper_encoder):
    state = {f"module.{k}": v for k, v in to_reference_state_dict(paper_encoder.state_dict()).items()}
    state["module.translation_network.model.shared.weight"] = torch.zeros(3, 3)
    converted = convert_reference_state_dict(state)
    assert set(converted) == set(paper_encoder.state_dict())


def test_a_nonzero_constant_attention_is_folded_into_the_global_matrix(paper_encoder):
    state = to_reference_state_dict(paper_encoder.state_dict())
    atts = torch.full((1, 6, 26, 26), 0.25)
    state[f"{PREFIX}face_graph_layers.2.atts"] = atts
    converted = convert_reference_state_dict(state)
    ours = paper_encoder.state_dict()["branches.face.keypoint.blocks.2.global_attention"]
    torch.testing.assert_close(converted["branches.face.keypoint.blocks.2.global_attention"], ours + 0.25)


def test_an_unknown_reference_key_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="no counterpart"):
        convert_reference_state_dict({f"{PREFIX}left_graph_layers.0.attention0t": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="not part of the MSKA reference"):
        convert_reference_state_dict({"encoder.layers.0.weight": torch.zeros(1)})

"""``load_mska_encoder_state``: exports routed to crop backbones and keypoint branches, with hand replication."""

from __future__ import annotations

import pytest
import torch

from mska_core import load_mska_encoder_state
from mska_core.backbones import build_arch, timm_to_official
from mska_core.checkpoints import WeightMismatchError, make_payload, save_checkpoint
from mska_core.config import config_from_dict
from mska_core.errors import CheckpointError

encoder_module = pytest.importorskip("mska_core.encoder")
MSKAEncoder = encoder_module.MSKAEncoder

TINY_MODEL = {
    "channels": [8, 8], "inter_channels": [4, 4], "temporal_kernels": [3, 3], "strides": [2, 2],
    "num_heads": 2, "head_hidden": 16, "head_ff": 32, "crop_dim": 16, "vocab_size": 10,
}


@pytest.fixture(scope="module")
def face_backbone_file(tmp_path_factory):
    """The backbone the config's face stream starts from (random, tiny)."""
    torch.manual_seed(1)
    model = build_arch("vit_tiny_test", img_size=56)
    path = tmp_path_factory.mktemp("init") / "face_init.pt"
    return save_checkpoint(make_payload("backbone", model.state_dict(), stream="face", arch=model.arch,
                                        arch_config=model.arch_config), path)


def tiny_encoder(face_backbone_file, **model: object) -> MSKAEncoder:
    streams = {"face": {"backbone": f"file::{face_backbone_file}:vit_tiny_test", "img_size": 56},
               "hand_left": {}, "hand_right": {}, "body": {}}
    return MSKAEncoder.from_config(config_from_dict({"model": {**TINY_MODEL, "streams": streams, **model}}).model)


def hand_export(encoder: MSKAEncoder, tmp_path, name: str = "hand.pt"):
    """What a keypoint-encoder export of the hand weights looks like."""
    with torch.no_grad():
        for p in encoder.branches["hand_left"].keypoint.parameters():
            p.normal_()
    state = {k: v.clone() for k, v in encoder.branches["hand_left"].keypoint.state_dict().items()}
    return save_checkpoint(make_payload("stream-encoder", state, stream="hand"), tmp_path / name), state


def face_export(tmp_path, seed: int = 5):
    """What DINO pretraining exports for the face: a stream-encoder payload with an arch and ViT keys."""
    torch.manual_seed(seed)
    model = build_arch("vit_tiny_test", img_size=56)
    payload = make_payload("stream-encoder", model.state_dict(), stream="face", arch=model.arch,
                           arch_config=model.arch_config)
    return save_checkpoint(payload, tmp_path / f"face{seed}.pt"), model


def test_hand_export_goes_to_both_hands_as_independent_copies(tmp_path, face_backbone_file):
    source = tiny_encoder(face_backbone_file)
    path, state = hand_export(source, tmp_path)
    target = tiny_encoder(face_backbone_file)
    report = load_mska_encoder_state(target, hand=path)
    assert report.ok and [e.stream for e in report.streams] == ["hand_left", "hand_right"]
    assert {e.target for e in report.streams} == {"branches.hand_left.keypoint", "branches.hand_right.keypoint"}
    left, right = (target.branches[s].keypoint.state_dict() for s in ("hand_left", "hand_right"))
    for key, value in state.items():
        torch.testing.assert_close(left[key], value)
        torch.testing.assert_close(right[key], value)
    weight = next(target.branches["hand_left"].keypoint.parameters())
    twin = next(target.branches["hand_right"].keypoint.parameters())
    assert weight.data_ptr() != twin.data_ptr()
    before = twin.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    torch.testing.assert_close(twin.detach(), before)


def test_face_crop_export_goes_to_the_crop_backbone(tmp_path, face_backbone_file):
    path, model = face_export(tmp_path)
    encoder = tiny_encoder(face_backbone_file)
    keypoint_before = {k: v.clone() for k, v in encoder.branches["face"].keypoint.state_dict().items()}
    report = load_mska_encoder_state(encoder, face=path)
    assert report["face"].target == "branches.face.crop.backbone" and report["face"].holds == "image backbone"
    backbone = encoder.branches["face"].crop.backbone.eval()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), model.eval()(x))
    for key, value in encoder.branches["face"].keypoint.state_dict().items():
        torch.testing.assert_close(value, keypoint_before[key])


def test_official_layout_weights_convert_into_the_crop_backbone(tmp_path, face_backbone_file):
    _, model = face_export(tmp_path, seed=9)
    torch.save(timm_to_official(model.state_dict()), tmp_path / "official.pth")
    encoder = tiny_encoder(face_backbone_file)
    assert load_mska_encoder_state(encoder, face=tmp_path / "official.pth").ok
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(encoder.branches["face"].crop.backbone.eval()(x), model.eval()(x))


def test_per_stream_entries_override_the_hand_group(tmp_path, face_backbone_file):
    source = tiny_encoder(face_backbone_file)
    hand_path, hand_state = hand_export(source, tmp_path, "hand.pt")
    right_path, right_state = hand_export(source, tmp_path, "right.pt")
    target = tiny_encoder(face_backbone_file)
    load_mska_encoder_state(target, hand=hand_path, streams={"hand_right": right_path})
    key = next(iter(hand_state))
    torch.testing.assert_close(target.branches["hand_left"].keypoint.state_dict()[key], hand_state[key])
    torch.testing.assert_close(target.branches["hand_right"].keypoint.state_dict()[key], right_state[key])


def test_image_weights_for_a_keypoint_only_stream_say_what_fits_where(tmp_path, face_backbone_file):
    path, _ = face_export(tmp_path)
    encoder = tiny_encoder(face_backbone_file)
    with pytest.raises(CheckpointError) as info:
        load_mska_encoder_state(encoder, hand=path)
    message = str(info.value)
    assert "\n" not in message
    assert "stream 'hand_left'" in message and "holds image backbone (ViT) weights" in message
    assert "expects keypoint-branch weights" in message and "[model.streams.hand_left] backbone" in message


def test_strict_loading_loads_nothing_when_a_stream_does_not_fit(tmp_path, face_backbone_file):
    wider = tiny_encoder(face_backbone_file, channels=[8, 12], inter_channels=[4, 6])
    bad_hand, _ = hand_export(wider, tmp_path)
    face_path, _ = face_export(tmp_path)
    encoder = tiny_encoder(face_backbone_file)
    face_before = {k: v.clone() for k, v in encoder.branches["face"].crop.backbone.state_dict().items()}
    with pytest.raises(WeightMismatchError) as info:
        load_mska_encoder_state(encoder, face=face_path, hand=bad_hand)
    assert "stream 'hand_left'" in str(info.value) and "of another shape" in str(info.value)
    assert info.value.mismatch.mismatched
    for key, value in encoder.branches["face"].crop.backbone.state_dict().items():
        torch.testing.assert_close(value, face_before[key])  # nothing was loaded


def test_non_strict_loading_reports_what_did_not_fit(tmp_path, face_backbone_file):
    wider = tiny_encoder(face_backbone_file, channels=[8, 12], inter_channels=[4, 6])
    bad_hand, _ = hand_export(wider, tmp_path)
    report = load_mska_encoder_state(tiny_encoder(face_backbone_file), hand=bad_hand, strict=False)
    assert not report.ok and report["hand_left"].loaded and report["hand_left"].mismatch.mismatched


def test_unknown_stream_and_missing_group_are_errors(tmp_path, face_backbone_file):
    path, _ = face_export(tmp_path)
    encoder = tiny_encoder(face_backbone_file)
    with pytest.raises(CheckpointError, match=r"'hand_middle'.*no such stream.*streams: face, hand_left"):
        load_mska_encoder_state(encoder, streams={"hand_middle": path})
    body_only = MSKAEncoder.from_config(config_from_dict({"model": {**TINY_MODEL, "streams": {"body": {}}}}).model)
    with pytest.raises(CheckpointError, match=r"no stream of this encoder is in weight group 'hand'"):
        load_mska_encoder_state(body_only, hand=path)


def test_a_whole_model_gives_each_stream_its_part(tmp_path, face_backbone_file):
    source = tiny_encoder(face_backbone_file)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    path = save_checkpoint(make_payload("model", source.state_dict()), tmp_path / "model.pt")
    target = tiny_encoder(face_backbone_file)
    report = load_mska_encoder_state(target, streams={"body": path, "hand_right": path})
    assert report.ok
    for stream in ("body", "hand_right"):
        for key, value in source.branches[stream].state_dict().items():
            torch.testing.assert_close(target.branches[stream].state_dict()[key], value)


def test_payload_dicts_and_state_dicts_are_accepted(face_backbone_file):
    source = tiny_encoder(face_backbone_file)
    state = source.branches["body"].keypoint.state_dict()
    target = tiny_encoder(face_backbone_file)
    assert load_mska_encoder_state(target, streams={"body": dict(state)}).ok
    assert load_mska_encoder_state(target, streams={"body": make_payload("stream-encoder", state)}).ok


def test_any_weight_group_is_loaded_by_name_and_face_hand_are_its_shorthands(tmp_path, face_backbone_file):
    source = tiny_encoder(face_backbone_file)
    path, state = hand_export(source, tmp_path)
    target = tiny_encoder(face_backbone_file)
    report = load_mska_encoder_state(target, groups={"hand": path})
    assert [e.stream for e in report.streams] == ["hand_left", "hand_right"]
    for stream in ("hand_left", "hand_right"):
        torch.testing.assert_close(target.branches[stream].keypoint.state_dict(), state)
    with pytest.raises(CheckpointError, match=r"weight group 'hand' is given twice"):
        load_mska_encoder_state(target, hand=path, groups={"hand": path})

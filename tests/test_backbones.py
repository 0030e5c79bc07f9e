"""Backbone specs, loaders and the weight layouts researchers have, with real files."""

from __future__ import annotations

import argparse

import pytest
import torch

from mska_core.backbones import build_arch, load_backbone, parse_spec, split_file_payload
from mska_core.checkpoints import WeightMismatchError, make_payload, save_checkpoint
from mska_core.errors import BackboneError, MskaError


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_arch("vit_tiny_test").eval()


def _x(size: int = 112) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))


def _same_features(model, reference) -> None:
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), reference(_x()))


# -- spec strings ---------------------------------------------------------------------------------


def test_spec_splits_at_the_first_separator():
    assert parse_spec("file::a::b.pt:vit_tiny_test") == ("file", "a::b.pt:vit_tiny_test")


def test_spec_without_separator_lists_schemes_and_suggests_file():
    with pytest.raises(BackboneError, match=r"no '::'.*file::, hub::, timm::.*'file::weights/face.pt'"):
        parse_spec("weights/face.pt")


def test_unknown_scheme_lists_the_registered_ones():
    with pytest.raises(BackboneError, match=r"unknown scheme 'fille' \(did you mean 'file'\?\); registered: file::"):
        parse_spec("fille::x.pt")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("w/face.pt:dinov2_vits14", ("w/face.pt", "dinov2_vits14")),
        ("w/face.pt", ("w/face.pt", None)),
        ("C:\\weights\\face.pt", ("C:\\weights\\face.pt", None)),
        ("C:\\weights\\face.pt:vit_tiny_test", ("C:\\weights\\face.pt", "vit_tiny_test")),
        ("C:face.pt", ("C:face.pt", None)),
        ("/runs/12:30/face.pt", ("/runs/12:30/face.pt", None)),
        ("/runs/12:30/face.pt:dinov2_vits14_reg", ("/runs/12:30/face.pt", "dinov2_vits14_reg")),
    ],
)
def test_file_payload_splits_only_at_a_trailing_identifier(payload, expected):
    assert split_file_payload(payload) == expected


def test_an_existing_file_whose_name_ends_like_an_arch_is_a_path(tmp_path, tiny):
    path = tmp_path / "weights:vit_tiny_test"
    save_checkpoint(make_payload("backbone", tiny.state_dict(), arch="vit_tiny_test"), path)
    assert split_file_payload(str(path)) == (str(path), None)
    _same_features(load_backbone(f"file::{path}"), tiny)


def test_path_with_colons_and_arch_loads(tmp_path, tiny):
    folder = tmp_path / "run:12:30"
    save_checkpoint(make_payload("backbone", tiny.state_dict()), folder / "face.pt")
    _same_features(load_backbone(f"file::{folder / 'face.pt'}:vit_tiny_test"), tiny)


def test_unknown_arch_lists_valid_ones(tmp_path):
    with pytest.raises(MskaError, match=r"unknown backbone architecture 'dinov2_vitz14'.*registered: dinov2_vits14"):
        load_backbone(f"file::{tmp_path / 'x.pt'}:dinov2_vitz14")


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(BackboneError, match=r"does not exist") as info:
        load_backbone(f"file::{tmp_path / 'nope.pt'}:vit_tiny_test")
    assert "\n" not in str(info.value)


def test_file_without_arch_anywhere_asks_for_one(tmp_path, tiny):
    torch.save(tiny.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(BackboneError, match=r"records no architecture; name one: 'file::.*:ARCH' with ARCH one of"):
        load_backbone(f"file::{tmp_path / 'sd.pt'}")


# -- the built model ------------------------------------------------------------------------------


def test_built_backbone_maps_images_to_features_and_describes_itself(tiny):
    assert tiny.feature_dim == 48 and tiny.arch == "vit_tiny_test"
    assert tiny.arch_config["img_size"] == 112 and tiny.arch_config["patch_size"] == 14
    with torch.no_grad():
        assert tiny(_x()).shape == (2, 48)
        assert tiny(_x(56)).shape == (2, 48)  # other sizes work too (position embedding resized)


def test_dinov2_arch_builds_at_112_px():
    model = build_arch("dinov2_vits14", img_size=112)
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 384) and model.feature_dim == 384
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 112, 112)).shape == (1, 384)


def test_img_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(BackboneError, match="not a multiple of the patch size 14"):
        build_arch("vit_tiny_test", img_size=100)


# -- weight layouts through file::PATH:ARCH -------------------------------------------------------


def test_our_export_loads_without_naming_the_arch(tmp_path, tiny):
    path = save_checkpoint(
        make_payload("backbone", tiny.state_dict(), stream="face", arch=tiny.arch, arch_config=tiny.arch_config),
        tmp_path / "face.pt",
    )
    _same_features(load_backbone(f"file::{path}"), tiny)


def test_export_resampled_to_another_img_size(tmp_path, tiny):
    path = save_checkpoint(make_payload("backbone", tiny.state_dict(), arch="vit_tiny_test"), tmp_path / "f.pt")
    model = load_backbone(f"file::{path}", img_size=56)
    assert model.pos_embed.shape == (1, 1 + 4 * 4, 48) and model.arch_config["img_size"] == 56


def test_dino_v1_checkpoint_loads_teacher_by_default(tmp_path, tiny):
    student = build_arch("vit_tiny_test")
    checkpoint = {
        "student": {f"module.backbone.{k}": v for k, v in student.state_dict().items()}
        | {"module.head.mlp.0.weight": torch.zeros(8, 48), "module.head.last_layer.weight_g": torch.ones(64, 1)},
        "teacher": {f"backbone.{k}": v for k, v in tiny.state_dict().items()}
        | {"head.mlp.0.weight": torch.zeros(8, 48)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=16, lr=0.0005, local_crops_number=8),
        "dino_loss": {"center": torch.zeros(1, 64)},
    }
    torch.save(checkpoint, tmp_path / "checkpoint.pth")
    _same_features(load_backbone(f"file::{tmp_path / 'checkpoint.pth'}:vit_tiny_test"), tiny)

    from mska_core.checkpoints import load_checkpoint

    chosen = load_checkpoint(tmp_path / "checkpoint.pth", select="student")
    assert chosen.format == "dino" and chosen.metadata["source"] == "student"
    assert chosen.metadata["args"]["local_crops_number"] == 8 and chosen.metadata["epoch"] == 100
    torch.testing.assert_close(chosen.state_dict["backbone.cls_token"], student.state_dict()["cls_token"])


def test_plain_vit_without_layer_scale_loads_with_a_scale_of_one(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    plain = VisionTransformer(img_size=112, patch_size=14, embed_dim=48, depth=2, num_heads=3,
                              num_classes=0, dynamic_img_size=True).eval()
    assert not any(".ls1." in k for k in plain.state_dict())
    torch.save({"teacher": {f"backbone.{k}": v for k, v in plain.state_dict().items()}}, tmp_path / "dino.pth")
    _same_features(load_backbone(f"file::{tmp_path / 'dino.pth'}:vit_tiny_test"), plain)


def test_lightning_checkpoint_loads(tmp_path, tiny):
    torch.save(
        {
            "state_dict": {f"model.backbone.{k}": v for k, v in tiny.state_dict().items()},
            "pytorch-lightning_version": "2.2.1",
            "hyper_parameters": {"lr": 0.001, "arch": "vit_tiny_test"},
            "epoch": 3,
            "global_step": 120,
        },
        tmp_path / "last.ckpt",
    )
    _same_features(load_backbone(f"file::{tmp_path / 'last.ckpt'}:vit_tiny_test"), tiny)


def test_safetensors_file_loads(tmp_path, tiny):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(tmp_path / "face.safetensors"))
    _same_features(load_backbone(f"file::{tmp_path / 'face.safetensors'}:vit_tiny_test"), tiny)


def test_ddp_and_compiled_prefixes_are_stripped(tmp_path, tiny):
    wrapped = {f"module._orig_mod.{k}": v for k, v in tiny.state_dict().items()}
    torch.save(wrapped, tmp_path / "ddp.pt")
    _same_features(load_backbone(f"file::{tmp_path / 'ddp.pt'}:vit_tiny_test"), tiny)


def test_timm_state_dict_at_another_grid_is_resampled(tmp_path):
    source = build_arch("vit_tiny_test", img_size=224).eval()
    torch.save(source.state_dict(), tmp_path / "timm.pth")
    model = load_backbone(f"file::{tmp_path / 'timm.pth'}:vit_tiny_test", img_size=112)
    assert model.pos_embed.shape == (1, 65, 48)


def test_weights_that_do_not_fit_are_reported_by_key(tmp_path, tiny):
    path = save_checkpoint(make_payload("backbone", tiny.state_dict(), arch="vit_tiny_test"), tmp_path / "t.pt")
    with pytest.raises(WeightMismatchError) as info:
        load_backbone(f"file::{path}:dinov2_vits14_reg", img_size=112)
    message, mismatch = str(info.value), info.value.mismatch
    assert "\n" not in message and "missing" in message and "of another shape" in message
    assert "reg_token" in mismatch.missing and "blocks.11.norm1.weight" in mismatch.missing
    assert ("cls_token", (1, 1, 384), (1, 1, 48)) in mismatch.mismatched
    rows = mismatch.rows()
    assert {r[0] for r in rows} == {"missing", "shape"} and len(rows) == len(mismatch.missing) + len(mismatch.mismatched)
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(mismatch.table())
    assert "blocks.11.norm1.weight" in console.export_text()


# -- hub:: and timm:: from local caches only ------------------------------------------------------


def test_hub_loads_cached_weights_of_a_known_arch(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    from mska_core.backbones.vit import timm_to_official

    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(timm_to_official(tiny.state_dict()), tmp_path / "hub" / "checkpoints" / "vit_tiny_test_pretrain.pth")
    _same_features(load_backbone("hub::facebookresearch/dinov2:vit_tiny_test"), tiny)


def test_hub_miss_says_where_it_looked_and_suggests_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(BackboneError) as info:
        load_backbone("hub::facebookresearch/dinov2:dinov2_vits14")
    message = str(info.value)
    assert str(tmp_path / "hub") in message and "file::PATH:dinov2_vits14" in message and "never downloads" in message


def test_timm_model_with_a_file(tmp_path):
    import timm

    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64).eval()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model = load_backbone(f"timm::vit_tiny_patch16_224:{tmp_path / 'w.pth'}", img_size=64)
    assert model.feature_dim == 192
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))


def test_timm_without_cached_weights_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match=r"no weights in the local Hugging Face cache.*never downloads"):
        load_backbone("timm::vit_tiny_patch16_224", img_size=64)


def test_timm_unknown_model(tmp_path):
    with pytest.raises(BackboneError, match="timm has no model 'vit_nonexistent_9'"):
        load_backbone("timm::vit_nonexistent_9")

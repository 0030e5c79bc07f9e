"""Plugins registered in a test extend backbones and checkpoint formats with no change to the core."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mska_core import BackboneArch, BackboneLoader, CheckpointFormat, hookimpl
from mska_core.backbones import load_backbone
from mska_core.checkpoints import Checkpoint, load_checkpoint
from mska_core.registry import make_registry


class MeanColour(nn.Module):
    """A tiny crop backbone: mean colour per channel, linearly projected."""

    def __init__(self, dim: int = 5, img_size: int = 32) -> None:
        super().__init__()
        self.proj = nn.Linear(3, dim)
        self.feature_dim = dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, D]
        return self.proj(images.mean(dim=(2, 3)))


class ColourPlugin:
    __name__ = "colour"

    @hookimpl
    def mska_backbone_loaders(self):
        return [BackboneLoader(scheme="colour", load=lambda payload, options: MeanColour(int(payload)))]

    @hookimpl
    def mska_backbone_archs(self):
        return [BackboneArch(name="mean_colour", build=MeanColour,
                             convert_state_dict=lambda sd, img_size=None: {k.removeprefix("net."): v
                                                                          for k, v in sd.items()},
                             feature_dim=5)]


def _sniff_npz(probe) -> bool:
    return probe.path.suffix == ".npz"


def _read_npz(probe) -> Checkpoint:
    with np.load(probe.path) as arrays:
        state = {key.replace("/", "."): torch.from_numpy(arrays[key]) for key in arrays.files}
    return Checkpoint(format="npz", metadata={"kind": "backbone", "arch": "mean_colour"}, state_dict=state,
                      path=probe.path)


class NpzPlugin:
    __name__ = "npz"

    @hookimpl
    def mska_checkpoint_formats(self):
        return [CheckpointFormat(name="npz", sniff=_sniff_npz, read=_read_npz)]


def test_mska_backbone_loaders_a_plugin_scheme_loads_through_spec_strings():
    registry = make_registry(ColourPlugin())
    backbone = load_backbone("colour::7", registry=registry)
    assert backbone.feature_dim == 7
    assert backbone(torch.rand(2, 3, 16, 16)).shape == (2, 7)


def test_mska_backbone_archs_a_plugin_arch_loads_its_weight_layout_from_a_file(tmp_path: Path):
    registry = make_registry(ColourPlugin())
    source = MeanColour()
    path = tmp_path / "weights.pt"
    torch.save({f"net.{k}": v for k, v in source.state_dict().items()}, path)
    loaded = load_backbone(f"file::{path}:mean_colour", registry=registry)
    images = torch.rand(3, 3, 8, 8)
    assert torch.equal(loaded(images), source(images))


def test_mska_checkpoint_formats_a_plugin_format_reads_its_files(tmp_path: Path):
    registry = make_registry(NpzPlugin())
    path = tmp_path / "weights.npz"
    np.savez(path, **{"proj/weight": np.ones((5, 3), np.float32), "proj/bias": np.zeros(5, np.float32)})
    checkpoint = load_checkpoint(path, registry=registry)
    assert checkpoint.format == "npz"
    assert set(checkpoint.state_dict) == {"proj.weight", "proj.bias"}


def test_mska_checkpoint_formats_a_second_format_with_a_builtin_name_is_contested_not_used(tmp_path: Path):
    import pytest

    from mska_core.checkpoints import make_payload, save_checkpoint
    from mska_core.errors import CheckpointError, DuplicateNameError

    class Shadow:
        __name__ = "shadow"

        @hookimpl
        def mska_checkpoint_formats(self):
            return [CheckpointFormat(name="safetensors", sniff=lambda probe: False, read=_read_npz)]

    registry = make_registry(Shadow(), warn=False)
    with pytest.raises(DuplicateNameError, match=r"checkpoint format 'safetensors' is supplied by .*'shadow'"):
        registry.checkpoint_formats.get("safetensors")
    assert registry.host.infos["shadow"].status == "loaded"
    path = save_checkpoint(make_payload("backbone", {"w": torch.ones(1)}, registry=make_registry()),
                           tmp_path / "w.safetensors", registry=make_registry())
    with pytest.raises(CheckpointError, match=r"'safetensors' is supplied by several plugins .*plugins.providers"):
        load_checkpoint(path, registry=registry)
    chosen = registry.with_choices({"safetensors": "core-checkpoints"})
    assert load_checkpoint(path, registry=chosen).format == "safetensors"

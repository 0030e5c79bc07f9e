"""A run made with a registry other than the process-wide one records that registry's plugins.

The fine-tuning loop and DINO pretraining take their registry from the caller and pass it down;
every checkpoint they write names the plugins of that registry, never those of the process-wide one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mska_core import KeypointLayout, get_registry, hookimpl
from mska_core.checkpoints import make_payload
from mska_core.registry import make_registry


class Witness:
    """A plugin that only the registry under test holds."""

    __name__ = "witness"

    @hookimpl
    def mska_keypoint_layouts(self):
        return [KeypointLayout(name="witness_layout", num_joints=3, parts={"all": (0, 1, 2)})]


@pytest.fixture
def registry():
    made = make_registry(Witness(), warn=False)
    assert made.host.infos["witness"].status == "loaded"
    return made


def recorded_plugins(path: Path) -> dict[str, str]:
    return torch.load(path, map_location="cpu", weights_only=True)["plugins"]


def test_make_payload_records_the_plugins_of_the_registry_it_is_given(registry):
    assert make_payload("backbone", {"w": torch.zeros(1)}, registry=registry)["plugins"] == registry.host.versions()
    assert "witness" not in make_payload("backbone", {"w": torch.zeros(1)})["plugins"]  # the process-wide one


@pytest.mark.slow
def test_a_fine_tuning_run_records_the_plugins_of_its_own_registry_in_best_and_last(tmp_path, registry):
    from test_train import tiny_config

    from mska_core.training.loop import FineTuning

    result = FineTuning(tiny_config(tmp_path, "train.epochs=1"), registry=registry).run()
    assert result.best is not None and result.last is not None
    for path in (result.last, result.best):
        assert recorded_plugins(path) == registry.host.versions()
    assert "witness" not in get_registry().host.infos


@pytest.mark.slow
def test_dino_pretraining_records_the_plugins_of_its_own_registry_in_its_state_and_exports(tmp_path, registry):
    from test_pretrain import tiny_config

    from mska_core.training.dino import pretrain

    result = pretrain(tiny_config(tmp_path, **{
        "pretrain.stream": "face", "pretrain.epochs": 1, "pretrain.export_checkpoint": True,
        "pretrain.output_path": str(tmp_path / "encoder_face.pt"),
        "pretrain.export_backbone": str(tmp_path / "backbone.pt")}), registry=registry)
    assert len(result.exported) == 2
    for path in (result.checkpoint, *result.exported):
        assert recorded_plugins(path) == registry.host.versions()
    assert "witness" not in get_registry().host.infos

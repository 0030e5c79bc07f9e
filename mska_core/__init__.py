"""mska-core: multi-stream sign-language encoders (Multi-Stream Keypoint Attention).

Importing this package is cheap: the records, the ``hookimpl`` marker and the errors load at once;
anything that needs torch (``MSKAEncoder``, ``load_mska_encoder_state``) loads on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mska_core.errors import (
    BackboneError,
    CheckpointError,
    ConfigError,
    DataError,
    MskaError,
    PluginError,
    RegistryError,
)
from mska_core.hookspecs import hookimpl
from mska_core.lazy import lazy_attributes
from mska_core.records import (
    BackboneArch,
    BackboneLoader,
    CheckpointFormat,
    CropRegion,
    DataSource,
    KeypointEstimator,
    KeypointLayout,
    LoggerSpec,
    LossSpec,
    PoseHeaderMap,
    Provider,
    StreamSpec,
    TextDecoderSpec,
)

__version__ = "0.1.0.dev0"

# Public names that need torch, and the module each one lives in.
_LAZY = {
    "MSKAEncoder": "mska_core.encoder",
    "EncoderOutput": "mska_core.encoder",
    "load_mska_encoder_state": "mska_core.checkpoints",
    "load_backbone": "mska_core.backbones",
    "load_checkpoint": "mska_core.checkpoints",
    "save_checkpoint": "mska_core.checkpoints",
}

if TYPE_CHECKING:  # pragma: no cover
    from mska_core.backbones import load_backbone
    from mska_core.checkpoints import load_checkpoint, load_mska_encoder_state, save_checkpoint
    from mska_core.encoder import EncoderOutput, MSKAEncoder


__getattr__ = lazy_attributes(__name__, _LAZY)


def get_registry() -> Any:
    """The process-wide :class:`~mska_core.registry.Registry` (plugins load on first call)."""
    from mska_core.registry import get_registry as _get

    return _get()


__all__ = [
    "BackboneArch",
    "BackboneError",
    "BackboneLoader",
    "CheckpointError",
    "CheckpointFormat",
    "ConfigError",
    "CropRegion",
    "DataError",
    "DataSource",
    "EncoderOutput",
    "KeypointEstimator",
    "KeypointLayout",
    "LoggerSpec",
    "LossSpec",
    "MSKAEncoder",
    "MskaError",
    "PluginError",
    "PoseHeaderMap",
    "Provider",
    "RegistryError",
    "StreamSpec",
    "TextDecoderSpec",
    "__version__",
    "get_registry",
    "hookimpl",
    "load_backbone",
    "load_checkpoint",
    "load_mska_encoder_state",
    "save_checkpoint",
]

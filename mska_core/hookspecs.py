"""The contract between mska-core and its plugins.

Every extension point of mska-core is one hook specification in this module. A plugin is a module
(or any object) whose functions are decorated with :data:`hookimpl` and named after these specs::

    from mska_core import hookimpl, StreamSpec

    @hookimpl
    def mska_streams():
        return [StreamSpec(name="mouth", joints={"coco_wholebody": (71, 72, 73)})]

Rules that hold for every hook:

- Hooks take no arguments and return an iterable of frozen records from :mod:`mska_core.records`
  (return ``[]`` to supply nothing).
- The registry calls each plugin's implementation on its own and stamps every record with the
  plugin, distribution and version that supplied it.
- Two records with one name from two plugins make the name contested: neither is used, and looking
  it up is an error that names both providers, until the user chooses one
  (``[plugins.providers] NAME = "PLUGIN"``) or disables one (``MSKA_DISABLE_PLUGINS=name`` or
  ``[plugins] disable = ["name"]``). Load order never decides; nothing is overwritten or renamed. A
  plugin that supplies one name twice itself is failed.
- Implementations must be cheap: build records, never models. Heavy imports (torch, timm) belong
  inside the factories the records carry.
- A hook that raises, or returns something that is not its record type, marks its plugin as failed.

The project name (pluggy), the entry-point group and the hook prefix are all ``mska``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable

import attrs
import pluggy

from mska_core.records import (
    BackboneArch,
    BackboneLoader,
    CheckpointFormat,
    DataSource,
    KeypointEstimator,
    KeypointLayout,
    LoggerSpec,
    LossSpec,
    StreamSpec,
    TextDecoderSpec,
)

PROJECT = "mska"

_pluggy_spec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's hook implementations with this marker.
hookimpl = pluggy.HookimplMarker(PROJECT)


def hookspec(kind: str, *, attribute: str | None = None) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Mark a function of this module as a hook specification.

    ``kind`` is what one record of the hook is called in messages ("stream", "loss");
    ``attribute`` names the :class:`~mska_core.registry.Registry` attribute that looks the records up
    by name (default: the hook's name without the ``mska_`` prefix). The record type is the one the
    return annotation names (``Iterable[StreamSpec]``). :data:`HOOKS` is read from these marks, so a
    new hook is its spec here, its record in :mod:`mska_core.records` and its section in the plugin
    guide, and nothing else.
    """

    def mark(function: Callable[..., object]) -> Callable[..., object]:
        function.mska_kind = kind  # type: ignore[attr-defined]
        function.mska_attribute = attribute or function.__name__.removeprefix(PROJECT + "_")  # type: ignore[attr-defined]
        return _pluggy_spec(function)

    return mark


@hookspec("keypoint layout", attribute="layouts")
def mska_keypoint_layouts() -> Iterable[KeypointLayout]:
    """Supply skeleton layouts that keypoint clips can be in.

    Return :class:`~mska_core.records.KeypointLayout` records. A layout's name is what configs write
    in ``[model] layout`` and what streams key their joint indices by. The core supplies
    ``coco_wholebody`` (133 joints) and ``mediapipe_holistic`` (543 joints).

    A layout also says which ``.pose`` headers (pose-format) it reads, as
    :class:`~mska_core.records.PoseHeaderMap` records in ``pose_headers`` (component and point names ->
    joint indices; joints no point fills are missing, at confidence 0), and which joints trade places
    in a mirrored recording (``mirror``). Every ``.pose`` file, whether read by ``source = "pose"``,
    ``mska extract --keypoints`` or ``mska predict``, goes through the registered layouts' maps: the
    map that fills the most joints wins.

    A second layout with a name already registered is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_keypoint_layouts():
            hand = [f"p{i}" for i in range(21)]
            return [KeypointLayout(
                name="two_hands", num_joints=42,
                parts={"left_hand": range(21), "right_hand": range(21, 42)},
                pose_headers=[PoseHeaderMap(name="glove", components={
                    "LEFT": {p: i for i, p in enumerate(hand)},
                    "RIGHT": {p: 21 + i for i, p in enumerate(hand)}})],
                mirror=[(i, 21 + i) for i in range(21)])]

    Added in 0.1.0; ``pose_headers`` and ``mirror`` in 0.2.0.
    """


@hookspec("stream")
def mska_streams() -> Iterable[StreamSpec]:
    """Supply streams for the multi-stream encoder.

    Return :class:`~mska_core.records.StreamSpec` records. ``MSKAEncoder`` builds one branch per
    selected stream: by default every registered stream with joints in the config's layout, or the
    streams the config names under ``[model.streams.<name>]``. Installing a plugin that implements
    this hook adds a stream with no change to the core.

    Joint indices are given per layout name; a stream with no entry for the layout in use has no
    keypoint branch there (it may still read crops when ``crops=True``). Streams of one
    ``weight_group`` (``"hand"`` for both hands) are initialised from one pretrained export.

    A second stream with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_streams():
            return [StreamSpec(name="mouth", description="lips",
                               joints={"coco_wholebody": (71, 72, 73, 74, 75, 76, 77)})]

    Added in 0.1.0.
    """


@hookspec("backbone scheme")
def mska_backbone_loaders() -> Iterable[BackboneLoader]:
    """Supply loaders for backbone spec schemes (``SCHEME::PAYLOAD``).

    Return :class:`~mska_core.records.BackboneLoader` records, one per scheme. The core splits a
    spec at the first ``::`` and hands the payload to the loader of that scheme. The core supplies
    ``file``, ``hub`` and ``timm``.

    A second loader for a registered scheme is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_backbone_loaders():
            return [BackboneLoader(scheme="onnx", load=_load_onnx_backbone)]

    Added in 0.1.0.
    """


@hookspec("backbone architecture")
def mska_backbone_archs() -> Iterable[BackboneArch]:
    """Supply architectures that backbone specs can name (``file::PATH:ARCH``).

    Return :class:`~mska_core.records.BackboneArch` records. ``build`` makes the model,
    ``convert_state_dict`` turns the weight layouts this architecture accepts into the one ``build``
    makes. The core supplies ``dinov2_vits14``, ``dinov2_vitb14``, ``dinov2_vitl14``,
    ``dinov2_vitg14``, their ``_reg`` variants and ``vit_tiny_test``.

    A second architecture with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_backbone_archs():
            return [BackboneArch(name="resnet18_crops", build=_build_resnet18,
                                 convert_state_dict=dict, feature_dim=512)]

    Added in 0.1.0.
    """


@hookspec("checkpoint format")
def mska_checkpoint_formats() -> Iterable[CheckpointFormat]:
    """Supply checkpoint file formats.

    Return :class:`~mska_core.records.CheckpointFormat` records. Reading a file asks every format's
    ``sniff``; exactly one must claim it (two claims are an error naming both formats). ``read`` must
    never execute pickled code. The core supplies ``mska``, ``safetensors``, ``state_dict``,
    ``lightning``, ``dino`` and ``mska-paper``.

    A second format with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_checkpoint_formats():
            return [CheckpointFormat(name="npz", sniff=_is_npz, read=_read_npz)]

    Added in 0.1.0.
    """


@hookspec("loss")
def mska_losses() -> Iterable[LossSpec]:
    """Supply training losses that ``[losses.<name>]`` tables can enable.

    Return :class:`~mska_core.records.LossSpec` records. ``build(**options)`` receives the table's
    keys other than ``weight``; the built module returns a scalar. The core supplies ``ctc``,
    ``distillation``, ``translation``, ``dino`` and ``koleo``.

    A second loss with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_losses():
            return [LossSpec(name="focal_ctc", build=FocalCTCLoss)]

    Added in 0.1.0.
    """


@hookspec("data source")
def mska_data_sources() -> Iterable[DataSource]:
    """Supply readers of annotated clips that ``[data] source`` can name.

    Return :class:`~mska_core.records.DataSource` records. ``open(data, layout)`` receives the
    resolved ``[data]`` table and the model's keypoint layout and returns a
    :class:`~mska_core.data.Corpus` with train, dev and test clips; a problem with the data is a
    :class:`~mska_core.errors.DataError` naming the file and the clip. The core supplies
    ``synthetic``, ``mska-pickle``, ``directory`` and ``pose``.

    A second source with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_data_sources():
            return [DataSource(name="how2sign", description="How2Sign keypoint JSON",
                               open=_open_how2sign)]

    Added in 0.2.0.
    """


@hookspec("keypoint estimator")
def mska_keypoint_estimators() -> Iterable[KeypointEstimator]:
    """Supply keypoint estimators that ``mska extract --estimator`` can run on video frames.

    Return :class:`~mska_core.records.KeypointEstimator` records. ``build(options)`` returns an
    object mapping one RGB frame (``uint8 [H, W, 3]``) to ``float32 [J, 3]`` points (pixels and
    confidence) in the record's ``layout``. Import the model's library inside ``build``, never at
    module level. The core supplies none; ``examples/mska-mediapipe`` supplies
    ``mediapipe-holistic``.

    A second estimator with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_keypoint_estimators():
            return [KeypointEstimator(name="rtmpose-wholebody", layout="coco_wholebody",
                                      build=_build_rtmpose)]

    Added in 0.2.0.
    """


@hookspec("text decoder")
def mska_text_decoders() -> Iterable[TextDecoderSpec]:
    """Supply text decoders that ``[losses.translation] decoder`` can name.

    Return :class:`~mska_core.records.TextDecoderSpec` records. The config names one as ``NAME`` or
    ``NAME::PAYLOAD``; ``build(request)`` receives a :class:`mska_core.text.DecoderRequest` whose
    ``payload`` is the text after ``::`` and returns a module following
    :class:`mska_core.text.TextDecoder`. The core supplies ``mska`` (a transformer decoder trained
    from scratch, with a subword tokenizer fitted on the training split) and ``hf`` (a pretrained
    HuggingFace seq2seq model from a local folder, ``hf::PATH``, behind ``pip install
    'mska-core[transformers]'``).

    A second decoder with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_text_decoders():
            return [TextDecoderSpec(name="my-lm", build=_build_my_lm,
                                    description="my pretrained decoder")]

    Added in 0.3.0.
    """


@hookspec("logger")
def mska_loggers() -> Iterable[LoggerSpec]:
    """Supply experiment trackers that ``[run] loggers`` can name.

    Return :class:`~mska_core.records.LoggerSpec` records. ``build(run_dir, config)`` returns an
    object with ``log(record, step)`` and ``close()``; it receives every record that
    ``metrics.jsonl`` receives, on rank 0 only. The core supplies ``tensorboard`` (behind ``pip install
    'mska-core[tensorboard]'``).

    A second logger with a registered name is an error naming both providers when it is looked up, until the user chooses
    one (``[plugins.providers]``) or disables one; load order never decides.

    Example::

        @hookimpl
        def mska_loggers():
            return [LoggerSpec(name="wandb", build=_build_wandb)]

    Added in 0.3.0.
    """


@attrs.frozen
class Hook:
    """One hook of the contract, as read from its specification."""

    name: str  #: ``mska_streams``
    record: type  #: the record type its implementations return (``StreamSpec``)
    kind: str  #: what one record is called in messages (``stream``)
    attribute: str  #: the registry attribute over its records (``streams``)

    @property
    def spec(self) -> Callable[..., object]:
        return globals()[self.name]  # type: ignore[no-any-return]


def _read_hooks() -> tuple[Hook, ...]:
    hooks = []
    for name, function in list(globals().items()):
        if callable(function) and hasattr(function, "mska_kind"):
            returns = typing.get_type_hints(function)["return"]
            (record,) = typing.get_args(returns)
            hooks.append(Hook(name, record, function.mska_kind, function.mska_attribute))
    return tuple(hooks)


#: Every hook of the contract, in the order they are documented: the one table of hooks that the
#: plugin manager, the registry, ``mska plugins`` and the generated reference read.
HOOKS: tuple[Hook, ...] = _read_hooks()
#: :data:`HOOKS` by hook name.
HOOKS_BY_NAME: dict[str, Hook] = {hook.name: hook for hook in HOOKS}

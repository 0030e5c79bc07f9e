"""The records that hooks return.

Every hook of :mod:`mska_core.hookspecs` returns an iterable of one of these frozen attrs classes. The
registry stamps each record with the :class:`Provider` that supplied it (``record.provider``), so error
messages and ``mska plugins`` can say which plugin, distribution and version a record came from.

This module must stay cheap to import: no torch, no timm. Factories (``build``, ``load``, ``read``)
are plain callables that import heavy modules when they are called.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


def _valid_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be a name of letters, digits, '_', '-' "
            f"or '.', starting with a letter; got {value!r}"
        )


def _joint_table(value: Mapping[str, Any]) -> Mapping[str, tuple[int, ...]]:
    return {str(layout): tuple(int(i) for i in indices) for layout, indices in dict(value).items()}


def _check_joint_table(instance: Any, attribute: attrs.Attribute, value: Mapping[str, tuple[int, ...]]) -> None:
    for layout, indices in value.items():
        if any(i < 0 for i in indices):
            raise ValueError(f"stream {instance.name!r}: negative joint index in layout {layout!r}")
        if len(set(indices)) != len(indices):
            raise ValueError(f"stream {instance.name!r}: repeated joint index in layout {layout!r}")


@attrs.frozen
class Provider:
    """Who supplied a record: the plugin's name, its distribution and that distribution's version."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.distribution} {self.version})"


def _provider_field() -> Any:
    return attrs.field(default=None, kw_only=True, eq=False, repr=False)


def _point_table(value: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, int]]:
    return {str(component): {str(point): int(joint) for point, joint in dict(points).items()}
            for component, points in dict(value).items()}


@attrs.frozen
class PoseHeaderMap:
    """How the points of one kind of pose-format header (a ``.pose`` file) map onto a layout's joints.

    - ``name`` names the header kind in messages (``"openpose_137"``).
    - ``components`` maps a header component's name to ``{point name: joint index}``: the joint of the
      layout that each named point of that component becomes. A point of the file that the table does
      not name is left out (OpenPose's neck, MediaPipe's world landmarks, refined irises); a joint of the
      layout that no point of the file fills gets confidence 0 (missing, as the encoder masks it).
    - ``required``: the components a header must have to be of this kind (default: every component of
      ``components``).

    A file is read through the map, among those of the layouts it may be in, that fills the most
    joints; the points of a component are matched by name, or by position when none of its names is
    in the table (files written with other point names but the same order).
    """

    name: str = attrs.field(validator=_valid_name)
    components: Mapping[str, Mapping[str, int]] = attrs.field(converter=_point_table)
    required: tuple[str, ...] = attrs.field(
        default=attrs.Factory(lambda self: tuple(self.components), takes_self=True), converter=tuple
    )

    @required.validator
    def _known(self, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
        unknown = [name for name in value if name not in self.components]
        if unknown:
            raise ValueError(f"pose header map {self.name!r}: required components {unknown} are not in its "
                             "components")


@attrs.frozen
class KeypointLayout:
    """A skeleton layout: how many joints a clip has and which index ranges form which body part.

    - ``parts`` maps a part name (``"body"``, ``"face"``, ``"left_hand"`` ...) to its joint indices.
    - ``pose_headers``: the kinds of ``.pose`` header (pose-format) whose points map onto this layout,
      as :class:`PoseHeaderMap` records; ``source = "pose"``, ``mska extract --keypoints`` and ``mska
      predict`` read a ``.pose`` file through them.
    - ``mirror``: pairs of joints that trade places when a recording is mirrored (the signer's left and
      right: hands, eyes, shoulders ...); ``mska extract`` with ``mirrored = true`` un-mirrors keypoint
      files through them. A joint in no pair keeps its index.
    """

    name: str = attrs.field(validator=_valid_name)
    num_joints: int = attrs.field(converter=int)
    parts: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict, converter=_joint_table)
    description: str = ""
    pose_headers: tuple[PoseHeaderMap, ...] = attrs.field(default=(), converter=tuple)
    mirror: tuple[tuple[int, int], ...] = attrs.field(
        default=(), converter=lambda pairs: tuple((int(a), int(b)) for a, b in pairs)
    )
    provider: Provider | None = _provider_field()

    @num_joints.validator
    def _positive(self, attribute: attrs.Attribute, value: int) -> None:
        if value <= 0:
            raise ValueError(f"layout {self.name!r}: num_joints must be positive, got {value}")

    @pose_headers.validator
    def _joints_in_range(self, attribute: attrs.Attribute, value: tuple[PoseHeaderMap, ...]) -> None:
        for header in value:
            joints = [j for points in header.components.values() for j in points.values()]
            if any(not 0 <= j < self.num_joints for j in joints):
                raise ValueError(f"layout {self.name!r}: pose header map {header.name!r} names a joint outside "
                                 f"0..{self.num_joints - 1}")
            if len(set(joints)) != len(joints):
                raise ValueError(f"layout {self.name!r}: pose header map {header.name!r} sends two points to "
                                 "one joint")

    @mirror.validator
    def _mirror_pairs(self, attribute: attrs.Attribute, value: tuple[tuple[int, int], ...]) -> None:
        joints = [j for pair in value for j in pair]
        if any(not 0 <= j < self.num_joints for j in joints) or len(set(joints)) != len(joints):
            raise ValueError(f"layout {self.name!r}: mirror pairs must name distinct joints in "
                             f"0..{self.num_joints - 1}")

    def mirror_order(self) -> tuple[int, ...]:
        """The joint permutation of a mirrored recording: ``points[order]`` swaps every pair."""
        order = list(range(self.num_joints))
        for a, b in self.mirror:
            order[a], order[b] = b, a
        return tuple(order)


def _positive_number(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class CropRegion:
    """Where a stream's image crop lies in a video frame: a square around some of its joints.

    - ``joints`` maps a layout name to the joints whose bounding box defines the crop (it may differ
      from the joints the keypoint branch reads: a face crop around the face contour, say).
    - ``scale`` enlarges the box's longer side around its centre (1.0 keeps it tight).
    - ``min_size`` is the smallest side of the square, in pixels of the source frame, so that a
      far-away hand still gets a crop with context.
    - ``render_as`` names the sprite the synthetic corpus draws for this region (``"face"`` or
      ``"hand"``); real data never reads it. ``None`` lets the synthetic source skip the stream.
    """

    joints: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict, converter=_joint_table)
    scale: float = attrs.field(default=1.5, converter=float, validator=_positive_number)
    min_size: float = attrs.field(default=16.0, converter=float, validator=_positive_number)
    render_as: str | None = None

    def joints_for(self, layout: str) -> tuple[int, ...]:
        """The joints that define the crop in ``layout``; empty when the region has none there."""
        return self.joints.get(layout, ())


@attrs.frozen
class StreamSpec:
    """A stream of the multi-stream encoder: which joints it reads, and how it may be encoded.

    - ``joints`` maps a layout name to the joint indices this stream reads in that layout, in the
      order the keypoint branch sees them (the order matters for learned joint-by-joint matrices).
      Empty for a crop-only stream.
    - ``weight_group`` names the pretrained weights that initialise the stream; both hands share the
      group ``"hand"`` so that one pretrained hand encoder initialises both. Defaults to ``name``.
    - ``crop_region``: optional :class:`CropRegion`, where the stream's crop lies in a frame;
      ``mska extract`` cuts a crop per frame for every stream that declares one.
    - ``crops``: whether the stream can read per-frame image crops through a crop backbone
      (defaults to whether it declares a crop region).
    - ``build_encoder``: optional factory ``(spec, model_config, stream_config, layout) -> nn.Module``
      that replaces the core keypoint branch for this stream. ``None`` uses the core branch.
    """

    name: str = attrs.field(validator=_valid_name)
    description: str = ""
    joints: Mapping[str, tuple[int, ...]] = attrs.field(
        factory=dict, converter=_joint_table, validator=_check_joint_table
    )
    weight_group: str = attrs.field(default=attrs.Factory(lambda self: self.name, takes_self=True))
    crop_region: CropRegion | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(CropRegion))
    )
    crops: bool = attrs.field(
        default=attrs.Factory(lambda self: self.crop_region is not None, takes_self=True)
    )
    build_encoder: Callable[..., Any] | None = None
    provider: Provider | None = _provider_field()

    def joints_for(self, layout: str) -> tuple[int, ...]:
        """The joint indices of this stream in ``layout``; empty when the stream has none there."""
        return self.joints.get(layout, ())


@attrs.frozen
class BackboneLoader:
    """A loader for one backbone spec scheme (the part of ``SCHEME::PAYLOAD`` before ``::``).

    - ``scheme``: the text before ``::`` in specs (``"file"``, ``"onnx"``).
    - ``load(payload: str, options: BackboneOptions) -> nn.Module`` receives the text after ``::``
      and a :class:`mska_core.backbones.BackboneOptions` (image size and the like) and returns a
      module that maps images ``[N, 3, H, W]`` to features ``[N, D]``.
    """

    scheme: str = attrs.field(validator=_valid_name)
    load: Callable[..., Any]
    description: str = ""
    provider: Provider | None = _provider_field()

    @property
    def name(self) -> str:
        return self.scheme


@attrs.frozen
class BackboneArch:
    """An architecture named in backbone specs (``file::PATH:ARCH``).

    - ``build(**arch_config) -> nn.Module`` builds the randomly initialised model; ``arch_config``
      holds at least ``img_size``.
    - ``convert_state_dict(state_dict, *, img_size=None) -> state_dict`` turns any weight layout
      this arch accepts (official releases, DINO checkpoints, prefixed keys) into the layout
      ``build`` produces, resampling position embeddings to ``img_size`` (``None``: keep them).
    - ``feature_dim``: the width of the features the built model returns.
    """

    name: str = attrs.field(validator=_valid_name)
    build: Callable[..., Any]
    convert_state_dict: Callable[[Mapping[str, Any]], dict[str, Any]]
    feature_dim: int = attrs.field(converter=int)
    description: str = ""
    default_config: Mapping[str, Any] = attrs.field(factory=dict)
    provider: Provider | None = _provider_field()


@attrs.frozen
class CheckpointFormat:
    """A file format that checkpoints can be read from (and, with ``write``, written to).

    - ``sniff(probe: FileProbe) -> bool``: whether the file behind a
      :class:`mska_core.checkpoints.FileProbe` is in this format. Exactly one format may claim a file.
    - ``read(probe: FileProbe) -> Checkpoint``: the file's tensors and metadata, without running
      pickled code.
    - ``write(checkpoint: Checkpoint, path: Path) -> None``: optional; writes a :class:`mska_core.checkpoints.Checkpoint`
      (``metadata``: every payload key but the tensors, plain data; ``state_dict``: name -> tensor)
      atomically (temporary file in the destination folder, fsync, then ``os.replace``).
      ``save_checkpoint`` calls it, with our payload dicts turned into a ``Checkpoint`` first; what
      ``read`` returns for the file must hold the same metadata and tensors.
    - ``suffixes``: the file name endings this format writes (``(".safetensors",)``);
      ``save_checkpoint`` picks the writable format that claims a path's suffix, and ``mska`` for
      every other path. A run whose ``[run] format`` names this format writes ``best`` and ``last``
      with the first suffix.
    """

    name: str = attrs.field(validator=_valid_name)
    sniff: Callable[[Any], bool]
    read: Callable[[Any], Any]
    write: Callable[..., None] | None = None
    description: str = ""
    suffixes: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    provider: Provider | None = _provider_field()


@attrs.frozen
class LossSpec:
    """A training loss, named in the ``[losses]`` table of a config.

    - ``build(**options) -> nn.Module`` receives the table's options (everything but ``weight``;
      a key ``build`` does not take is refused when the config is checked). The module's
      ``forward(output: StepOutput, batch: TrainBatch) -> Tensor`` returns a scalar: ``output`` is
      the model's :class:`mska_core.training.model.StepOutput` of the batch, ``batch`` the
      :class:`mska_core.data.collate.TrainBatch`; average over the clips of the batch.
    """

    name: str = attrs.field(validator=_valid_name)
    build: Callable[..., Any]
    description: str = ""
    provider: Provider | None = _provider_field()


@attrs.frozen
class DataSource:
    """A reader of annotated clips, named in ``[data] source``.

    - ``open(data: DataConfig, layout: KeypointLayout) -> Corpus`` receives the resolved ``[data]``
      table (:class:`mska_core.config.DataConfig`; ``data.options`` holds this source's options) and
      the model's :class:`KeypointLayout`, and returns a :class:`mska_core.data.Corpus` of train, dev
      and test :class:`mska_core.data.Sample` clips in that layout. Problems with the data are
      :class:`mska_core.errors.DataError` naming the file and the clip.
    - ``options``: the keys the source reads from ``[data.options]``, each with its default.

    ``options`` declares the keys the source reads from ``[data.options]``, each with its default
    (``{"split_field": "split"}``); ``data.options`` as ``open`` receives it holds every declared key
    (the user's value, else the default). A key the source does not declare is refused, as for
    losses (the dotted key, the nearest declared one); a value whose type differs from a non-``None``
    default's is refused too. A source that declares none takes no options.
    """

    name: str = attrs.field(validator=_valid_name)
    open: Callable[..., Any]
    description: str = ""
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    provider: Provider | None = _provider_field()


@attrs.frozen
class KeypointEstimator:
    """A model that finds keypoints in video frames, named in ``mska extract --estimator``.

    - ``layout``: the registered layout the points are in.
    - ``build(options: Mapping[str, Any]) -> estimator`` receives a mapping of options and returns an
      object whose ``estimator(frame) -> points`` maps one RGB frame (``uint8`` numpy ``[H, W, 3]``)
      to its points (``float32`` numpy ``[J, 3]``: x and y in pixels, confidence in [0, 1],
      confidence 0 where a joint was not found) in ``layout``. The object may have a ``close()``
      method, called once when extraction ends.
    """

    name: str = attrs.field(validator=_valid_name)
    layout: str = attrs.field(validator=_valid_name)
    build: Callable[..., Any]
    description: str = ""
    provider: Provider | None = _provider_field()


@attrs.frozen
class TextDecoderSpec:
    """A text decoder that translates a recognition head's features into text, named in
    ``[losses.translation] decoder`` as ``NAME`` or ``NAME::PAYLOAD`` (``hf::models/mbart``).

    - ``build(request: DecoderRequest) -> nn.Module`` receives a :class:`mska_core.text.DecoderRequest`
      (the text after ``::``, the width of the features it reads, the decoder's options, the
      training split's translations to fit a tokenizer on, or the ``stored`` artefacts of a
      checkpoint to rebuild from) and returns a module that follows :class:`mska_core.text.TextDecoder`:
      a ``tokenizer``, ``forward(memory, memory_lengths, text_input) -> logits``,
      ``generate(...) -> list[str]``, ``artifacts()`` (plain data a checkpoint carries so that the
      decoder is rebuilt without the original files) and ``parameter_groups()`` (named parts that can
      get their own learning rate or be frozen). Import the model's library inside ``build``, never
      at module level.
    """

    name: str = attrs.field(validator=_valid_name)
    build: Callable[..., Any]
    description: str = ""
    provider: Provider | None = _provider_field()


@attrs.frozen
class LoggerSpec:
    """An experiment tracker, named in ``[run] loggers``.

    - ``build(run_dir: Path, config: Config) -> logger`` receives the run folder and the resolved
      :class:`mska_core.config.Config` and returns an object with ``logger.log(record: dict, step: int)
      -> None`` (one ``metrics.jsonl`` record: ``kind`` ``"train"`` or ``"eval"``, numbers by name)
      and ``logger.close() -> None``. It runs on rank 0 only; ``metrics.jsonl`` stays the source of
      truth. Import the tracker's library inside ``build``.
    """

    name: str = attrs.field(validator=_valid_name)
    build: Callable[..., Any]
    description: str = ""
    provider: Provider | None = _provider_field()

"""The configuration schema: one attrs class per TOML table.

Every default lives here and nowhere else; the command line, the model and the docs read it from
these classes. ``docs/config.md`` is the reference for users and a test keeps it in step with this
module.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

PAPER_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256)
PAPER_INTER_CHANNELS = (16, 16, 32, 32, 64, 64, 64, 64)
PAPER_TEMPORAL_KERNELS = (7, 3, 3, 3, 3, 3, 3, 3)
PAPER_STRIDES = (2, 1, 1, 1, 2, 1, 1, 1)

#: The MSKA paper's streams, and its heads over them (fuse = left, face, right, body; left = left,
#: face; right = right, face; body). The encoder uses these heads when exactly these streams are
#: selected and ``[model.heads]`` is empty; ``mska train --use-mska`` writes them into the config.
PAPER_STREAMS: tuple[str, ...] = ("hand_left", "face", "hand_right", "body")
PAPER_HEADS: dict[str, tuple[str, ...]] = {
    "fuse": ("hand_left", "face", "hand_right", "body"),
    "left": ("hand_left", "face"),
    "right": ("hand_right", "face"),
    "body": ("body",),
}


class FieldValueError(ValueError):
    """A value the schema rejects; carries the field's name so the loader can give the dotted key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise FieldValueError(attribute.name, f"must be positive, got {value}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise FieldValueError(attribute.name, f"must be zero or positive, got {value}")


def _all_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    bad = [v for v in value if v <= 0]
    if not value or bad:
        raise FieldValueError(attribute.name, f"every entry must be positive (one per block), got {list(value)}")


def _all_odd(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    even = [v for v in value if v % 2 == 0]
    if even:
        raise FieldValueError(
            attribute.name,
            f"every entry must be odd (a temporal kernel keeps the clip's length only when it is odd), got "
            f"{list(value)}",
        )


def _betas(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not all(0 <= beta < 1 for beta in value):
        raise FieldValueError(attribute.name, f"each beta must be in [0, 1), got {list(value)}")


#: Seeds seed torch, numpy and Python's random; numpy takes 32 bits.
MAX_SEED = 2**32 - 1


def _seed(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise FieldValueError(attribute.name, f"must be between 0 and {MAX_SEED} (2**32 - 1), got {value}")


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _device(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _DEVICE.match(value):
        raise FieldValueError(attribute.name, f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")


def _probability(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 <= value <= 1:
        raise FieldValueError(attribute.name, f"must be a probability between 0 and 1, got {value}")


@attrs.frozen
class RunConfig:
    """``[run]``: naming, output location, seed and device of a run."""

    name: str = "mska"
    output_dir: str = "runs"
    seed: int = attrs.field(default=0, validator=_seed)
    device: str = attrs.field(default="auto", validator=_device)  # "auto", "cpu", "cuda", "cuda:N", "mps"
    format: str = "mska"  # checkpoint format of best/last and exports: mska (.pt), safetensors, a plugin's
    loggers: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # experiment trackers (mska_loggers)


@attrs.frozen
class SyntheticConfig:
    """``[data.synthetic]``: the embedded synthetic corpus."""

    num_train: int = attrs.field(default=480, validator=_positive)
    num_dev: int = attrs.field(default=60, validator=_positive)
    num_test: int = attrs.field(default=60, validator=_positive)
    vocab_size: int = attrs.field(default=20, validator=_positive)
    min_glosses: int = attrs.field(default=2, validator=_positive)
    max_glosses: int = attrs.field(default=5, validator=_positive)
    frames_per_gloss: int = attrs.field(default=12, validator=_positive)
    crop_size: int = attrs.field(default=56, validator=_positive)
    seed: int = attrs.field(default=1234, validator=_seed)


@attrs.frozen
class AugmentConfig:
    """``[data.augment]``: temporal (and optional spatial) augmentation of training clips."""

    enabled: bool = True
    speed_min: float = attrs.field(default=0.5, validator=_positive)
    speed_max: float = attrs.field(default=1.5, validator=_positive)
    max_frames: int = attrs.field(default=400, validator=_positive)
    rotation: float = attrs.field(default=0.0, validator=_non_negative)  # degrees; 0 disables


def _scale(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if len(value) != 2 or not 0 < value[0] <= value[1] <= 1:
        raise FieldValueError(attribute.name, f"must be [low, high] with 0 < low <= high <= 1, got {list(value)}")


@attrs.frozen
class CropOptionsConfig:
    """``[data.crop_options]``: where fine-tuning reads crops from disk, what a missing crop does, and
    the spatial augmentation of training crops (docs/data.md). The synthetic source renders its crops
    and reads none of the file keys."""

    path: str | None = None  # folder of STREAM/ID.crops (or STREAM/ID/NNNNNN.jpg) crops: mska extract's OUT/crops; none: [data] path / crops
    missing: Literal["error", "mask"] = "error"  # a clip without a stream's crops: stop, or mask the stream for it
    scale: tuple[float, float] = attrs.field(default=(1.0, 1.0), converter=tuple, validator=_scale)  # area kept by a random resized crop of training crops; [1, 1]: off
    color_jitter: float = attrs.field(default=0.0, validator=_non_negative)  # brightness, contrast, saturation strength on training crops; 0: off
    hue: float = attrs.field(default=0.0, validator=[_non_negative, attrs.validators.le(0.5)])  # hue jitter on training crops (at most 0.5); 0: off


@attrs.frozen
class DataConfig:
    """``[data]``: where clips come from and how they are prepared."""

    source: str = "synthetic"  # a registered data source: synthetic, mska-pickle, directory, pose, shards, a plugin's
    path: str | None = None  # the folder that holds the splits (pickles, our directory format, .pose files, shards)
    train: str | None = None  # a split's file, relative to ``path`` (defaults per source, docs/data.md)
    dev: str | None = None
    test: str | None = None
    crops: bool = False
    # Pixel coordinates are divided by the frame size, y flipped, and mapped to [-1, 1] (MSKA pickles
    # always; the directory format when ``normalize`` is true). 210 x 260 is PHOENIX-2014T.
    frame_width: int = attrs.field(default=210, validator=_positive)
    frame_height: int = attrs.field(default=260, validator=_positive)
    normalize: bool = False
    # A clip with NaN/inf values, confidences outside [0, 1], joints beyond the frame (frame_margin), no
    # frames or text that is not UTF-8 is refused (the run stops, naming the clips) or repaired (docs/data.md); a wrong joint count never loads.
    invalid: Literal["refuse", "repair"] = "refuse"
    frame_margin: float = attrs.field(default=0.25, validator=_non_negative)  # a found joint beyond the frame by more than this fraction of its size is invalid (refused, or clamped with confidence 0); the model sees coordinates within ±(1 + 2 * frame_margin)
    synthetic: SyntheticConfig = attrs.field(factory=SyntheticConfig)
    augment: AugmentConfig = attrs.field(factory=AugmentConfig)
    crop_options: CropOptionsConfig = attrs.field(factory=CropOptionsConfig)
    options: dict[str, Any] = attrs.field(factory=dict)  # options of the data source, the keys it declares (docs/data.md)


@attrs.frozen
class StreamConfig:
    """``[model.streams.<name>]``: options of one stream."""

    keypoints: bool = True
    backbone: str | None = None  # crop backbone spec, e.g. "file::backbone.pt:dinov2_vits14"
    img_size: int | None = attrs.field(default=None, validator=_positive)
    init: str | None = None  # a checkpoint that initialises this stream
    freeze: bool = False
    trainable_blocks: int | None = attrs.field(default=None, validator=_non_negative)  # crop backbone: train only its last N blocks and fix the rest (0: all fixed, in eval mode); none: all train


@attrs.frozen
class HeadConfig:
    """``[model.heads.<name>]``: a recognition head over the concatenated features of streams."""

    streams: tuple[str, ...] = attrs.field(converter=tuple)


@attrs.frozen
class ModelConfig:
    """``[model]``: the multi-stream encoder and its heads."""

    layout: str = "coco_wholebody"
    attention: Literal["paper", "softmax"] = "paper"
    in_channels: int = attrs.field(default=3, validator=_positive)
    channels: tuple[int, ...] = attrs.field(default=PAPER_CHANNELS, converter=tuple, validator=_all_positive)
    inter_channels: tuple[int, ...] = attrs.field(default=PAPER_INTER_CHANNELS, converter=tuple,
                                                  validator=_all_positive)
    temporal_kernels: tuple[int, ...] = attrs.field(default=PAPER_TEMPORAL_KERNELS, converter=tuple,
                                                    validator=[_all_positive, _all_odd])
    strides: tuple[int, ...] = attrs.field(default=PAPER_STRIDES, converter=tuple, validator=_all_positive)
    num_heads: int = attrs.field(default=6, validator=_positive)
    attention_dropout: float = attrs.field(default=0.1, validator=_non_negative)  # on the joint attention
    dropout: float = attrs.field(default=0.0, validator=_non_negative)  # on stream features before fusion
    vocab_size: int | None = attrs.field(default=None, validator=_positive)  # None: from the data
    head_hidden: int = attrs.field(default=512, validator=_positive)
    head_ff: int = attrs.field(default=2048, validator=_positive)
    head_kernel: int = attrs.field(default=3, validator=_positive)
    head_dropout: float = attrs.field(default=0.1, validator=_non_negative)
    crop_dim: int = attrs.field(default=256, validator=_positive)
    streams: dict[str, StreamConfig] = attrs.field(factory=dict)
    heads: dict[str, HeadConfig] = attrs.field(factory=dict)
    init: dict[str, str] = attrs.field(factory=dict)  # weight group or stream -> checkpoint

    @channels.validator
    def _same_depth(self, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
        depths = {len(value), len(self.inter_channels), len(self.temporal_kernels), len(self.strides)}
        if len(depths) != 1:
            raise FieldValueError(
                attribute.name,
                "channels, inter_channels, temporal_kernels and strides must have one length each "
                f"(one entry per block); got {len(value)}, {len(self.inter_channels)}, "
                f"{len(self.temporal_kernels)}, {len(self.strides)}"
            )


@attrs.frozen
class LossConfig:
    """``[losses.<name>]``: a loss's ``weight``; every other key is passed to its ``build``."""

    weight: float = attrs.field(default=1.0, validator=_non_negative)
    options: dict[str, Any] = attrs.field(factory=dict)

    #: Keys other than ``weight`` are collected into ``options`` rather than rejected.
    __mska_open_table__ = "options"


def _default_losses() -> dict[str, LossConfig]:
    return {"ctc": LossConfig(), "distillation": LossConfig()}


def _part_lr(instance: Any, attribute: attrs.Attribute, value: dict[str, float]) -> None:
    bad = {k: v for k, v in value.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0}
    if bad:
        raise FieldValueError(attribute.name, f"every learning rate must be a positive number, got {bad}")


@attrs.frozen
class OptimConfig:
    """``[optim]``: optimiser and learning-rate schedule."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = attrs.field(default=1e-3, validator=_positive)
    min_lr: float = attrs.field(default=1e-6, validator=_non_negative)
    weight_decay: float = attrs.field(default=1e-3, validator=_non_negative)
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.998), converter=tuple, validator=_betas)
    warmup_steps: int = attrs.field(default=0, validator=_non_negative)
    schedule: Literal["cosine", "cosine-epoch", "constant"] = "cosine"
    t_max: int | None = attrs.field(default=None, validator=_positive)  # epochs of "cosine-epoch"; None: train.epochs
    grad_clip: float = attrs.field(default=1.0, validator=_non_negative)  # 0 disables
    part_lr: dict[str, float] = attrs.field(factory=dict, validator=_part_lr)  # part -> peak learning rate ("encoder" and the text decoder's parts, e.g. mapper, lm; docs/translation.md); a part without one trains at lr


@attrs.frozen
class TrainConfig:
    """``[train]``: the fine-tuning loop."""

    epochs: int = attrs.field(default=10, validator=_positive)
    batch_size: int = attrs.field(default=8, validator=_positive)
    amp: Literal["none", "bf16", "fp16"] = "none"
    num_workers: int = attrs.field(default=0, validator=_non_negative)
    eval_every: int = attrs.field(default=1, validator=_positive)  # epochs
    beam_size: int = attrs.field(default=1, validator=_positive)  # CTC beam on dev
    test_beam_size: int = attrs.field(default=5, validator=_positive)
    log_every: int = attrs.field(default=10, validator=_positive)  # steps
    max_steps: int | None = attrs.field(default=None, validator=_positive)
    checkpoint_every: int = attrs.field(default=0, validator=_non_negative)  # steps; 0: each epoch end
    micro_batches: int = attrs.field(default=1, validator=_positive)  # gradient accumulation per step
    translation_beam_size: int = attrs.field(default=3, validator=_positive)
    max_text_length: int = attrs.field(default=40, validator=_positive)  # decoded tokens
    length_penalty: float = attrs.field(default=1.0, validator=_non_negative)  # translation beams are ranked by log probability / length ** length_penalty
    progress: bool = True  # the rich progress bar (rank 0, on a terminal)
    compile: bool = False  # torch.compile the encoder for training and evaluation (docs/encoder.md)


@attrs.frozen
class EvalConfig:
    """``[eval]``: how decoded glosses are scored (dev evaluation, ``mska evaluate``)."""

    gloss_cleanup: Literal["none", "phoenix-2014t", "phoenix-2014t-fixed"] = "none"  # clean-up of hypotheses and references before WER (docs/training.md)


@attrs.frozen
class PretrainConfig:
    """``[pretrain]``: DINO pretraining of a crop encoder for one stream (``mska pretrain``).

    The defaults finish the two commands of the fine-tuning guide in minutes on two CPU cores: the
    tiny ViT at 112 px, 256 synthetic crops per epoch when no ``train_dirs`` are given, a small DINO
    head with 64 prototypes and two local crops. The teacher is centred by Sinkhorn-Knopp (``"ema"``
    drifted to uniform targets on the synthetic crops; see ``docs/pretraining.md``), follows the
    student with momentum 0.95 and sharpens at 0.02: settings for runs of a few hundred steps. For
    real crops use ``arch = "dinov2_vits14"``, a larger head and DINO's long-run settings.
    """

    stream: str = "face"  # a registered stream or weight group: face, hand, hand_left, ...
    train_dirs: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # empty: synthetic crops
    output_dir: str = "work_dirs/dino"
    epochs: int = attrs.field(default=10, validator=_positive)
    arch: str = "vit_tiny_test"
    layer_scale_init: float | None = 1.0  # layer-scale init_values of a backbone built from arch; None: the arch's
    backbone: str | None = None  # a spec to continue from, e.g. "file::encoder_face.pt"
    img_size: int = attrs.field(default=112, validator=_positive)  # global crops
    batch_size: int = attrs.field(default=32, validator=_positive)
    export_checkpoint: bool = False
    output_path: str | None = None  # default with export_checkpoint: <output_dir>/encoder_<stream>.pt
    export_backbone: str | None = None
    resume: bool = False
    max_steps: int | None = attrs.field(default=None, validator=_positive)  # stop early; schedules unchanged
    num_workers: int = attrs.field(default=0, validator=_non_negative)
    progress: bool = True  # the rich progress bar (on a terminal)
    # data
    synthetic_images: int = attrs.field(default=256, validator=_positive)  # per epoch, without train_dirs
    local_crops: int = attrs.field(default=2, validator=_non_negative)
    local_img_size: int | None = attrs.field(default=None, validator=_positive)  # None: ~0.44 x img_size
    global_crop_scale: tuple[float, float] = attrs.field(default=(0.4, 1.0), converter=tuple)
    local_crop_scale: tuple[float, float] = attrs.field(default=(0.05, 0.4), converter=tuple)
    color_jitter: float = attrs.field(default=0.8, validator=_probability)  # chance that a view's colours are jittered
    grayscale: float = attrs.field(default=0.2, validator=_probability)  # chance that a view is made grey
    # DINO head and loss
    out_dim: int = attrs.field(default=64, validator=_positive)  # prototypes
    head_hidden_dim: int = attrs.field(default=512, validator=_positive)
    head_bottleneck_dim: int = attrs.field(default=128, validator=_positive)
    head_layers: int = attrs.field(default=3, validator=_positive)
    norm_last_layer: bool = True  # fix the prototypes' weight-norm gain at 1
    student_temp: float = attrs.field(default=0.1, validator=_positive)
    teacher_temp: float = attrs.field(default=0.02, validator=_positive)
    warmup_teacher_temp: float = attrs.field(default=0.02, validator=_positive)
    warmup_teacher_temp_epochs: float = attrs.field(default=0.0, validator=_non_negative)
    centering: Literal["ema", "sinkhorn"] = "sinkhorn"  # of the teacher's outputs: DINO's EMA centre or DINOv2's Sinkhorn-Knopp
    center_momentum: float = attrs.field(default=0.9, validator=_non_negative)
    koleo_weight: float = attrs.field(default=0.1, validator=_non_negative)  # 0 disables KoLeo
    # optimisation (AdamW; lr, weight decay and teacher momentum follow cosine schedules per step)
    lr: float = attrs.field(default=1e-3, validator=_positive)  # after warm-up
    min_lr: float = attrs.field(default=1e-6, validator=_non_negative)
    warmup_epochs: float = attrs.field(default=2.0, validator=_non_negative)
    weight_decay: float = attrs.field(default=0.04, validator=_non_negative)
    weight_decay_end: float = attrs.field(default=0.4, validator=_non_negative)
    momentum_teacher: float = attrs.field(default=0.95, validator=_non_negative)  # rises to 1
    grad_clip: float = attrs.field(default=3.0, validator=_non_negative)  # 0 disables
    freeze_last_layer_epochs: float = attrs.field(default=1.0, validator=_non_negative)
    # measurements: k-NN accuracy of the teacher's backbone on held-out labelled synthetic crops
    probe_every: int = attrs.field(default=1, validator=_non_negative)  # epochs; 0 disables the probe
    probe_images: int = attrs.field(default=256, validator=_positive)


@attrs.frozen
class ExtractConfig:
    """``[extract]``: keypoints and per-stream crops from videos (``mska extract``, docs/data.md).

    Every key has a flag of the same name; the command line wins over ``--config`` and ``--set``.
    """

    streams: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # streams to crop; empty: every stream with a crop region in the layout
    crop_size: int = attrs.field(default=112, validator=_positive)  # side of the square crops written, in pixels
    jpeg_quality: int = attrs.field(default=90, validator=[_positive, attrs.validators.le(100)])  # quality of the crops' JPEG files (1-100)
    layout: str | None = None  # layout of keypoint files; None: the registered layout with their joint count
    workers: int = attrs.field(default=1, validator=_positive)  # clips extracted at once, each in its own process
    crop_format: str = attrs.field(default="packed", validator=attrs.validators.in_(("packed", "files")))  # "packed": one file per clip and stream; "files": one JPEG per frame
    fps: float | None = attrs.field(default=None, validator=attrs.validators.optional(_positive))  # frame rate of frame folders; None: 25, with a notice
    mirrored: bool = False  # the recordings are mirror images (selfie cameras): un-mirror frames and keypoint files so that left is the signer's left; an annotation table's mirrored column decides per clip
    min_found: float = attrs.field(default=0.5, validator=[_non_negative, attrs.validators.le(1)])  # a clip whose stream was found in fewer of its frames is flagged (with --strict: fails)
    preview: bool = False  # write OUT/preview/ID.png per clip: a contact sheet of frames x streams, missing frames marked


@attrs.frozen
class PluginsConfig:
    """``[plugins]``: plugins to disable, plugins the run requires, and which plugin supplies a name
    that several plugins supply."""

    disable: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    required: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    providers: dict[str, str] = attrs.field(factory=dict)  # name -> plugin, e.g. lips = "plugin-b"


@attrs.frozen
class Config:
    """A whole configuration file."""

    run: RunConfig = attrs.field(factory=RunConfig)
    data: DataConfig = attrs.field(factory=DataConfig)
    model: ModelConfig = attrs.field(factory=ModelConfig)
    losses: dict[str, LossConfig] = attrs.field(factory=_default_losses)
    optim: OptimConfig = attrs.field(factory=OptimConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    pretrain: PretrainConfig = attrs.field(factory=PretrainConfig)
    extract: ExtractConfig = attrs.field(factory=ExtractConfig)
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)

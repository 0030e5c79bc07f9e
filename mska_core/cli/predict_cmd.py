"""``mska predict --checkpoint F CLIP|VIDEO...``: the glosses and translation of clips or raw videos.

A CLIP is an ``.npy``/``.npz`` file of our directory format (``[T, J, 3]``), a ``.pose`` file of any
header a registered layout reads (normalised with its header's frame size), or an MSKA pickle entry
written ``FILE.pkl:NAME`` (``FILE.pkl`` alone when the pickle holds one clip): the one keypoint reader
(:mod:`mska_core.data.keypoint_files`) that ``mska extract --keypoints`` and the ``pose`` source use.

``--onnx OUT`` instead of ``--checkpoint`` runs a model written by ``mska export`` with onnxruntime
(:mod:`mska_core.export.runtime`): the same clips, frames and decoding, so its glosses can be checked
against the checkpoint's; it prints no translation (the decoder is not exported).

A VIDEO (``.mp4``, ``.avi``, ``.mkv``, ``.webm``, ``.mov``) goes through ``mska extract``'s own
extraction held in memory (:mod:`mska_core.extract.memory`): its keypoints come from ``--keypoints
PATH`` (files matched by clip id, as ``mska extract --keypoints`` reads them) or from ``--estimator
NAME``; the crops of the model's crop streams are cut as ``mska extract`` cuts them, at the model's
crop size; the points are normalised with the video's own frame size, as ``mska extract
--annotations`` writes a training corpus.

No clip is cut: every frame is encoded (trimmed to a multiple of 4, as evaluation does), whole by
default, or in overlapping windows with ``--window`` (:mod:`mska_core.evaluation.windows` says how the
windows' outputs are stitched). A clip longer than the model's ``[data.augment] max_frames`` gets a
notice on stderr saying which.

Every clip is validated as training data is (:mod:`mska_core.data.validate`): under ``--invalid
refuse`` (or the checkpoint's ``[data] invalid = "refuse"``) a clip with NaN/inf values, confidences
outside [0, 1], no frames or a wrong joint count stops the command (exit 2) naming it; under
``repair`` it is repaired, and a clip with no usable point gets no prediction (exit 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import attrs

from mska_core.cli.output import add_config_options, add_stream_change_option, console, emit_json, status_console


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict", help="glosses and translation of keypoint clips or videos with a fine-tuned checkpoint",
        description="Recognise and translate keypoint clips (.npy/.npz files [T, J, 3], .pose files, or MSKA "
                    "pickle entries FILE:NAME) or raw videos (keypoints from --keypoints or --estimator, crops "
                    "cut as mska extract cuts them, all in memory). Every frame is encoded.",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", metavar="F", help="best.pt or last.pt of a run")
    model.add_argument("--onnx", metavar="OUT", help="a model written by mska export, run with onnxruntime "
                                                     "(glosses only: the translation decoder is not exported)")
    parser.add_argument("clips", nargs="+", metavar="CLIP|VIDEO",
                        help="keypoint file (.npy, .npz, .pose), PICKLE:NAME, or a video (.mp4, .avi, .mkv, .webm, .mov)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--keypoints", metavar="PATH",
                        help="for videos: a folder of ID.npy / ID.npz / ID.pose files (pixels), one such file, or an "
                             "MSKA pickle, matched by the video's file name as mska extract does")
    source.add_argument("--estimator", metavar="NAME",
                        help="for videos: a registered keypoint estimator (mska plugins --all lists them)")
    parser.add_argument("--mirrored", action="store_true",
                        help="for videos: they are mirror images (selfie cameras); un-mirror them as mska extract "
                             "--mirrored does")
    parser.add_argument("--window", type=int, default=None, metavar="FRAMES",
                        help="encode clips longer than FRAMES in overlapping windows of FRAMES frames, their "
                             "outputs stitched (default: every clip whole)")
    parser.add_argument("--overlap", type=int, default=None, metavar="FRAMES",
                        help="frames two windows share (default: a quarter of --window)")
    parser.add_argument("--beam-size", type=int, default=None, metavar="N", help="CTC beam width")
    parser.add_argument("--invalid", choices=("refuse", "repair"), default=None,
                        help="a clip with NaN/inf values or confidences outside [0, 1]: refuse it, or repair "
                             "it (default: the checkpoint's [data] invalid); a clip with no usable point is "
                             "never predicted")
    parser.add_argument("--json", action="store_true", help="write the predictions as JSON on stdout")
    add_config_options(parser, what="plugins.* keys only, e.g. --set plugins.providers.lips=PLUGIN")
    add_stream_change_option(parser)
    parser.set_defaults(run=run)


def is_video(spec: str) -> bool:
    """Whether a CLIP argument names a video (by its suffix)."""
    from mska_core.extract.videos import VIDEO_SUFFIXES

    return Path(spec).suffix.lower() in VIDEO_SUFFIXES


def read_clip(spec: str, config: Any, layouts: Any) -> tuple[str, Any]:
    """``(name, keypoints [T, J, 3])`` of one CLIP argument, normalised as the training data was.

    Read through the one keypoint reader (:mod:`mska_core.data.keypoint_files`) into the model's
    layout: a ``.pose`` file's pixels are normalised with its header's frame size (as the ``pose``
    source does), an MSKA pickle entry's with ``[data] frame_width/height`` (as the ``mska-pickle``
    source does), an ``.npy``/``.npz`` clip's when ``[data] normalize`` is true (as the directory
    format is)."""
    import torch

    from mska_core.data.keypoint_files import KEYPOINT_FILE_SUFFIXES, read_keypoint_file
    from mska_core.data.contract import normalize_pixels
    from mska_core.errors import DataError

    path, entry = Path(spec), None
    if not path.is_file() and ":" in spec:
        file, _, entry = spec.rpartition(":")
        path = Path(file)
    if not path.is_file():
        raise DataError(f"{spec}: no such keypoint file (give .npy, .npz, .pose, a pickle or PICKLE:NAME)")
    clip = read_keypoint_file(path, layouts, config.model.layout, entry=entry)
    keypoints = torch.from_numpy(clip.points)
    data = config.data
    if path.suffix == ".pose":
        if clip.frame_size is None:
            raise DataError(f"{path}: the pose header has no frame size, so its pixels cannot be normalised")
        return clip.name, normalize_pixels(keypoints, *clip.frame_size)
    if path.suffix in KEYPOINT_FILE_SUFFIXES:
        return clip.name, normalize_pixels(keypoints, data.frame_width, data.frame_height) if data.normalize \
            else keypoints
    return clip.name, normalize_pixels(keypoints, data.frame_width, data.frame_height)


class VideoReader:
    """Reads the VIDEO arguments of one ``mska predict`` run in memory, through ``mska extract``'s
    extraction: keypoints from ``--keypoints`` files or a built ``--estimator``, crops of the model's
    crop streams at the size each one's backbone was built for and the config's ``[extract]
    jpeg_quality``."""

    def __init__(self, args: argparse.Namespace, config: Any, registry: Any, crops: ModelCrops) -> None:
        from mska_core.errors import DataError
        from mska_core.extract.boxes import StreamCrop
        from mska_core.extract.keypoints import KeypointFiles

        if args.keypoints is None and args.estimator is None:
            raise DataError("a VIDEO needs its keypoints: give --keypoints PATH (keypoint files named by the "
                            "video's file name, as for mska extract) or --estimator NAME (`mska plugins --all` "
                            "lists the estimators)")
        self.config = config
        self.mirrored = bool(getattr(args, "mirrored", False))
        self.layout = config.model.layout
        self.layouts = {layout.name: layout for layout in registry.layouts}
        self.sizes = crops.sizes
        self.files = KeypointFiles(args.keypoints) if args.keypoints is not None else None
        self.record = None
        self.estimator: Any = None
        if args.estimator is not None:
            self.record = registry.keypoint_estimators.get(args.estimator)
            if self.record.layout != self.layout:
                raise DataError(f"keypoint estimator {self.record.name!r} gives layout {self.record.layout!r}, "
                                f"but the model reads {self.layout!r}")
        self.streams = []
        for spec in crops.specs:
            if spec.crop_region is None:
                raise DataError(f"stream {spec.name!r} reads crops but declares no crop region, so its crops "
                                "cannot be cut from a video; predict its extracted clips instead")
            self.streams.append(StreamCrop(spec.name, spec.crop_region))

    def read(self, spec: str) -> Any:
        """The :class:`~mska_core.extract.memory.VideoClip` of one VIDEO argument."""
        from mska_core.errors import DataError
        from mska_core.extract.keypoints import EstimatorRef
        from mska_core.extract.memory import read_video
        from mska_core.extract.videos import Video

        path = Path(spec)
        if not path.is_file():
            raise DataError(f"video {spec!r} does not exist")
        video = Video(id=path.stem, path=path)
        if self.files is not None:
            ref: Any = self.files.lookup(video.id)
            if ref is None:
                raise DataError(f"{spec}: {self.files.describe_missing(video.id)}")
        else:
            assert self.record is not None
            version = getattr(self.record.provider, "version", "") or ""
            ref = EstimatorRef(self.record.name, self.record.layout, version)
            if self.estimator is None:
                self.estimator = self.record.build({})
        return read_video(video, ref, self.streams, crop_size=self.sizes,
                          jpeg_quality=self.config.extract.jpeg_quality, layouts=self.layouts,
                          layout=self.layout, estimator=self.estimator, mirrored=self.mirrored)

    def close(self) -> None:
        close = getattr(self.estimator, "close", None)
        if callable(close):
            close()


@attrs.frozen
class PredictRow:
    """One CLIP|VIDEO argument's result: its prediction (``None`` when it had no usable point), the
    frames it has and encoded, and the windows they were encoded in."""

    clip: str
    name: str | None
    prediction: Any
    frames: int = 0
    frames_encoded: int = 0
    windows: int = 0

    def as_dict(self) -> dict[str, Any]:
        p = self.prediction
        if p is None:  # no usable point: no prediction, rather than a guess from nothing
            return {"clip": self.clip, "name": None, "gloss": None, "glosses": None, "translation": None,
                    "error": "no usable keypoints"}
        plain = p.as_dict()  # gloss and glosses are None for a model trained without glosses
        return {"clip": self.clip, "name": p.name, "gloss": plain["gloss"], "glosses": plain["glosses"],
                "translation": p.translation, "frames": self.frames, "frames_encoded": self.frames_encoded,
                "windows": self.windows}


def run(args: argparse.Namespace) -> int:
    from mska_core.errors import DataError
    from mska_core.registry import get_registry
    from mska_core.training.trained import load_trained

    other = [o for o in args.overrides if not o.strip().startswith("plugins.")]
    if other:
        from mska_core.errors import ConfigError

        raise ConfigError(f"--set {other[0]}: mska predict takes --set plugins.* keys only (the model is the "
                          "checkpoint's); give the other settings to mska evaluate or mska train")
    registry = get_registry()
    if args.onnx is not None:
        from mska_core.export.runtime import load_onnx

        trained = load_onnx(args.onnx)
        crops = ModelCrops.keypoints_only(trained.config)
    else:
        trained = load_trained(args.checkpoint, registry=registry, overrides=args.overrides,
                               allow_stream_change=args.allow_stream_change)
        registry = get_registry()  # as the checkpoint's [plugins] table (and --set plugins.*) made it
        crops = ModelCrops.of(trained, registry)
    config = trained.config
    if args.overlap is not None and args.window is None:
        raise DataError("--overlap goes with --window FRAMES (the windows it is the overlap of)")
    videos = [spec for spec in args.clips if is_video(spec)]
    absent = [spec for spec in videos if not Path(spec).is_file()]
    if absent:
        raise DataError(f"{absent[0]}: no such video file; check the path")
    if (args.keypoints is not None or args.estimator is not None) and not videos:
        raise DataError("--keypoints and --estimator are for VIDEO arguments (.mp4, .avi, .mkv, .webm, .mov); "
                        "keypoint clips carry their own points")
    reader = VideoReader(args, config, registry, crops) if videos else None
    num_joints = registry.layouts.get(config.model.layout).num_joints
    layouts = {layout.name: layout for layout in registry.layouts}
    policy = args.invalid or config.data.invalid
    rows: list[PredictRow] = []
    try:
        for spec in args.clips:
            name, frames, item = clip_item(spec, reader=reader, config=config, layouts=layouts,
                                           num_joints=num_joints, policy=policy, crops=crops, trained=trained)
            if item is None:
                rows.append(PredictRow(clip=spec, name=None, prediction=None))
                continue
            rows.append(_predict(args, trained, crops, spec, item, frames))
    finally:
        if reader is not None:
            reader.close()
    status = 1 if any(row.prediction is None for row in rows) else 0
    if args.onnx is not None and trained.metadata.translation == "not exported":
        status_console().print(f"mska: {args.onnx}: glosses only; the model's translation decoder is not in the "
                               "ONNX export (mska predict --checkpoint translates)", soft_wrap=True, markup=False)
    if args.json:
        emit_json([row.as_dict() for row in rows])
        return status
    out = console()
    for row in rows:
        out.print(f"[bold]{row.clip}[/bold]", soft_wrap=True)
        if row.prediction is None:
            out.print("  no prediction: no usable keypoints")
            continue
        gloss = row.prediction.gloss if row.prediction.glosses else "n/a (the model was trained without glosses)"
        out.print(f"  gloss:       {gloss}")
        if row.prediction.translation is not None:
            out.print(f"  translation: {row.prediction.translation}")
    return status



def clip_item(spec: str, *, reader: Any, config: Any, layouts: Any, num_joints: int, policy: str, crops: Any,
              trained: Any) -> tuple[str, int, Any]:
    """``(name, frames, item)`` of one CLIP|VIDEO argument, prepared as evaluation prepares a clip:
    read (a VIDEO through ``reader``, a :class:`VideoReader`), validated under ``policy`` with the
    model's frame margin, its crops attached and masked where a part was not found. ``item`` is
    ``None`` when the clip has no usable keypoints (``frames`` is then 0). ``mska predict`` and
    ``mska embed`` read their arguments through it."""
    from mska_core.data.validate import validate_clip

    video_crops, video_found = None, None
    if reader is not None and is_video(spec):
        clip = reader.read(spec)
        name, keypoints, video_crops = clip.name, _tensor(clip.keypoints), clip.crops
        video_found = {stream: ~missing for stream, (_, missing) in clip.arrays.boxes.items()}
    else:
        name, keypoints = read_clip(spec, config, layouts)
    keypoints = validate_clip(keypoints, num_joints=num_joints, policy=policy, label=f"{spec}: clip {name!r}",
                              margin=config.data.frame_margin)
    if keypoints is None:
        return name, 0, None
    return name, int(keypoints.shape[0]), crops.item(spec, name, keypoints, video_crops, trained, video_found)

@attrs.frozen
class ModelCrops:
    """The crops a model reads: its crop streams (``specs``), the side each stream's backbone was built
    for (``sizes``), their normalisation, and the ``[data]`` table saying where crops come from."""

    specs: tuple[Any, ...]
    sizes: dict[str, int]
    normalization: dict[str, Any]
    data: Any
    layout: str

    @classmethod
    def keypoints_only(cls, config: Any) -> ModelCrops:
        """A model that reads no crops (an ONNX export) trained with ``config``."""
        return cls(specs=(), sizes={}, normalization={}, data=config.data, layout=config.model.layout)

    @classmethod
    def of(cls, trained: Any, registry: Any) -> ModelCrops:
        from mska_core.backbones.normalization import crop_normalization
        from mska_core.data.crop_files import crop_stream_names
        from mska_core.encoder.crop import backbone_image_size

        config = trained.config
        streams = crop_stream_names(config)
        branches = trained.model.encoder.branches
        sizes = {}
        for name in streams:
            built = backbone_image_size(branches[name].crop.backbone) if branches[name].crop is not None else None
            sizes[name] = built or config.model.streams[name].img_size or config.data.synthetic.crop_size
        return cls(specs=tuple(registry.streams.get(name) for name in streams), sizes=sizes,
                   normalization=crop_normalization(trained.model.encoder, streams), data=config.data,
                   layout=config.model.layout)

    def item(self, spec: str, name: str, keypoints: Any, video_crops: Any, trained: Any,
             video_found: Any = None) -> Any:
        """The clip prepared as evaluation prepares a clip (:class:`~mska_core.data.datasets.ClipDataset`,
        no augmentation), but with every frame (:func:`~mska_core.evaluation.windows.uncapped`): its crops
        from the video (``video_crops``), rendered (a model trained on the synthetic corpus), or read
        from the crop folders of ``mska extract`` (:meth:`folders`). A frame where a stream's part was
        not found (``video_found``, or the crop folders' missing flags) has its crop masked, as in
        fine-tuning."""
        from mska_core.data.crop_files import CropPlan
        from mska_core.data.datasets import ClipDataset
        from mska_core.data.samples import Sample
        from mska_core.evaluation.windows import uncapped

        render, folders = None, None
        if self.specs and video_crops is not None:
            def render(points: Any, specs: Any, size: int, layout: str) -> dict[str, Any]:
                return {s.name: _tensor(video_crops[s.name]) for s in specs}
        elif self.specs and self.data.source == "synthetic":  # the one source that renders its crops
            from mska_core.synthetic.corpus import clip_crops as render
        elif self.specs:
            folders = self.folders(spec, name, int(keypoints.shape[0]))
        plan = CropPlan(self.specs, self.sizes, folders, self.data.crop_options) if self.specs else None
        sample = Sample(name=name, keypoints=keypoints, gloss="", text="", path=spec)
        dataset = ClipDataset([sample], trained.vocabularies, uncapped(self.data.augment, sample.num_frames),
                              train=False, layout=self.layout, render_crops=render, crops=plan)
        item = dataset[0]
        if video_found is not None and self.specs:
            import torch

            count = int(item.keypoints.shape[0])
            found = {s.name: torch.from_numpy(video_found[s.name][:count].copy()) for s in self.specs
                     if s.name in video_found and not video_found[s.name][:count].all()}
            item = attrs.evolve(item, crop_found=found or None)
        return item

    def folders(self, spec: str, name: str, frames: int) -> Any:
        """The crop folders that hold clip ``name``'s crops of every crop stream: ``ROOT/crops`` beside a
        ``ROOT/SPLIT/ID.npy`` clip (``mska extract --annotations`` writes both), else the checkpoint's
        ``[data.crop_options] path`` or ``[data] path``/crops. None holding them is a
        :class:`~mska_core.errors.DataError` naming the clip, the stream and where it looked."""
        from mska_core.data.crop_files import CropFolders
        from mska_core.errors import DataError

        path = Path(spec.rpartition(":")[0] if ":" in spec and not Path(spec).exists() else spec)
        roots = [path.parent.parent / "crops", path.parent / "crops"]
        if self.data.crop_options.path:
            roots.append(Path(self.data.crop_options.path))
        elif self.data.path:
            roots.append(Path(self.data.path) / "crops")
        problems = []
        for root in dict.fromkeys(roots):
            folders = CropFolders(root, "error")
            found = [folders.problem(s.name, name, frames) for s in self.specs]
            if not any(found):
                return folders
            problems.append(next(p for p in found if p))
        raise DataError(f"{spec}: the model reads crops ({', '.join(s.name for s in self.specs)}) and none were "
                        f"found: {'; '.join(problems)}. Predict the video itself, or give the clip's crops as "
                        "mska extract writes them")


def _tensor(array: Any) -> Any:
    import torch

    return torch.from_numpy(array)


def _predict(args: argparse.Namespace, trained: Any, crops: ModelCrops, spec: str, item: Any,
             frames: int) -> PredictRow:
    """Encode one prepared clip, every frame of it (whole or in windows), and decode it."""
    import torch

    from mska_core.data.collate import Collator
    from mska_core.evaluation.evaluate import decode_output
    from mska_core.evaluation.windows import encode_clip

    config = trained.config
    batch = Collator.for_model(trained.model, trained.vocabularies, crops.normalization)([item])
    count = int(item.keypoints.shape[0])
    windows = _windows(args, trained.model.encoder, count)
    _notice(spec, frames, count, windows, config.data.augment.max_frames, args)
    with torch.no_grad():
        encoded = encode_clip(trained.model.encoder, batch.clips, window=args.window, overlap=args.overlap)
        prediction = decode_output(
            trained.model, encoded, batch, trained.vocabularies,
            beam_size=args.beam_size or config.train.test_beam_size,
            translation_beam_size=config.train.translation_beam_size,
            max_text_length=config.train.max_text_length, length_penalty=config.train.length_penalty,
        )[0]
    return PredictRow(clip=spec, name=item.name, prediction=prediction, frames=frames, frames_encoded=count,
                      windows=windows)


def _windows(args: argparse.Namespace, encoder: Any, frames: int) -> int:
    """How many windows a clip of ``frames`` (prepared) frames is encoded in."""
    from mska_core.evaluation.windows import default_overlap, plan_windows, time_factor

    if args.window is None or frames <= args.window:
        return 1
    factor = time_factor(encoder, args.window)
    overlap = default_overlap(args.window, factor) if args.overlap is None else args.overlap
    return len(plan_windows(frames, args.window, overlap, factor))


def _notice(spec: str, frames: int, encoded: int, windows: int, max_frames: int, args: argparse.Namespace) -> None:
    """One line on stderr when a clip is longer than the model was trained on, or goes in windows."""
    if windows > 1:
        overlap = "a quarter of a window" if args.overlap is None else f"{args.overlap} frames"
        status_console().print(
            f"mska: {spec}: {frames} frames, encoded in {windows} overlapping windows of {args.window} "
            f"frames (overlap {overlap}), outputs stitched at the middle of each overlap", soft_wrap=True,
            markup=False)
    elif frames > max_frames:
        status_console().print(
            f"mska: {spec}: {frames} frames, more than the {max_frames} the model was trained on "
            f"([data.augment] max_frames); all {encoded} encoded at once (--window FRAMES encodes "
            "overlapping windows instead)", soft_wrap=True, markup=False)

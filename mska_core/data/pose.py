"""Reading ``.pose`` files of the sign-language-processing community (the ``pose-format`` library).

A ``.pose`` file keeps a header (named components, each a list of named points, and the frame size)
apart from a body (``[frames, people, points, dims]`` coordinates with a mask, a confidence per point,
and the frame rate). :func:`read_pose` turns one into the points mska-core reads everywhere: float32
``[T, J, 3]`` (x and y in pixels, confidence) in one of the registered layouts.

Which layout, and which point becomes which joint, is said by the layouts themselves: each
:class:`~mska_core.records.KeypointLayout` lists the :class:`~mska_core.records.PoseHeaderMap` of
every header kind it reads (the built-in ones: MediaPipe Holistic, full, with world landmarks, with
refined irises or reduced to 178 points, into ``mediapipe_holistic``; MMPose's COCO-WholeBody and
OpenPose BODY_25 + face + hands into ``coco_wholebody``; see :mod:`mska_core.layouts`). A plugin's
layout reads its own headers the same way.

Only the first person of each frame is read. A masked point (the estimator found nothing), and every
joint of the layout that the file has no point for, gets confidence 0 and coordinates 0; confidences
are taken as stored (validation on the way in checks them, see :mod:`mska_core.data.validate`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import DataError


@attrs.frozen
class PoseClip:
    """The points of one ``.pose`` file: ``keypoints`` float32 numpy ``[T, J, 3]`` (x, y in pixels,
    confidence) in ``layout``, the header kind they were read through (``header``), the frame rate,
    and the frame size the header records."""

    keypoints: Any = attrs.field(repr=False)
    layout: str
    header: str
    fps: float
    width: int
    height: int


@attrs.frozen
class _Reading:
    """How one header maps onto one layout: per joint, the file's point index (or -1)."""

    layout: Any
    header: str
    columns: tuple[int, ...]

    @property
    def filled(self) -> int:
        return sum(1 for c in self.columns if c >= 0)


def read_pose(path: str | Path, layouts: Iterable[Any], layout: str | None = None) -> PoseClip:
    """The points, layout, frame rate and frame size of the ``.pose`` file at ``path``.

    ``layouts`` are the registered :class:`~mska_core.records.KeypointLayout` records; ``layout``,
    when given, is the one the points must be read into. Raises :class:`~mska_core.errors.DataError`
    for a missing or unreadable file, or a header that no layout's header maps read.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise DataError(f"pose file {str(path)!r} not found")
    try:
        from pose_format import Pose
    except ImportError:  # pragma: no cover - pose-format is a dependency
        raise DataError("reading .pose files needs the pose-format package: pip install pose-format") from None
    try:
        pose = Pose.read(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - the library raises many types for a bad file
        raise DataError(f"{path}: not a readable .pose file ({type(exc).__name__}: {exc})") from None
    header, body = pose.header, pose.body
    reading = _choose(header, list(layouts), layout, path)
    data = np.ma.asarray(body.data)  # [T, people, P, dims]
    confidence = np.asarray(body.confidence, dtype=np.float32)  # [T, people, P]
    if data.ndim != 4 or data.shape[-1] < 2 or confidence.shape != data.shape[:3]:
        raise DataError(f"{path}: pose body has shape {tuple(data.shape)} with confidence "
                        f"{tuple(confidence.shape)}; expected [frames, people, points, dims]")
    frames, joints = data.shape[0], len(reading.columns)
    points = np.zeros((frames, joints, 3), dtype=np.float32)
    columns = np.asarray(reading.columns)
    present = columns >= 0
    if data.shape[1] > 0:  # someone in the file
        first = data[:, 0][:, columns[present], :2]  # [T, J', 2], masked where not found
        missing = np.ma.getmaskarray(first).any(axis=-1)  # [T, J']
        xy = np.asarray(first.filled(0.0), dtype=np.float32)
        conf = np.where(missing, np.float32(0.0), confidence[:, 0][:, columns[present]])
        points[:, present, :2] = np.where(missing[..., None], np.float32(0.0), xy)
        points[:, present, 2] = conf
    dims = header.dimensions
    return PoseClip(keypoints=np.ascontiguousarray(points), layout=reading.layout.name, header=reading.header,
                    fps=float(body.fps), width=int(dims.width), height=int(dims.height))


def _choose(header: Any, layouts: list[Any], layout: str | None, path: Path) -> _Reading:
    """The reading that fills the most joints, among the header maps of ``layouts`` (or of ``layout``)."""
    components = {c.name: list(c.points) for c in header.components}
    offsets, start = {}, 0
    for component in header.components:
        offsets[component.name] = start
        start += len(component.points)
    candidates = [record for record in layouts if layout is None or record.name == layout]
    if layout is not None and not candidates:
        raise DataError(f"{path}: layout {layout!r} is not registered; registered: "
                        f"{', '.join(r.name for r in layouts)}")
    readings = _readings(candidates, components, offsets)
    if not readings and layout is not None:
        elsewhere = _readings([r for r in layouts if r.name != layout], components, offsets)
        if elsewhere:
            best = max(elsewhere, key=lambda r: r.filled)
            raise DataError(f"{path}: a {best.header} file, read into layout {best.layout.name!r}, but the "
                            f"points are wanted in layout {layout!r}; set model.layout = \"{best.layout.name}\" "
                            "(or extract.layout)")
    if not readings:
        found = ", ".join(f"{name} ({len(points)})" for name, points in components.items()) or "none"
        known = "; ".join(f"{record.name}: " + " or ".join(
            f"{kind.name} ({', '.join(kind.required)})" for kind in record.pose_headers)
            for record in candidates if record.pose_headers)
        raise DataError(f"{path}: the pose header's components ({found}) match no header kind of "
                        f"{'layout ' + repr(layout) if layout else 'the registered layouts'}"
                        f"{' (' + known + ')' if known else ''}; a layout plugin can add one (docs/plugins.md)")
    readings.sort(key=lambda r: r.filled, reverse=True)
    if len(readings) > 1 and readings[0].filled == readings[1].filled \
            and readings[0].layout.name != readings[1].layout.name:
        raise DataError(f"{path}: the pose header fits layouts {readings[0].layout.name!r} and "
                        f"{readings[1].layout.name!r} equally; choose one (model.layout or extract.layout)")
    return readings[0]


def _readings(layouts: list[Any], components: dict[str, list[str]], offsets: dict[str, int]) -> list[_Reading]:
    """Every way the header maps of ``layouts`` read a header with ``components``, filling some joint."""
    readings = []
    for record in layouts:
        for kind in record.pose_headers:
            if all(name in components for name in kind.required):
                readings.append(_Reading(record, kind.name, _columns(kind, record.num_joints, components, offsets)))
    return [r for r in readings if r.filled > 0]


def _columns(kind: Any, num_joints: int, components: dict[str, list[str]],
             offsets: dict[str, int]) -> tuple[int, ...]:
    """Per joint of the layout, the index of the file's point that fills it (-1: none)."""
    columns = [-1] * num_joints
    for name, table in kind.components.items():
        if name not in components:
            continue
        points = components[name]
        by_name = [(i, table[p]) for i, p in enumerate(points) if p in table]
        if not by_name:  # other point names, same order: match by position
            by_name = list(zip(range(len(points)), table.values()))
        for i, joint in by_name:
            columns[joint] = offsets[name] + i
    return tuple(columns)

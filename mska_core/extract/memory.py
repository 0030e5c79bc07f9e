"""A video's keypoints and crops held in memory, for ``mska predict VIDEO``.

:func:`read_video` runs the one extraction path of ``mska extract``
(:func:`~mska_core.extract.clip.clip_arrays`) with a
:class:`~mska_core.extract.crops.CropCollector` instead of a writer: the same decoding, the same
points, the same boxes and the same cut crops (encoded as JPEG and decoded again, as a reader of
``mska extract``'s files gets them), and nothing written to disk. The points are normalised as
``mska extract --annotations`` writes a corpus: x / width, flipped y / height, to [-1, 1], with the
video's own frame size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from mska_core.extract.boxes import StreamCrop
from mska_core.extract.clip import ClipArrays, ClipJob, clip_arrays
from mska_core.extract.crops import CropCollector
from mska_core.extract.keypoints import EstimatorRef, KeypointRef
from mska_core.extract.videos import Video


@attrs.frozen
class VideoClip:
    """A video extracted in memory.

    - ``keypoints``: float32 ``[T, J, 3]`` normalised to [-1, 1] (y up) with the video's frame size;
    - ``crops``: ``{stream: uint8 [T, 3, S, S]}`` for every stream asked for;
    - ``arrays``: what extraction found (pixel points, boxes, the video's size and frame rate).
    """

    name: str
    keypoints: np.ndarray
    crops: Mapping[str, np.ndarray]
    arrays: ClipArrays


def read_video(video: Video, keypoints: KeypointRef | EstimatorRef, streams: Sequence[StreamCrop], *,
               crop_size: int | Mapping[str, int], jpeg_quality: int, layouts: Mapping[str, Any], layout: str | None = None,
               estimator: Any = None, mirrored: bool = False) -> VideoClip:
    """Extract ``video`` in memory: its points (from ``keypoints``: a file reference or an estimator,
    built as ``estimator``) and, for each of ``streams``, its ``crop_size`` crops at ``jpeg_quality``
    (``crop_size``: one side for every stream, or ``{stream: side}``).

    ``layout`` forces the layout of keypoint files (a file in another layout is an error). Every one of
    ``streams`` must have crop joints in the clip's layout. ``mirrored``: the video is a mirror image,
    un-mirrored as ``mska extract`` does with ``[extract] mirrored``.
    """
    from mska_core.data.contract import normalize_pixel_array

    collectors: list[CropCollector] = []

    def collect(names: Sequence[str]) -> CropCollector:
        collectors.append(CropCollector(names, crop_size, jpeg_quality))
        return collectors[-1]

    job = ClipJob(video=video, keypoints=keypoints, streams=tuple(streams), named_streams=True, mirrored=mirrored)
    arrays = clip_arrays(job, layouts=layouts, layout=layout, estimator=estimator, sink=collect)
    crops = collectors[0].arrays()
    return VideoClip(name=video.id, keypoints=normalize_pixel_array(arrays.points, arrays.info.width, arrays.info.height),
                     crops=crops, arrays=arrays)

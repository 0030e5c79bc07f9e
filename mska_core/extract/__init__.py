"""Videos, frame folders and segments to keypoints and per-stream crops (``mska extract``; the output
layout is :mod:`mska_core.data.contract`'s, described in ``docs/data.md``).

- :mod:`~mska_core.extract.videos`: finding inputs and reading them frame by frame (videos with PyAV).
- :mod:`~mska_core.extract.frames`: frame folders (PHOENIX, CSL-Daily) as clips.
- :mod:`~mska_core.extract.keypoints`: keypoints from existing files (``.npy``, ``.pose``, an MSKA
  pickle) matched by clip id, or from a registered keypoint estimator.
- :mod:`~mska_core.extract.boxes`: square crop boxes from each stream's crop region.
- :mod:`~mska_core.extract.crops`: cutting, resizing and writing the crops (packed files or JPEG files).
- :mod:`~mska_core.extract.clip`: one input read once, the clips cut from it (a whole clip or
  segments) streamed into temporary folders and moved into place whole.
- :mod:`~mska_core.extract.outputs`: the output folder and its ``clips.tsv``.
- :mod:`~mska_core.extract.annotations`: ``--annotations``/``--split``, which make the output a corpus.
- :mod:`~mska_core.extract.runner`: a whole run (segments, ``--shard``, workers, progress, skipping
  finished clips).
"""

from __future__ import annotations

from mska_core.extract.runner import ExtractReport, ExtractRequest, Progress, run_extraction

__all__ = ["ExtractReport", "ExtractRequest", "Progress", "run_extraction"]

"""Videos to keypoints and per-stream crops (``mska extract``; the output layout is in ``docs/data.md``).

- :mod:`~mska_core.extract.videos`: finding videos and decoding them with PyAV, frame by frame.
- :mod:`~mska_core.extract.keypoints`: keypoints from existing files (``.npy``, ``.pose``, an MSKA
  pickle) matched by clip id, or from a registered keypoint estimator.
- :mod:`~mska_core.extract.boxes`: square crop boxes from each stream's crop region.
- :mod:`~mska_core.extract.crops`: cutting, resizing and writing the crops.
- :mod:`~mska_core.extract.clip`: one clip, streamed into a temporary folder and moved into place whole.
- :mod:`~mska_core.extract.outputs`: the output folder and its ``clips.tsv``.
- :mod:`~mska_core.extract.annotations`: ``--annotations``/``--split``, which make the output a corpus.
- :mod:`~mska_core.extract.runner`: a whole run (workers, progress, skipping finished clips).
"""

from __future__ import annotations

from mska_core.extract.runner import ExtractReport, ExtractRequest, Progress, run_extraction

__all__ = ["ExtractReport", "ExtractRequest", "Progress", "run_extraction"]

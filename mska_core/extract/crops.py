"""Cutting a square crop out of a frame, resizing it, and writing it as JPEG (or keeping it).

:class:`CropWriter` does that on background threads while the caller decodes the next frame: Pillow's
resizing and JPEG encoding and the file writes release the GIL, so they overlap. It writes a clip's
crops of each stream into one packed file (:mod:`mska_core.data.crop_pack`, the default) or one JPEG
file per frame (the folder format); names and layout are :mod:`mska_core.data.contract`'s.
:class:`CropCollector` keeps the crops in memory instead (``mska predict VIDEO``), as the pixels a
reader of the written files would get: the same cut, the same JPEG encoding, decoded again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mska_core.data.contract import CROP_NAME, crop_frame_name
from mska_core.extract.boxes import Box

__all__ = ["CROP_NAME", "CropCollector", "CropWriter", "cut_crop", "encode_jpeg", "write_jpeg"]


def cut_crop(image: Any, box: Box, size: int) -> Any:
    """The ``size`` × ``size`` crop of a Pillow ``image`` inside ``box``; black where the box leaves it.

    Resampling is bilinear with Pillow's reducing step for large shrinks (``reducing_gap``), which
    keeps downsizing quick and free of aliasing.
    """
    from PIL import Image

    if _within(box, image.size):  # resize straight from the frame, no intermediate copy
        return image.resize((size, size), Image.Resampling.BILINEAR, box=box.as_tuple(), reducing_gap=2.0)
    return image.crop(box.as_tuple()).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)


def encode_jpeg(crop: Any, quality: int) -> bytes:
    """The JPEG file of a Pillow ``crop`` at ``quality`` (1-100), as ``mska extract`` writes it."""
    import io

    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_jpeg(crop: Any, folder: Path, index: int, quality: int) -> Path:
    """Write ``crop`` as frame ``index`` of a clip's crop folder."""
    path = folder / crop_frame_name(index)
    path.write_bytes(encode_jpeg(crop, quality))
    return path


def _within(box: Box, size: tuple[int, int]) -> bool:
    width, height = size
    return box.x >= 0 and box.y >= 0 and box.x + box.side <= width and box.y + box.side <= height


class CropCollector:
    """Keeps each frame's crops (one per stream) in memory: the crop :func:`cut_crop` cuts, encoded as
    :func:`write_jpeg` would write it and decoded again, so that a model sees the pixels it would read
    from ``mska extract``'s files. ``size`` is one side for every stream or one per stream.
    :meth:`arrays` gives ``{stream: uint8 [T, 3, S, S]}``.
    """

    def __init__(self, streams: Sequence[str], size: int | Mapping[str, int], quality: int) -> None:
        self.sizes = {name: size if isinstance(size, int) else size[name] for name in streams}
        self.quality = quality
        self.frames: dict[str, list[Any]] = {name: [] for name in streams}

    def submit(self, image: Any, index: int, boxes: Mapping[str, Box]) -> None:
        """Cut, encode and decode frame ``index``'s crop of every stream in ``boxes``."""
        import io

        import numpy as np
        from PIL import Image

        for name, box in boxes.items():
            data = encode_jpeg(cut_crop(image, box, self.sizes[name]), self.quality)
            with Image.open(io.BytesIO(data)) as decoded:
                self.frames[name].append(np.asarray(decoded.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))

    def close(self) -> None:
        """Nothing to wait for: every crop was kept as it came."""

    def abort(self) -> None:
        """Drop the crops kept so far."""
        for frames in self.frames.values():
            frames.clear()

    def arrays(self) -> dict[str, Any]:
        """``{stream: uint8 [T, 3, S, S]}`` (a numpy array per stream)."""
        import numpy as np

        return {name: np.stack(frames) if frames else np.zeros((0, 3, self.sizes[name], self.sizes[name]),
                                                                 dtype=np.uint8)
                for name, frames in self.frames.items()}


class CropWriter:
    """Writes each frame's crops (one per stream) on background threads.

    ``targets`` maps each stream to where its crops go: a packed crop file (``packed``, the default
    format: frames are encoded in parallel and appended in frame order) or a folder of one JPEG file
    per frame (each file's name is its frame index, so threads write in any order). ``threads``
    threads take frames from one queue; at most ``depth`` frames wait, so memory stays bounded.
    :meth:`close` waits for the last crop and raises the first error a thread met; :meth:`abort`
    stops them without raising.
    """

    def __init__(self, targets: Mapping[str, Path], size: int, quality: int, threads: int = 2,
                 depth: int = 8, *, packed: bool = False) -> None:
        from mska_core.data.crop_pack import CropPackWriter

        self.folders = dict(targets) if not packed else {}
        self.packs = {name: CropPackWriter(path) for name, path in targets.items()} if packed else {}
        self.size = size
        self.quality = quality
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._encoded: dict[int, dict[str, bytes]] = {}  # frames encoded before an earlier one
        self._next = 0  # the next frame to append to the packed files
        self._threads = [threading.Thread(target=self._run, name=f"mska-crop-writer-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, image: Any, index: int, boxes: Mapping[str, Box]) -> None:
        """Queue frame ``index`` (a Pillow image the caller no longer changes) and its boxes by stream;
        frames come in order, from 0."""
        if self._error is not None:
            error = self._error
            self.abort()
            raise error
        self._queue.put((image, index, dict(boxes)))

    def close(self) -> None:
        """Wait until every queued crop is written; raise a thread's error if one had one."""
        self._stop()
        if self._error is None and self._encoded:
            self._error = RuntimeError(f"crop writing lost frame {self._next}")
        if self._error is not None:
            self._abort_packs()
            raise self._error
        for pack in self.packs.values():
            pack.close()

    def abort(self) -> None:
        """Stop writing (queued frames are dropped) and wait for the threads."""
        self._error = self._error or RuntimeError("crop writing aborted")
        self._stop()
        self._abort_packs()

    def _abort_packs(self) -> None:
        for pack in self.packs.values():
            if not pack.handle.closed:
                pack.abort()

    def _stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue
            image, index, boxes = item
            try:
                if self.packs:
                    self._append(index, {name: encode_jpeg(cut_crop(image, box, self.size), self.quality)
                                         for name, box in boxes.items()})
                else:
                    for name, box in boxes.items():
                        write_jpeg(cut_crop(image, box, self.size), self.folders[name], index, self.quality)
            except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
                self._error = exc

    def _append(self, index: int, encoded: dict[str, bytes]) -> None:
        """Append frame ``index``'s crops to the packed files, with every frame before it."""
        with self._lock:
            self._encoded[index] = encoded
            while self._next in self._encoded:
                for name, data in self._encoded.pop(self._next).items():
                    self.packs[name].add(data, self.size)
                self._next += 1

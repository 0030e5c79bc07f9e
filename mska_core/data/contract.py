"""The data contract: what ``mska extract`` writes and every reader reads, defined once.

Writers (``mska_core.extract``, ``mska pack``) and readers (the data sources, the crop readers of
fine-tuning and pretraining, ``mska predict``) import their names, folder layout, pixel normalisation
and annotation tables from here and nowhere else. :data:`CONTRACT_VERSION` changes whenever any of it
changes in a way an older reader would misread.

**Folder layout** (:class:`ExtractedLayout`)::

    OUT/
      clips.tsv                  one line per finished clip (header: CLIPS_HEADER; found: each stream's
                                 fraction of frames whose part was found; outside: the fraction of
                                 found joints beyond the frame; mirrored: un-mirrored on the way in)
      clips.K-of-N.tsv           the same, written by job K of an extraction split in N (--shard K/N)
      keypoints/ID.npy           float32 [T, J, 3]: x, y in pixels, confidence
      crops/STREAM/ID.crops      a clip's crops of one stream, one file (the packed format, below)
      crops/STREAM/ID/000000.jpg or one JPEG file per frame (the folder format; still read everywhere)
      boxes/ID.npz               per stream: int32 [T, 3] boxes (x, y, side), bool [T] missing frames
      SPLIT.tsv, SPLIT/ID.npy    with --annotations/--split: the directory format
      .partial/ID/               a clip being written (removed when it is finished or restarted)

**WebDataset shards** (``mska pack OUT --to DEST``, read by :class:`mska_core.data.shards.ClipShards`)::

    DEST/
      shards.json                the shards and their clip counts, the streams, the contract version
      shard-000000.tar           clips one after another; clip KEY (its ordinal) is the members
                                 KEY.json (id, gloss, text, frames, fps, width, height, layout),
                                 KEY.keypoints.npy (float32 [T, J, 3], pixels) and KEY.STREAM.crops

**The clips table** (:class:`ClipRow`, :func:`read_clips`): ``clips.tsv`` and its ``--shard`` parts,
one tab-separated line per finished clip under the header :data:`CLIPS_HEADER`.

**Crops.** Crop ``i`` of a clip belongs to its keypoint frame ``i``. A clip's crops of one stream are
either one packed file ``STREAM/ID.crops`` (:mod:`mska_core.data.crop_pack`: the JPEG bytes of every
frame one after the other and an index of their offsets) or a folder ``STREAM/ID/`` of
:data:`CROP_NAME` files. Both hold the same JPEG bytes, so they decode to the same pixels.

**Pixel normalisation** (:func:`normalize_pixels`): x / width, y flipped (height - y) / height, both
mapped to [-1, 1]; the confidence is kept — the MSKA reference's, for every source.

**Annotation tables** (:func:`read_annotations`), recognised by their header:

- ``id<TAB>gloss<TAB>text`` — the directory format's table (one line per clip);
- ``id<TAB>video<TAB>start<TAB>end<TAB>gloss<TAB>text`` — segments of recordings (seconds; gloss and
  text may be empty; -1 for both start and end means the whole video);
- ``name|video|start|end|speaker|orth|translation`` — a PHOENIX-2014T corpus CSV, as released
  (``name`` is the id, ``orth`` the glosses, ``translation`` the text; ``video`` a glob under the
  corpus root; start and end of -1, the whole clip); PHOENIX-2014's ``id|folder|signer|annotation``
  is read the same way (``folder`` the glob, ``annotation`` the glosses, no text).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from mska_core.errors import DataError

#: Version of everything this module defines (2: packed crops, shard parts of clips.tsv, segments; 3:
#: clips.tsv's found, outside and mirrored columns, the annotation tables' mirrored column).
CONTRACT_VERSION = 3

# --- the folder layout ----------------------------------------------------------------------------

CLIPS_HEADER = ("id", "video", "frames", "fps", "width", "height", "layout", "source", "version", "streams",
                "found", "outside", "mirrored")
#: The columns of a ``clips.tsv`` written before ``found``, ``outside`` and ``mirrored`` (still read).
CLIPS_HEADER_V2 = CLIPS_HEADER[:10]
CLIPS_TABLE = "clips.tsv"
#: A part of ``clips.tsv`` written by job ``K`` of ``N`` (``mska extract --shard K/N``).
CLIPS_PART = "clips.{part}-of-{parts}.tsv"
PARTIAL = ".partial"
#: Name of frame ``index``'s crop (0-based) in a clip's crop folder (the folder format).
CROP_NAME = "{index:06d}.jpg"
#: Suffix of a clip's packed crops of one stream (the packed format).
PACKED_SUFFIX = ".crops"
#: A WebDataset shard of ``mska pack``, and the index beside the shards.
SHARD_NAME = "shard-{index:06d}.tar"
SHARD_INDEX = "shards.json"
#: The member suffixes of one clip in a shard (besides ``.STREAM.crops``); ``.boxes.npz`` is the
#: extraction's ``boxes/ID.npz`` (crop boxes and per-stream missing flags), where it has one.
SHARD_META, SHARD_KEYPOINTS, SHARD_BOXES = ".json", ".keypoints.npy", ".boxes.npz"


@attrs.frozen
class ExtractedLayout:
    """Paths inside an extraction's output folder ``root`` (see the module's docs)."""

    root: Path = attrs.field(converter=Path)

    @property
    def clips_tsv(self) -> Path:
        return self.root / CLIPS_TABLE

    def clips_part(self, part: int, parts: int) -> Path:
        """The ``clips.tsv`` part of job ``part`` (1-based) of ``parts``."""
        return self.root / CLIPS_PART.format(part=part, parts=parts)

    def clips_parts(self) -> list[Path]:
        """Every ``clips.K-of-N.tsv`` part in the folder, sorted."""
        return sorted(self.root.glob(CLIPS_PART.format(part="*", parts="*")))

    def keypoints(self, clip_id: str) -> Path:
        return self.root / "keypoints" / f"{clip_id}.npy"

    @property
    def crops_root(self) -> Path:
        return self.root / "crops"

    def crop_folder(self, stream: str, clip_id: str) -> Path:
        """The folder format's crops of ``clip_id`` for ``stream``."""
        return self.crops_root / stream / clip_id

    def crop_pack(self, stream: str, clip_id: str) -> Path:
        """The packed format's crops of ``clip_id`` for ``stream``."""
        return self.crops_root / stream / f"{clip_id}{PACKED_SUFFIX}"

    def boxes(self, clip_id: str) -> Path:
        return self.root / "boxes" / f"{clip_id}.npz"

    def partial(self, clip_id: str) -> Path:
        return self.root / PARTIAL / clip_id


@attrs.frozen
class ClipRow:
    """One line of ``clips.tsv``: a finished clip."""

    id: str
    video: str
    frames: int
    fps: float
    width: int
    height: int
    layout: str
    source: str  # "npy:PATH", "pose:PATH", "pickle:PATH:NAME" or "estimator:NAME"
    version: str  # the estimator's distribution version; empty for keypoint files
    streams: tuple[str, ...]
    found: Mapping[str, float] = attrs.field(factory=dict)  # per stream: fraction of frames whose part was found
    outside: float = 0.0  # fraction of the clip's found joints beyond the frame by more than [data] frame_margin
    mirrored: bool = False  # the recording was un-mirrored on the way in ([extract] mirrored)

    def cells(self) -> list[str]:
        found = ",".join(f"{name}={self.found[name]:.3f}" for name in self.streams if name in self.found)
        return [self.id, self.video, str(self.frames), f"{self.fps:g}", str(self.width), str(self.height),
                self.layout, self.source, self.version, ",".join(self.streams), found, f"{self.outside:.4f}",
                "true" if self.mirrored else "false"]

    @classmethod
    def from_cells(cls, cells: list[str]) -> ClipRow:
        """A row from its cells (a line of this version, or of the ten columns written before ``found``)."""
        found = dict((k, float(v)) for k, _, v in (item.partition("=") for item in cells[10].split(",") if item)) \
            if len(cells) > 10 else {}
        return cls(id=cells[0], video=cells[1], frames=int(cells[2]), fps=float(cells[3]),
                   width=int(cells[4]), height=int(cells[5]), layout=cells[6], source=cells[7],
                   version=cells[8], streams=tuple(s for s in cells[9].split(",") if s), found=found,
                   outside=float(cells[11]) if len(cells) > 11 else 0.0,
                   mirrored=len(cells) > 12 and cells[12] == "true")


def read_clips(path: Path) -> dict[str, ClipRow]:
    """The rows of ``clips.tsv`` by id (a later line wins; a torn last line is ignored)."""
    if not path.is_file():
        return {}
    rows: dict[str, ClipRow] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for cells in list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
            if len(cells) not in (len(CLIPS_HEADER), len(CLIPS_HEADER_V2)):
                continue
            try:
                row = ClipRow.from_cells(cells)
            except ValueError:
                continue
            rows[row.id] = row
    return rows


def read_all_clips(folder: ExtractedLayout) -> dict[str, ClipRow]:
    """The rows of ``clips.tsv`` and of every ``clips.K-of-N.tsv`` part (``--shard``) by id."""
    rows = read_clips(folder.clips_tsv)
    for part in folder.clips_parts():
        rows.update(read_clips(part))
    return rows


def crop_frame_name(index: int) -> str:
    """File name of frame ``index``'s crop in the folder format."""
    return CROP_NAME.format(index=index)


_CROP_FILE = re.compile(r"^(\d{6})\.jpg$")


def crop_frame_index(name: str) -> int | None:
    """The frame index of a crop file's name in the folder format (``000012.jpg``: 12), else ``None``."""
    match = _CROP_FILE.match(name)
    return int(match.group(1)) if match else None


# --- pixel normalisation --------------------------------------------------------------------------


def normalize_pixels(keypoints: Any, width: float, height: float) -> Any:
    """Pixel coordinates ``[T, J, 3]`` (a torch tensor) to [-1, 1] as the MSKA reference does (y
    flipped); confidence kept."""
    return _normalized(keypoints.clone().float(), keypoints, width, height)


def normalize_pixel_array(points: Any, width: int, height: int) -> Any:
    """:func:`normalize_pixels` of a numpy array ``[T, J, 3]``, as a float32 numpy array (without torch:
    extraction runs where only numpy is installed, e.g. a keypoint estimator's own environment)."""
    import numpy as np

    return _normalized(np.array(points, dtype=np.float32), points, width, height)


def _normalized(out: Any, keypoints: Any, width: float, height: float) -> Any:
    """``out`` (a float32 copy of ``keypoints``) with x and y normalised: the formula, once."""
    out[..., 0] = keypoints[..., 0] / width * 2 - 1
    out[..., 1] = (height - keypoints[..., 1]) / height * 2 - 1
    return out


# --- annotation tables ----------------------------------------------------------------------------

#: The directory format's table header.
ANNOTATION_HEADER = ("id", "gloss", "text")
#: The columns a segments table must have (``gloss`` and ``text`` are optional).
SEGMENT_COLUMNS = ("id", "video", "start", "end")
#: The header of a PHOENIX-2014T corpus CSV (``|``-separated).
PHOENIX_HEADER = ("name", "video", "start", "end", "speaker", "orth", "translation")
#: The header of a PHOENIX-2014 corpus CSV: whole clips (``folder`` a glob), glosses, no translation.
PHOENIX_2014_HEADER = ("id", "folder", "signer", "annotation")
#: ``start`` and ``end`` with this value mean the whole clip.
WHOLE_CLIP = -1.0


@attrs.frozen
class Annotation:
    """One row of an annotation table: the clip's id, gloss and text, and where the row is.

    Tables with ``video``, ``start`` and ``end`` columns also say where the clip comes from: ``video``
    (a path, a glob, or a clip id, as the table gives it) and ``start``/``end`` in seconds
    (:data:`WHOLE_CLIP` for both: the whole video); they are ``None`` in the directory format's table.
    ``mirrored`` is the optional ``mirrored`` column (``true``/``false``, ``1``/``0``, ``yes``/``no``):
    whether the clip's recording is a mirror image (a selfie camera's); ``None`` where the table has no
    such column or the cell is empty.
    """

    clip_id: str
    gloss: str
    text: str
    line: int
    video: str | None = None
    start: float | None = None
    end: float | None = None
    mirrored: bool | None = None

    @property
    def whole(self) -> bool:
        """Whether the row is a whole video (no start and end, or both :data:`WHOLE_CLIP`)."""
        return self.start is None or (self.start == WHOLE_CLIP and self.end == WHOLE_CLIP)


def decode_table_text(data: bytes) -> str:
    """Table bytes as text (UTF-8, bad bytes kept for validation to report per clip)."""
    from mska_core.data.validate import decode_text

    return decode_text(data)


def read_annotations(tsv: str | Path, what: str = "table") -> list[Annotation]:
    """The rows of an annotation table: the directory format's ``id gloss text``, a segments table or
    a PHOENIX-2014T corpus CSV (recognised by the header line; see the module's docs).

    Text is decoded as UTF-8 with ``surrogateescape``: a byte that is not UTF-8 survives reading and
    is reported per clip by :mod:`mska_core.data.validate`.
    """
    tsv = Path(tsv)
    if not tsv.is_file():
        raise DataError(f"{tsv}: the {what} is missing (expected id, gloss, text; see docs/data.md)")
    lines = decode_table_text(tsv.read_bytes()).splitlines()
    first = lines[0] if lines else ""
    if "|" in first and "\t" not in first:
        return _read_phoenix(tsv, lines)
    rows = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = tuple(c.strip().lower() for c in rows[0]) if rows else ()
    if all(column in header for column in SEGMENT_COLUMNS):
        return _read_segments(tsv, header, rows[1:])
    if header[:3] != ANNOTATION_HEADER:
        raise DataError(f"{tsv}: the first line must be the header 'id<TAB>gloss<TAB>text' (or "
                        "'id<TAB>video<TAB>start<TAB>end<TAB>gloss<TAB>text' for segments, or a PHOENIX-2014T "
                        "corpus CSV)")
    annotations = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise DataError(f"{tsv}:{line}: expected id, gloss and text separated by tabs")
        text = row[2].strip() if len(row) > 2 else ""
        mirrored = _flag(tsv, line, row, header)
        annotations.append(Annotation(row[0].strip(), row[1].strip(), text, line, mirrored=mirrored))
    return annotations


#: The optional per-clip column saying a recording is mirrored, and the values it takes.
MIRRORED_COLUMN = "mirrored"
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": None}


def _flag(tsv: Path, line: int, row: Sequence[str], header: Sequence[str]) -> bool | None:
    """The row's ``mirrored`` cell (``None`` without the column or with an empty cell)."""
    if MIRRORED_COLUMN not in header:
        return None
    index = list(header).index(MIRRORED_COLUMN)
    cell = row[index].strip().lower() if index < len(row) else ""
    if cell not in _FLAGS:
        raise DataError(f"{tsv}:{line}: mirrored {cell!r} is not true or false")
    return _FLAGS[cell]


def _read_segments(tsv: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[Annotation]:
    column = {name: header.index(name) for name in header}
    annotations = []
    for line, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in column.items()}
        start, end = _time(tsv, line, cells["start"], "start"), _time(tsv, line, cells["end"], "end")
        if not cells["id"] or not cells["video"]:
            raise DataError(f"{tsv}:{line}: a segment needs an id and a video")
        _check_range(tsv, line, start, end)
        annotations.append(Annotation(cells["id"], cells.get("gloss", ""), cells.get("text", ""), line,
                                      video=cells["video"], start=start, end=end,
                                      mirrored=_flag(tsv, line, row, header)))
    return annotations


def _read_phoenix(tsv: Path, lines: Sequence[str]) -> list[Annotation]:
    rows = list(csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE))
    header = tuple(c.strip().lower() for c in rows[0])
    if header[:4] == PHOENIX_2014_HEADER:  # PHOENIX-2014's id|folder|signer|annotation: whole clips, glosses only
        rows = [[row[0], row[1], "-1", "-1", row[2], row[3], ""] if len(row) == 4 else row for row in rows[1:]]
        rows.insert(0, list(PHOENIX_HEADER))
        header = PHOENIX_HEADER
    missing = [name for name in ("name", "video", "start", "end", "orth") if name not in header]
    if missing:
        raise DataError(f"{tsv}: a '|'-separated table must be a PHOENIX-2014T corpus CSV "
                        f"({'|'.join(PHOENIX_HEADER)}); the header lacks {', '.join(missing)}")
    column = {name: header.index(name) for name in header}
    annotations = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise DataError(f"{tsv}:{line}: {len(row)} fields, the header has {len(header)} ('|'-separated)")
        cells = {name: row[i].strip() for name, i in column.items()}
        start, end = _time(tsv, line, cells["start"], "start"), _time(tsv, line, cells["end"], "end")
        _check_range(tsv, line, start, end)
        annotations.append(Annotation(cells["name"], cells["orth"], cells.get("translation", ""), line,
                                      video=cells["video"], start=start, end=end))
    return annotations


def _time(tsv: Path, line: int, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{tsv}:{line}: {what} {text!r} is not a number of seconds (-1: the whole clip)") from None


def _check_range(tsv: Path, line: int, start: float, end: float) -> None:
    if start == WHOLE_CLIP and end == WHOLE_CLIP:
        return
    if start < 0 or end <= start:
        raise DataError(f"{tsv}:{line}: the segment {start:g}-{end:g} s is empty or negative; give start < end "
                        "in seconds (or -1 and -1 for the whole video)")


def write_annotations(rows: Sequence[tuple[str, str, str]]) -> bytes:
    """The directory format's table of ``(id, gloss, text)`` rows, as bytes to write."""
    lines = ["\t".join(ANNOTATION_HEADER)] + ["\t".join(row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


# --- clip ids -------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders the numbers in a name by value (``images2.png`` before ``images10.png``)."""
    return tuple(int(part) if part.isdigit() else part for part in _NUMBER.split(name))

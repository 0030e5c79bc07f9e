"""Corpora as labs store them: frame folders (both PHOENIX layouts, made from a real photograph),
segments of a long recording, a PHOENIX-2014T corpus CSV, ``--shard K/N``, packed crop files and
WebDataset shards streamed over DDP ranks and DataLoader workers."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import run_mska
from test_extract import crops_of, run_extract

#: PHOENIX's frame size (width x height) and how far the camera pans per frame, in photo pixels.
WIDTH, HEIGHT, PAN = 210, 260, 6
#: Where frame 0 lies in the photograph, and where the astronaut's face is in the photograph.
ORIGIN, FACE_CENTRE, FACE_RADIUS = (130, 20), (232, 112), 42
FACE, LEFT_HAND, RIGHT_HAND = range(23, 91), range(91, 112), range(112, 133)


def photograph() -> np.ndarray:
    """A real photograph: scikit-image's astronaut, uint8 [512, 512, 3]."""
    from skimage import data

    return data.astronaut()


def panned_frames(frames: int) -> list[np.ndarray]:
    """Frames of a camera panning right over the photograph by :data:`PAN` pixels per frame."""
    photo = photograph()
    x0, y0 = ORIGIN
    return [photo[y0:y0 + HEIGHT, x0 + PAN * t:x0 + PAN * t + WIDTH].copy() for t in range(frames)]


def still_keypoints(frames: int) -> np.ndarray:
    """COCO-WholeBody points in frame pixels that stay put while the camera pans: the face's on a ring
    around where the face is in frame 0, the hands' lower down."""
    points = np.zeros((frames, 133, 3), dtype=np.float32)
    cx, cy = FACE_CENTRE[0] - ORIGIN[0], FACE_CENTRE[1] - ORIGIN[1]
    for joints, (x, y, r) in ((FACE, (cx, cy, FACE_RADIUS)), (LEFT_HAND, (50, 200, 15)), (RIGHT_HAND, (150, 200, 15))):
        angles = np.linspace(0, 2 * np.pi, len(joints), endpoint=False)
        points[:, list(joints), 0] = x + r * np.cos(angles)
        points[:, list(joints), 1] = y + r * np.sin(angles)
        points[:, list(joints), 2] = 1.0
    return points


def save_frames(folder: Path, frames: list[np.ndarray], name: str) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / name.format(index=index))
    return folder


def expected_crop(box: np.ndarray, frame: int, size: int) -> np.ndarray:
    """The crop of ``box`` (x, y, side in frame pixels) in frame ``frame``, cut from the photograph."""
    from PIL import Image

    x, y, side = (int(v) for v in box)
    left, top = x + ORIGIN[0] + PAN * frame, y + ORIGIN[1]
    patch = Image.fromarray(photograph()).crop((left, top, left + side, top + side))
    return np.asarray(patch.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))


# --- frame folders --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frame folders in PHOENIX-2014T's layout (``NAME/images0001.png``), PHOENIX-2014's
    (``NAME/1/NAME.avi_pid0_fn000000-0.png``) and a CSL-like one whose names sort wrongly as text
    (``frame1.jpg`` .. ``frame12.jpg``), and a keypoint file per clip."""
    root = tmp_path_factory.mktemp("phoenix")
    frames = panned_frames(12)
    split = root / "features" / "fullFrame-210x260px" / "train"
    save_frames(split / "01April_2010_Thursday_heute-6694", frames, "images{index:04d}.png")
    name = "05May_2011_Thursday_tagesschau-3"
    save_frames(split / name / "1", frames[:10], name + ".avi_pid0_fn{index:06d}-0.png")
    save_frames(root / "csl" / "S000007_P0003_T00", [f for f in frames[:11]],
                "frame{index}.jpg")
    for clip, count in (("01April_2010_Thursday_heute-6694", 12), (name, 10), ("S000007_P0003_T00", 11)):
        (root / "keypoints").mkdir(exist_ok=True)
        np.save(root / "keypoints" / f"{clip}.npy", still_keypoints(count))
    return root


@pytest.fixture(scope="module")
def phoenix_out(phoenix: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("phoenix-out") / "out"
    result = run_extract(str(phoenix / "features"), str(phoenix / "csl"), "--keypoints", str(phoenix / "keypoints"),
                         "--out", str(out), "--crop-size", "64", "--json")
    return out, result


def test_frame_folders_in_both_phoenix_layouts_are_clips_named_by_folder(phoenix_out, phoenix: Path):
    out, result = phoenix_out
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["written"]) == [
        "01April_2010_Thursday_heute-6694", "05May_2011_Thursday_tagesschau-3", "S000007_P0003_T00"]
    rows = {line.split("\t")[0]: line.split("\t") for line in (out / "clips.tsv").read_text().splitlines()[1:]}
    assert rows["05May_2011_Thursday_tagesschau-3"][2:6] == ["10", "25", str(WIDTH), str(HEIGHT)]
    assert rows["05May_2011_Thursday_tagesschau-3"][1].endswith("05May_2011_Thursday_tagesschau-3/1")
    assert rows["01April_2010_Thursday_heute-6694"][2] == "12"
    assert "25 frames/s" in result.stderr and "--fps" in result.stderr  # the notice


def test_frame_folder_crops_are_the_photograph_where_the_boxes_are_in_frame_order(phoenix_out):
    out, _ = phoenix_out
    for clip in ("01April_2010_Thursday_heute-6694", "S000007_P0003_T00"):  # natural order: frame2 < frame10
        crops = crops_of(out, "face", clip)
        with np.load(out / "boxes" / f"{clip}.npz") as boxes:
            face = boxes["face"]
        for frame in range(len(crops)):
            expected = expected_crop(face[frame], frame, 64).astype(np.float64)
            error = np.abs(crops[frame].astype(np.float64) - expected).mean()
            assert error < 6, (clip, frame, error)  # JPEG's loss only
            if frame:  # the camera moved: the previous frame's crop is another picture
                assert np.abs(crops[frame - 1].astype(np.float64) - expected).mean() > 2 * error


def test_fps_sets_the_frame_rate_of_frame_folders(phoenix: Path, tmp_path: Path):
    result = run_extract(str(phoenix / "csl"), "--keypoints", str(phoenix / "keypoints"), "--out", str(tmp_path / "o"),
                         "--crop-size", "32", "--fps", "30", "--streams", "face")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "clips.tsv").read_text().splitlines()[1].split("\t")[3] == "30"
    assert "notice" not in result.stderr


def test_a_frame_folder_with_frames_of_two_sizes_fails_in_one_line_naming_the_frame(tmp_path: Path):
    frames = panned_frames(3)
    frames[2] = frames[2][:200]
    save_frames(tmp_path / "clips" / "odd", frames, "{index}.png")
    (tmp_path / "kp").mkdir()
    np.save(tmp_path / "kp" / "odd.npy", still_keypoints(3))
    result = run_extract(str(tmp_path / "clips"), "--keypoints", str(tmp_path / "kp"), "--out", str(tmp_path / "out"),
                         "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    reason = json.loads(result.stdout)["failed"][0]["reason"]
    assert str(tmp_path / "clips" / "odd" / "2.png") in reason and "210x200" in reason and "\n" not in reason
    assert not list((tmp_path / "out").glob("crops/*/*"))


# --- segments of a long recording -----------------------------------------------------------------

FPS = 25
#: (id, video, start, end) of the segments table; ``never`` lies between two frames.
SEGMENTS = [("opening", "lecture", 0.0, 2.0), ("middle", "lecture", 3.3, 7.9), ("overlap", "lecture", 7.5, 19.96),
            ("never", "lecture", 12.01, 12.02), ("other", "interview", 1.0, 2.5)]


def index_frames(frames: int, width: int = 96, height: int = 64) -> list[np.ndarray]:
    """Frames whose brightness says nothing about their index but whose pixels differ."""
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, size=(height, width, 3), dtype=np.uint8)
    return [np.roll(base, t, axis=1) for t in range(frames)]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s and a 4 s recording at 25 frames/s, and their keypoint files (joint 0's x: frame index)."""
    root = tmp_path_factory.mktemp("recordings")
    (root / "videos").mkdir()
    (root / "keypoints").mkdir()
    for name, seconds in (("lecture", 20), ("interview", 4)):
        frames = seconds * FPS
        write_video_sized(root / "videos" / f"{name}.mp4", index_frames(frames))
        points = still_keypoints(frames) * 0.4
        points[..., 2] = np.where(points[..., 2] > 0, 1.0, 0.0)
        points[:, 0, 0], points[:, 0, 1:] = np.arange(frames), 1.0
        np.save(root / "keypoints" / f"{name}.npy", points)
    lines = ["id\tvideo\tstart\tend\tgloss\ttext"] + [f"{i}\t{v}.mp4\t{s}\t{e}\tG{n}\tt {n}"
                                                      for n, (i, v, s, e) in enumerate(SEGMENTS)]
    (root / "segments.tsv").write_text("\n".join(lines) + "\n")
    return root


def write_video_sized(path: Path, frames: list[np.ndarray]) -> None:
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def test_segments_are_cut_from_their_recording_with_exact_frame_counts(recordings: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = run_extract(str(recordings / "videos"), "--keypoints", str(recordings / "keypoints"), "--out", str(out),
                         "--annotations", str(recordings / "segments.tsv"), "--split", "train", "--crop-size", "32",
                         "--json")
    assert result.returncode == 1, result.stderr  # the segment between two frames fails, in one line
    summary = json.loads(result.stdout)
    assert [f["id"] for f in summary["failed"]] == ["never"]
    assert "no frame of the input lies in the segment" in summary["failed"][0]["reason"]
    assert sorted(summary["written"]) == ["middle", "opening", "other", "overlap"]
    for clip, _, start, end in SEGMENTS:
        if clip == "never":
            continue
        points = np.load(out / "keypoints" / f"{clip}.npy")
        assert abs(len(points) - (end - start) * FPS) <= 1, (clip, len(points))
        first = int(np.ceil(start * FPS - 1e-6))
        np.testing.assert_array_equal(points[:, 0, 0], np.arange(first, first + len(points)))  # cut, not shifted
        assert len(crops_of(out, "face", clip)) == len(points)
    table = (out / "train.tsv").read_text().splitlines()
    assert table[0] == "id\tgloss\ttext" and "middle\tG1\tt 1" in table and not any(t.startswith("never") for t in table)


def test_segments_in_two_worker_processes_are_what_one_process_cuts(recordings: Path, tmp_path: Path):
    runs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        result = run_extract(str(recordings / "videos"), "--keypoints", str(recordings / "keypoints"), "--out",
                             str(out), "--annotations", str(recordings / "segments.tsv"), "--split", "train",
                             "--crop-size", "32", "--workers", workers, "--json")
        assert result.returncode == 1, result.stderr
        summary = json.loads(result.stdout)
        runs[workers] = (sorted(summary["written"]), [f["id"] for f in summary["failed"]])
        assert (out / "clips.tsv").read_text() == (tmp_path / "out1" / "clips.tsv").read_text()
        for path in sorted((tmp_path / "out1").rglob("*.crops")):
            assert path.read_bytes() == (out / path.relative_to(tmp_path / "out1")).read_bytes(), path
    assert runs["1"] == runs["2"] == (["middle", "opening", "other", "overlap"], ["never"])


def test_a_recording_is_read_once_however_many_segments_and_estimated_only_inside_them(recordings: Path,
                                                                                        tmp_path: Path):
    import mska_core.extract.clip as clip_module
    from mska_core import KeypointEstimator, hookimpl
    from mska_core.extract import ExtractRequest, run_extraction
    from mska_core.registry import make_registry

    seen: list[int] = []

    class Estimator:
        def __call__(self, frame: np.ndarray) -> np.ndarray:
            seen.append(1)
            return still_keypoints(1)[0] * 0.4

    plugin = types.ModuleType("counting_estimator")
    plugin.mska_keypoint_estimators = hookimpl(  # type: ignore[attr-defined]
        lambda: [KeypointEstimator(name="counting", layout="coco_wholebody", build=lambda options: Estimator())])
    opened: list[str] = []
    original = clip_module.open_input

    def counting(video, fps=None):
        opened.append(video.id)
        return original(video, fps)

    clip_module.open_input = counting
    try:
        report = run_extraction(ExtractRequest(videos=(str(recordings / "videos"),), out=tmp_path / "out",
                                               estimator="counting", annotations=str(recordings / "segments.tsv"),
                                               split="train"), registry=make_registry(plugin))
    finally:
        clip_module.open_input = original
    assert sorted(opened) == ["interview", "lecture"]  # one pass per recording
    inside = {(video, k) for _, video, start, end in SEGMENTS for k in range(24 * FPS) if start <= k / FPS < end}
    assert len(seen) == len(inside) == 504  # each frame inside a segment once (overlaps share), none outside
    assert sum(row.frames for row in report.written) == 514  # the 10 frames "middle" and "overlap" share


# --- PHOENIX-2014T corpus CSV ---------------------------------------------------------------------


def test_a_phoenix_2014t_corpus_csv_is_read_as_released(phoenix: Path, tmp_path: Path):
    csv = tmp_path / "PHOENIX-2014-T.train.corpus.csv"
    csv.write_text(
        "name|video|start|end|speaker|orth|translation\n"
        "01April_2010_Thursday_heute-6694|01April_2010_Thursday_heute-6694/1/*.png|-1|-1|Signer04|"
        "REGEN WOLKE|es regnet und ist bewoelkt\n"
        "05May_2011_Thursday_tagesschau-3|05May_2011_Thursday_tagesschau-3/1/*.png|-1|-1|Signer01|"
        "SONNE|die sonne scheint\n"
        "missing-clip|missing-clip/1/*.png|-1|-1|Signer01|NEBEL|nebel\n")
    out = tmp_path / "out"
    result = run_extract(str(phoenix / "features" / "fullFrame-210x260px" / "train"), "--keypoints",
                         str(phoenix / "keypoints"), "--out", str(out), "--annotations", str(csv), "--split", "train",
                         "--crop-size", "32", "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert sorted(summary["written"]) == ["01April_2010_Thursday_heute-6694", "05May_2011_Thursday_tagesschau-3"]
    assert [f["id"] for f in summary["failed"]] == ["missing-clip"]
    assert f"{csv}:4" in summary["failed"][0]["reason"]  # the line of the CSV
    table = (out / "train.tsv").read_text().splitlines()
    assert table == ["id\tgloss\ttext", "01April_2010_Thursday_heute-6694\tREGEN WOLKE\tes regnet und ist bewoelkt",
                     "05May_2011_Thursday_tagesschau-3\tSONNE\tdie sonne scheint"]
    assert np.load(out / "train" / "05May_2011_Thursday_tagesschau-3.npy").shape == (10, 133, 3)


# --- --shard K/N ----------------------------------------------------------------------------------


def test_shard_parts_together_equal_one_unsharded_extraction(phoenix: Path, tmp_path: Path):
    inputs = [str(phoenix / "features"), str(phoenix / "csl")]
    common = ["--keypoints", str(phoenix / "keypoints"), "--crop-size", "32", "--json"]
    whole = tmp_path / "whole"
    assert run_extract(*inputs, "--out", str(whole), *common).returncode == 0
    parts = tmp_path / "parts"
    written = []
    for part in ("1/2", "2/2"):
        result = run_extract(*inputs, "--out", str(parts), "--shard", part, *common)
        assert result.returncode == 0, result.stderr
        written.append(json.loads(result.stdout)["written"])
    assert not set(written[0]) & set(written[1]) and len(written[0] + written[1]) == 3
    assert sorted(p.name for p in parts.glob("clips*.tsv")) == ["clips.1-of-2.tsv", "clips.2-of-2.tsv"]
    final = run_extract(*inputs, "--out", str(parts), *common)  # the final step: nothing to do, parts merged
    assert final.returncode == 0 and json.loads(final.stdout)["written"] == []
    assert sorted(p.name for p in parts.glob("clips*.tsv")) == ["clips.tsv"]
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parts) for p in parts.rglob("*") if p.is_file())
    for path in files:
        assert (whole / path).read_bytes() == (parts / path).read_bytes(), path


def test_a_bad_shard_is_one_line_and_exit_code_2(phoenix: Path, tmp_path: Path):
    result = run_extract(str(phoenix / "csl"), "--keypoints", str(phoenix / "keypoints"), "--out", str(tmp_path),
                         "--shard", "3/2")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "K/N" not in result.stdout


# --- packed crop files ----------------------------------------------------------------------------


def test_a_packed_crop_file_cut_short_is_never_read_as_a_clip(tmp_path: Path):
    from mska_core.data.crop_pack import CropPack, CropPackWriter, is_packed
    from mska_core.errors import DataError

    writer = CropPackWriter(tmp_path / "a.crops")
    for index in range(5):
        writer.add(bytes([index]) * (100 + index), 8)
    writer.close()
    pack = CropPack(tmp_path / "a.crops")
    assert (len(pack), pack.side, pack.jpeg(3)) == (5, 8, bytes([3]) * 103)
    data = (tmp_path / "a.crops").read_bytes()
    for cut in (len(data) - 1, len(data) - 30, len(data) // 2, 20):
        (tmp_path / "b.crops").write_bytes(data[:cut])
        assert not is_packed(tmp_path / "b.crops")
        with pytest.raises(DataError, match="not written to the end|not a whole"):
            CropPack(tmp_path / "b.crops")


def test_mska_pretrain_reads_the_frames_of_packed_crop_files(phoenix_out):
    from mska_core.data.crops import CropFolder

    out, _ = phoenix_out
    folder = CropFolder([out / "crops" / "face"])
    assert len(folder) == 12 + 10 + 11
    image, skipped = folder.load(3)
    assert tuple(image.shape) == (3, 64, 64) and skipped == ()


# --- WebDataset shards ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed_corpus(phoenix: Path, recordings: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An extraction of seven clips (frame folders and segments) with a split table."""
    out = tmp_path_factory.mktemp("packed") / "out"
    run_extract(str(recordings / "videos"), "--keypoints", str(recordings / "keypoints"), "--out", str(out),
                "--annotations", str(recordings / "segments.tsv"), "--split", "train", "--crop-size", "32")
    result = run_extract(str(phoenix / "features"), str(phoenix / "csl"), "--keypoints", str(phoenix / "keypoints"),
                         "--out", str(out), "--crop-size", "32")
    assert result.returncode == 0, result.stderr
    return out


def ids_seen(dest: Path, rank: int, world_size: int, epoch: int) -> list[str]:
    from torch.utils.data import DataLoader

    from mska_core.data.shards import ClipShards

    dataset = ClipShards(dest, rank=rank, world_size=world_size, seed=3)
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, collate_fn=lambda clip: clip.id)
    return list(loader)


@pytest.mark.parametrize("shards", [3, 7])  # fewer shards than the 4 readers, and more
def test_shards_read_by_two_ranks_and_two_workers_see_every_clip_once_per_epoch(packed_corpus: Path, tmp_path: Path,
                                                                                shards: int):
    dest = tmp_path / "shards"
    result = run_mska("pack", str(packed_corpus), "--to", str(dest), "--shards", str(shards))
    assert result.returncode == 0, result.stderr
    clips = sorted(line.split("\t")[0] for line in (packed_corpus / "clips.tsv").read_text().splitlines()[1:])
    assert len(clips) == 7
    for epoch in (0, 1):
        seen = [ids_seen(dest, rank, 2, epoch) for rank in (0, 1)]
        assert sorted(seen[0] + seen[1]) == clips, (epoch, seen)  # every clip, exactly once
        assert seen[0] and seen[1]


def test_a_clip_from_a_shard_holds_what_the_extraction_holds(packed_corpus: Path, tmp_path: Path):
    from mska_core.data.shards import ClipShards

    result = run_mska("pack", str(packed_corpus), "--to", str(tmp_path / "s"), "--shards", "2", "--split", "train")
    assert result.returncode == 0, result.stderr
    clips = {clip.id: clip for clip in ClipShards(tmp_path / "s")}
    assert sorted(clips) == ["middle", "opening", "other", "overlap"]  # the split's clips only
    middle = clips["middle"]
    assert (middle.gloss, middle.text) == ("G1", "t 1")
    np.testing.assert_array_equal(middle.keypoints, np.load(packed_corpus / "keypoints" / "middle.npy"))
    np.testing.assert_array_equal(middle.crops("hand_left", [4, 0, 4]),
                                  crops_of(packed_corpus, "hand_left", "middle")[[4, 0, 4]])


# --- the data contract ----------------------------------------------------------------------------


def test_the_data_contract_is_defined_once():
    """Crop names, the clips table's header, pixel normalisation and table reading live in
    mska_core/data/contract.py; no other module of the package spells them."""
    package = Path(__file__).resolve().parents[1] / "mska_core"
    spelled = {'"{index:06d}.jpg"': [], "def normalize_pixels(": [], '"id", "video", "frames"': [],
               "csv.reader(": []}
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for needle, where in spelled.items():
            if needle in text:
                where.append(path.relative_to(package).as_posix())
    assert spelled == {needle: ["data/contract.py"] for needle in spelled}


def test_annotation_tables_are_recognised_by_their_header_and_bad_lines_named(tmp_path: Path):
    from mska_core.data.contract import read_annotations
    from mska_core.errors import DataError

    table = tmp_path / "segments.tsv"
    table.write_text("id\tvideo\tstart\tend\ttext\nа1\tlong.mp4\t1.5\t4\tbonjour\nwhole\tother.mp4\t-1\t-1\t\n")
    rows = read_annotations(table)
    assert [(r.clip_id, r.video, r.start, r.end, r.gloss, r.text, r.whole) for r in rows] == [
        ("а1", "long.mp4", 1.5, 4.0, "", "bonjour", False), ("whole", "other.mp4", -1.0, -1.0, "", "", True)]
    for bad, expected in (("x\tv.mp4\t4\t2\t\n", ":2: the segment 4-2 s is empty"),
                          ("x\tv.mp4\tsoon\t2\t\n", ":2: start 'soon' is not a number")):
        table.write_text("id\tvideo\tstart\tend\ttext\n" + bad)
        with pytest.raises(DataError, match=expected):
            read_annotations(table)
    table.write_text("name|video|start|end|speaker|orth|translation\nn1|n1/1/*.png|-1|-1|S1|A B|a b\nn2|x|-1\n")
    with pytest.raises(DataError, match=r":3: 3 fields, the header has 7"):
        read_annotations(table)
    table.write_text("id|folder|signer|annotation\nn1|n1/1/*.png|Signer01|__ON__ REGEN\n")
    assert [(r.clip_id, r.video, r.gloss, r.text, r.whole) for r in read_annotations(table)] == [
        ("n1", "n1/1/*.png", "__ON__ REGEN", "", True)]
    table.write_text("clip\tglosses\n")
    with pytest.raises(DataError, match="the first line must be the header"):
        read_annotations(table)

"""``mska extract`` on videos the tests make themselves: synthetic signers drawn by the project's
renderer, the face red, the left hand green and the right hand blue, encoded to mp4 with PyAV."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import mska_env

WIDTH, HEIGHT, FPS = 256, 192, 25
BACKGROUND = (128, 128, 128)
#: What each stream's crop must show, and the colour its part of the signer is painted.
COLOURS = {"face": (220, 30, 30), "hand_left": (30, 200, 30), "hand_right": (30, 60, 230)}
FACE, LEFT_HAND, RIGHT_HAND = range(23, 91), range(91, 112), range(112, 133)
#: Frames where the left hand is not found (confidence 0) in the keypoints of every test clip.
LEFT_HAND_MISSING = (5, 6)


# --- test videos ----------------------------------------------------------------------------------


def signer_keypoints(frames: int, seed: int) -> np.ndarray:
    """COCO-WholeBody points ``[T, 133, 3]`` in pixels: a face at the top, two hands circling below
    it on either side, never overlapping; the left hand is missing in :data:`LEFT_HAND_MISSING`."""
    from mska_core.synthetic.render import synthetic_points

    rng = np.random.default_rng(seed)
    face = synthetic_points("face", rng)[:, :2] * 28
    left = synthetic_points("hand", rng)[:, :2] * 22
    right = synthetic_points("hand", rng, mirror=True)[:, :2] * 22
    points = np.zeros((frames, 133, 3), dtype=np.float32)
    for t in range(frames):
        angle = 2 * np.pi * t / frames
        points[t, FACE, :2] = face + (128 + 4 * np.cos(angle), 52)
        points[t, LEFT_HAND, :2] = left + (62 + 10 * np.cos(angle), 140 + 10 * np.sin(angle))
        points[t, RIGHT_HAND, :2] = right + (194 - 10 * np.cos(angle), 140 + 10 * np.sin(angle))
        points[t, 0:17, :2] = (128, 100)  # a body the crops never read
    points[:, 0:17, 2] = 1.0
    points[:, [*FACE, *LEFT_HAND, *RIGHT_HAND], 2] = 1.0
    return points


def draw_frame(points: np.ndarray) -> np.ndarray:
    """One RGB frame ``[H, W, 3]``: each part drawn by the project's crop renderer in its colour and
    pasted where its points are (the renderer's background is the frame's, so nothing else shows)."""
    from PIL import Image

    from mska_core.synthetic.render import CropStyle, render_crop

    frame = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    for stream, joints, kind in (("face", FACE, "face"), ("hand_left", LEFT_HAND, "hand"),
                                 ("hand_right", RIGHT_HAND, "hand")):
        xy = points[list(joints), :2]
        low, high = xy.min(axis=0), xy.max(axis=0)
        side = int(np.ceil((high - low).max() * 1.3))  # the renderer's margin is 0.15 on each side
        colour = COLOURS[stream]
        style = CropStyle(skin=colour, ink=tuple(int(c * 0.8) for c in colour), background=BACKGROUND,
                          background_end=BACKGROUND)
        local = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        sprite = render_crop(local, side, kind, style=style).permute(1, 2, 0).numpy()
        centre = (low + high) / 2
        frame.paste(Image.fromarray(sprite), (int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))))
    return np.asarray(frame)


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    """Encode RGB frames as H.264 in an mp4 with PyAV."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "18"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def make_clip(videos: Path, keypoints: Path | None, clip_id: str, frames: int = 16, seed: int = 0) -> np.ndarray:
    """Write ``videos/ID.mp4`` and (if ``keypoints``) ``keypoints/ID.npy`` for a test signer."""
    points = signer_keypoints(frames, seed)
    shown = points.copy()
    shown[:, LEFT_HAND, 2] = 1.0  # the hand is in the video even where its keypoints miss it
    videos.mkdir(parents=True, exist_ok=True)
    write_video(videos / f"{clip_id}.mp4", [draw_frame(p) for p in shown])
    points[list(LEFT_HAND_MISSING), LEFT_HAND.start:LEFT_HAND.stop, 2] = 0.0
    if keypoints is not None:
        keypoints.mkdir(parents=True, exist_ok=True)
        np.save(keypoints / f"{clip_id}.npy", points)
    return points


def colour_shares(crop: Path | np.ndarray) -> dict[str, float]:
    """The share of a crop's pixels (a file, or uint8 ``[S, S, 3]``) near each stream's colour."""
    from PIL import Image

    image = np.asarray(Image.open(crop).convert("RGB")) if isinstance(crop, Path) else crop
    pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    return {stream: float((np.linalg.norm(pixels - colour, axis=1) < 70).mean())
            for stream, colour in COLOURS.items()}


def crops_of(out: Path, stream: str, clip_id: str) -> np.ndarray:
    """Every crop of a clip and stream as mska extract wrote it (packed or as files): uint8 [T, S, S, 3]."""
    from mska_core.data.crop_files import CropFolders

    folders = CropFolders(out / "crops")
    found = folders.locate(stream, clip_id)
    assert found is not None, (stream, clip_id)
    count = found.count if found.packed else len(found.present)
    return folders.read(stream, clip_id, list(range(count))).permute(0, 2, 3, 1).numpy()


def run_extract(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mska_core", "extract", "--no-progress", *args],
                          capture_output=True, text=True, env=mska_env(**env), timeout=timeout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three clips of different lengths: ``videos/ID.mp4`` and ``keypoints/ID.npy``."""
    root = tmp_path_factory.mktemp("signers")
    for index, (clip_id, frames) in enumerate((("alpha", 16), ("bravo", 12), ("charlie", 20))):
        make_clip(root / "videos", root / "keypoints", clip_id, frames=frames, seed=index)
    return root


@pytest.fixture(scope="module")
def extracted(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("extracted") / "out"
    result = run_extract(str(corpus / "videos"), "--keypoints", str(corpus / "keypoints"), "--out", str(out),
                         "--crop-size", "48", "--json")
    return out, result


# --- the output -----------------------------------------------------------------------------------


def test_extract_writes_keypoints_crops_and_clips_table(extracted, corpus: Path):
    out, result = extracted
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert sorted(summary["written"]) == ["alpha", "bravo", "charlie"] and summary["failed"] == []
    lines = (out / "clips.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["id", "video", "frames", "fps", "width", "height", "layout", "source",
                                    "version", "streams", "found", "outside", "mirrored"]
    rows = {cells[0]: cells for cells in (line.split("\t") for line in lines[1:])}
    assert rows["bravo"][2:7] == ["12", "25", str(WIDTH), str(HEIGHT), "coco_wholebody"]
    assert rows["bravo"][7] == f"npy:{corpus / 'keypoints' / 'bravo.npy'}"
    assert set(rows["bravo"][9].split(",")) == {"face", "hand_left", "hand_right"}
    for clip_id, frames in (("alpha", 16), ("bravo", 12), ("charlie", 20)):
        points = np.load(out / "keypoints" / f"{clip_id}.npy")
        assert points.dtype == np.float32 and points.shape == (frames, 133, 3)
        np.testing.assert_array_equal(points, np.load(corpus / "keypoints" / f"{clip_id}.npy"))
        for stream in COLOURS:
            assert (out / "crops" / stream / f"{clip_id}.crops").is_file()  # one file per clip and stream
            assert len(crops_of(out, stream, clip_id)) == frames
    assert not (out / ".partial").exists() or not any((out / ".partial").iterdir())


def test_each_crop_shows_the_part_of_the_signer_it_is_for(extracted):
    out, _ = extracted
    for stream in COLOURS:
        for crop in crops_of(out, stream, "charlie"):
            assert crop.shape == (48, 48, 3)
            shares = colour_shares(crop)
            assert shares[stream] > 0.08, (crop, shares)  # a hand's fingers are thin
            assert all(share < 0.01 for other, share in shares.items() if other != stream), (crop, shares)


def test_frames_without_the_joints_keep_the_last_box_and_are_marked_missing(extracted):
    out, _ = extracted
    with np.load(out / "boxes" / "alpha.npz") as boxes:
        missing, held = boxes["hand_left_missing"], boxes["hand_left"]
        assert missing.tolist() == [i in LEFT_HAND_MISSING for i in range(16)]
        assert not boxes["face_missing"].any()
    before = LEFT_HAND_MISSING[0] - 1
    for index in LEFT_HAND_MISSING:
        assert held[index].tolist() == held[before].tolist()
    assert held[LEFT_HAND_MISSING[-1] + 1].tolist() != held[before].tolist()  # found again: its own box


def test_crop_boxes_follow_the_crop_region_of_each_stream(extracted):
    out, _ = extracted
    points = np.load(out / "keypoints" / "bravo.npy")
    with np.load(out / "boxes" / "bravo.npz") as boxes:
        face = boxes["face"][0]
    xy = points[0, FACE, :2]
    extent = (xy.max(axis=0) - xy.min(axis=0)).max()
    assert abs(face[2] - round(extent * 1.3)) <= 1  # the face plugin's scale 1.3
    centre = (xy.max(axis=0) + xy.min(axis=0)) / 2
    assert np.allclose(face[:2] + face[2] / 2, centre, atol=1)


def test_keypoints_from_an_mska_pickle_are_matched_by_clip_name(corpus: Path, tmp_path: Path):
    entries = {f"train/{clip_id}": {"name": f"train/{clip_id}", "gloss": "A", "text": "a", "num_frames": 0,
                                    "keypoint": np.load(corpus / "keypoints" / f"{clip_id}.npy")}
               for clip_id in ("alpha", "bravo")}
    (tmp_path / "labels.train").write_bytes(pickle.dumps(entries))
    out = tmp_path / "out"
    result = run_extract(str(corpus / "videos" / "alpha.mp4"), str(corpus / "videos" / "bravo.mp4"),
                         "--keypoints", str(tmp_path / "labels.train"), "--out", str(out), "--streams", "face")
    assert result.returncode == 0, result.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in (out / "clips.tsv").read_text().splitlines()[1:]}
    assert rows["alpha"][7] == f"pickle:{tmp_path / 'labels.train'}:train/alpha"
    assert sorted(p.name for p in (out / "crops").iterdir()) == ["face"]
    np.testing.assert_array_equal(np.load(out / "keypoints" / "bravo.npy"), entries["train/bravo"]["keypoint"])


def write_pose_file(path: Path, points: np.ndarray) -> Path:
    """``points`` ``[T, 133, 3]`` as a pose-format file with MMPose's COCO-WholeBody-133 header."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.generic import cocowholebody_components

    header = PoseHeader(version=0.1, dimensions=PoseHeaderDimensions(width=WIDTH, height=HEIGHT, depth=0),
                        components=cocowholebody_components())
    found = points[:, None, :, 2:] > 0
    data = np.ma.masked_array(points[:, None, :, :2], mask=np.repeat(~found, 2, axis=-1))
    body = NumPyPoseBody(fps=FPS, data=data, confidence=points[:, None, :, 2])
    with path.open("wb") as handle:
        Pose(header, body).write(handle)
    return path


def test_keypoints_from_pose_files_give_the_crops_of_npy_files(extracted, corpus: Path, tmp_path: Path):
    folder = tmp_path / "poses"
    folder.mkdir()
    write_pose_file(folder / "alpha.pose", np.load(corpus / "keypoints" / "alpha.npy"))
    out = tmp_path / "out"
    result = run_extract(str(corpus / "videos" / "alpha.mp4"), "--keypoints", str(folder), "--out", str(out),
                         "--crop-size", "48")
    assert result.returncode == 0, result.stderr
    row = (out / "clips.tsv").read_text().splitlines()[1].split("\t")
    assert row[6:8] == ["coco_wholebody", f"pose:{folder / 'alpha.pose'}"]
    with np.load(out / "boxes" / "alpha.npz") as ours, np.load(extracted[0] / "boxes" / "alpha.npz") as npy:
        for key in npy.files:
            np.testing.assert_array_equal(ours[key], npy[key])


# --- failures, re-runs, interruptions -------------------------------------------------------------


def test_failing_clips_are_reported_in_one_line_each_skipped_and_counted(corpus: Path, tmp_path: Path):
    videos, keypoints = tmp_path / "videos", tmp_path / "keypoints"
    videos.mkdir()
    keypoints.mkdir()
    for clip_id in ("alpha", "bravo"):
        (videos / f"{clip_id}.mp4").write_bytes((corpus / "videos" / f"{clip_id}.mp4").read_bytes())
    np.save(keypoints / "alpha.npy", np.load(corpus / "keypoints" / "alpha.npy"))
    np.save(keypoints / "bravo.npy", np.load(corpus / "keypoints" / "alpha.npy"))  # 16 frames for 12
    (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    np.save(keypoints / "corrupt.npy", np.load(corpus / "keypoints" / "alpha.npy"))
    (videos / "orphan.mp4").write_bytes((corpus / "videos" / "charlie.mp4").read_bytes())  # no keypoints
    out = tmp_path / "out"
    result = run_extract(str(videos), "--keypoints", str(keypoints), "--out", str(out), "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] == ["alpha"]
    reasons = {failure["id"]: failure["reason"] for failure in summary["failed"]}
    assert sorted(reasons) == ["bravo", "corrupt", "orphan"]
    assert "12 frames but its keypoints have 16" in reasons["bravo"]
    assert "not a readable video" in reasons["corrupt"] or "decoding failed" in reasons["corrupt"]
    assert "no keypoints for 'orphan'" in reasons["orphan"]
    failed_lines = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert len(failed_lines) == 3 and "Traceback" not in result.stderr
    assert "3 failed" in result.stderr
    assert [line.split("\t")[0] for line in (out / "clips.tsv").read_text().splitlines()[1:]] == ["alpha"]
    for clip_id in ("bravo", "corrupt", "orphan"):
        assert not (out / "keypoints" / f"{clip_id}.npy").exists()
        assert not any((out / "crops").glob(f"*/{clip_id}*"))
    assert not any((out / ".partial").iterdir())


def test_a_rerun_skips_finished_clips(extracted, corpus: Path, tmp_path: Path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(extracted[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.crops")}
    (out / "crops" / "hand_right" / "bravo.crops").unlink()  # one clip lost a stream: it is done again
    result = run_extract(str(corpus / "videos"), "--keypoints", str(corpus / "keypoints"), "--out", str(out),
                         "--crop-size", "48", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] == ["bravo"] and sorted(summary["skipped"]) == ["alpha", "charlie"]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.stem != "bravo")
    assert len(crops_of(out, "hand_right", "bravo")) == 12
    assert len((out / "clips.tsv").read_text().splitlines()) == 4


@pytest.mark.slow
@pytest.mark.parametrize("crop_format", ["packed", "files"])
def test_sigkill_during_extraction_leaves_no_half_written_clip(tmp_path: Path, crop_format: str):
    from mska_core.data.crop_pack import is_packed

    videos, keypoints, out = tmp_path / "videos", tmp_path / "keypoints", tmp_path / "out"
    for index in range(4):
        make_clip(videos, keypoints, f"clip{index}", frames=48, seed=index)
    args = [sys.executable, "-m", "mska_core", "extract", str(videos), "--keypoints", str(keypoints),
            "--out", str(out), "--crop-size", "96", "--no-progress", "--crop-format", crop_format]
    process = subprocess.Popen(args, env=mska_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def mid_second_clip() -> bool:
        try:
            return began_second_clip()
        except FileNotFoundError:  # a clip's folder was renamed into place while it was listed
            return False

    def began_second_clip() -> bool:
        if crop_format == "files":
            return len(list(out.rglob("*.jpg"))) >= 48 * 3 + 6
        partial = list(out.glob(".partial/*/crops/*.crops"))  # being written: the 2nd clip has begun
        return (out / "clips.tsv").is_file() and len((out / "clips.tsv").read_text().splitlines()) >= 2 and any(
            p.stat().st_size > 2000 for p in partial)

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:  # kill in the middle of the 2nd clip
            if mid_second_clip():
                break
            time.sleep(0.005)
        assert process.poll() is None, "extraction ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    finished = {line.split("\t")[0]: int(line.split("\t")[2])
                for line in (out / "clips.tsv").read_text().splitlines()[1:]}
    assert len(finished) < 4
    for clip_id, frames in finished.items():
        assert np.load(out / "keypoints" / f"{clip_id}.npy").shape[0] == frames
    for placed in out.glob("crops/*/*"):  # whatever is in place is whole
        if crop_format == "files":
            assert len(list(placed.iterdir())) == 48, placed
        else:
            assert is_packed(placed) and len(crops_of(out, placed.parent.name, placed.stem)) == 48, placed
    assert not [p for p in out.glob("keypoints/*") if p.suffix != ".npy"]
    rerun = run_extract(str(videos), "--keypoints", str(keypoints), "--out", str(out), "--crop-size", "96",
                        "--json", "--crop-format", crop_format)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert sorted(summary["skipped"]) == sorted(finished)
    assert sorted(summary["skipped"] + summary["written"]) == [f"clip{i}" for i in range(4)]
    for clip_id in summary["written"]:
        assert all(len(crops_of(out, s, clip_id)) == 48 for s in COLOURS)
    assert not any((out / ".partial").iterdir())


def test_bad_usage_is_one_line_and_exit_code_2(corpus: Path, tmp_path: Path):
    videos, keypoints, out = str(corpus / "videos"), str(corpus / "keypoints"), str(tmp_path / "out")
    cases = {
        ("--keypoints", keypoints, "--streams", "tail"): "tail",
        ("--keypoints", keypoints, "--streams", "body"): "declares no crop region",
        ("--estimator", "openpose"): "openpose",
        ("--keypoints", keypoints, "--split", "train"): "--annotations and --split go together",
        ("--keypoints", str(tmp_path / "nowhere")): "does not exist",
        ("--keypoints", keypoints, "--crop-size", "0"): "crop_size",
    }
    for extra, expected in cases.items():
        result = run_extract(videos, "--out", out, *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (extra, result.stderr)
    assert run_extract(videos, "--out", out).returncode == 2  # neither --keypoints nor --estimator
    assert not (tmp_path / "out" / "clips.tsv").exists()


def test_flags_win_over_set_and_the_config_file(tmp_path: Path):
    from mska_core.cli import build_parser
    from mska_core.cli.extract_cmd import resolve_config

    config = tmp_path / "extract.toml"
    config.write_text('[extract]\ncrop_size = 64\nworkers = 3\nstreams = ["face"]\n')
    args = build_parser().parse_args(["extract", "v.mp4", "--out", "o", "--keypoints", "k", "--config", str(config),
                                      "--set", "extract.jpeg_quality=75", "--set", "extract.workers=4",
                                      "--crop-size", "96"])
    settings = resolve_config(args).extract
    assert (settings.crop_size, settings.workers, settings.jpeg_quality, settings.streams) == (96, 4, 75, ("face",))


def test_two_worker_processes_write_what_one_process_writes(extracted, corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = run_extract(str(corpus / "videos"), "--keypoints", str(corpus / "keypoints"), "--out", str(out),
                         "--crop-size", "48", "--workers", "2")
    assert result.returncode == 0, result.stderr
    one = sorted(p.relative_to(extracted[0]) for p in extracted[0].rglob("*") if p.is_file())
    two = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert one == two
    for path in one:
        if path.suffix in (".crops", ".npy"):
            assert (extracted[0] / path).read_bytes() == (out / path).read_bytes(), path
    assert (extracted[0] / "clips.tsv").read_text() == (out / "clips.tsv").read_text()


def test_the_folder_format_holds_the_jpeg_bytes_of_the_packed_format(extracted, corpus: Path, tmp_path: Path):
    from mska_core.data.crop_pack import CropPack

    out = tmp_path / "out"
    result = run_extract(str(corpus / "videos" / "bravo.mp4"), "--keypoints", str(corpus / "keypoints"), "--out",
                         str(out), "--crop-size", "48", "--crop-format", "files")
    assert result.returncode == 0, result.stderr
    for stream in COLOURS:
        names = sorted(p.name for p in (out / "crops" / stream / "bravo").iterdir())
        assert names == [f"{i:06d}.jpg" for i in range(12)]
        pack = CropPack(extracted[0] / "crops" / stream / "bravo.crops")
        assert (len(pack), pack.side) == (12, 48)
        for index in (0, 5, 11):  # the same JPEG file, byte for byte, so the same pixels
            assert pack.jpeg(index) == (out / "crops" / stream / "bravo" / f"{index:06d}.jpg").read_bytes()
        np.testing.assert_array_equal(crops_of(out, stream, "bravo")[[7, 3, 3]],
                                      np.stack(pack.read([7, 3, 3])))

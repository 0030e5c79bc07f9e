"""Segments of a long recording are decoded from the keyframe before the first segment, not from the
start of the video: the frames, their indices and what extraction writes are those decoding from the
start gives, and the frame counts stay exact to one frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_corpora import FPS, index_frames, still_keypoints

SECONDS, GOP = 24, 25  # a keyframe every second


def write_video(path: Path, frames: list[np.ndarray], gop: int | None) -> Path:
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module", params=[GOP, None], ids=["gop25", "x264-default"])
def recording(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A 24 s recording and its keyframe interval (libx264's default: 250 frames)."""
    root = tmp_path_factory.mktemp("long-recording")
    return write_video(root / "long.mp4", index_frames(SECONDS * FPS), request.param), request.param or 250


def read_from(path: Path, start: float) -> tuple[list[tuple[int, float, np.ndarray]], int]:
    from mska_core.extract.videos import VideoReader

    reader = VideoReader(path)
    try:
        return list(reader.frames(start)), reader.decoded
    finally:
        reader.close()


@pytest.mark.parametrize("start", [0.52, 13.3, 20.0])
def test_seeking_gives_the_frames_and_indices_of_decoding_from_the_start(recording: tuple[Path, int], start: float):
    recording, gop = recording
    whole, decoded_all = read_from(recording, 0.0)
    assert [index for index, _, _ in whole] == list(range(SECONDS * FPS)) and decoded_all == SECONDS * FPS
    expected = [item for item in whole if item[1] >= start]
    got, decoded = read_from(recording, start)
    assert [(i, t) for i, t, _ in got] == [(i, t) for i, t, _ in expected]
    assert got[0][0] == int(np.ceil(start * FPS - 1e-6))
    for (_, _, a), (_, _, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert decoded <= len(expected) + gop  # from the keyframe before the start, not from frame 0


def test_a_keyframe_found_past_the_start_falls_back_to_decoding_from_frame_0(recording: tuple[Path, int], monkeypatch):
    import mska_core.extract.videos as videos

    recording, _ = recording
    whole, _ = read_from(recording, 0.0)
    monkeypatch.setattr(videos, "seek_position", lambda start, first, base, fps: first + int(15.0 / base))
    got, decoded = read_from(recording, 10.0)  # seeking lands after 10 s: decode from the start instead
    assert [(i, t) for i, t, _ in got] == [(i, t) for i, t, _ in whole if t >= 10.0]
    np.testing.assert_array_equal(got[0][2], whole[250][2])


def test_extracted_segments_are_the_same_with_and_without_seeking(tmp_path: Path, monkeypatch):
    """Segments late in a recording, extracted with seeking and with the reader forced to decode from
    frame 0: the same keypoints, crops and frame counts (exact to one frame)."""
    import mska_core.extract.videos as videos
    from mska_core.config.schema import ExtractConfig
    from mska_core.extract import ExtractRequest, run_extraction
    from mska_core.registry import make_registry

    root = tmp_path / "in"
    (root / "videos").mkdir(parents=True)
    (root / "keypoints").mkdir()
    frames = SECONDS * FPS
    write_video(root / "videos" / "long.mp4", index_frames(frames), GOP)
    points = still_keypoints(frames) * 0.4
    points[..., 2] = np.where(points[..., 2] > 0, 1.0, 0.0)
    points[:, 0, 0], points[:, 0, 1:] = np.arange(frames), 1.0
    np.save(root / "keypoints" / "long.npy", points)
    segments = [("late", 15.3, 16.1), ("later", 17.0, 19.5), ("overlap", 19.0, 20.04)]
    (root / "segments.tsv").write_text("id\tvideo\tstart\tend\tgloss\ttext\n" + "".join(
        f"{i}\tlong.mp4\t{s}\t{e}\tG\tt\n" for i, s, e in segments))
    decoded: dict[str, int] = {}
    original = videos.VideoReader.frames

    def run(name: str) -> Path:
        out = tmp_path / name
        report = run_extraction(ExtractRequest(videos=(str(root / "videos"),), out=out,
                                               keypoints=str(root / "keypoints"),
                                               annotations=str(root / "segments.tsv"), split="train",
                                               settings=ExtractConfig(crop_size=32, workers=1)),
                               registry=make_registry())
        assert sorted(row.id for row in report.written) == ["late", "later", "overlap"], report
        return out

    def counting(self, start=0.0):
        try:
            yield from original(self, start if decoded.setdefault("mode", "seek") == "seek" else 0.0)
        finally:
            decoded[decoded["mode"]] = self.decoded

    monkeypatch.setattr(videos.VideoReader, "frames", counting)
    seeking = run("seek")
    decoded["mode"] = "from-start"
    whole = run("from-start")
    assert decoded["from-start"] >= 20 * FPS > 6 * FPS > decoded["seek"]  # from ~15 s to 20 s only
    for clip, start, end in segments:
        a = np.load(seeking / "keypoints" / f"{clip}.npy")
        np.testing.assert_array_equal(a, np.load(whole / "keypoints" / f"{clip}.npy"))
        assert abs(len(a) - (end - start) * FPS) <= 1, (clip, len(a))
        first = int(np.ceil(start * FPS - 1e-6))
        np.testing.assert_array_equal(a[:, 0, 0], np.arange(first, first + len(a)))
        for path in sorted((whole / "crops").rglob(f"{clip}.crops")):
            assert path.read_bytes() == (seeking / path.relative_to(whole)).read_bytes(), path

"""Damaged videos are never silent successes: every read reports frames decoded against what the
container declares, truncation, damage, and keeps the frames decoded before (and after) it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ovformer_core.errors import VideoError
from ovformer_core.io.decode_report import DecodeReport
from ovformer_core.io.video import ReadOptions, open_source
from tests.io.timed_videos import cut_copy, evenly, write_timed_video, zeroed_copy

NUM_FRAMES = 60


def _read(path: Path, options: ReadOptions | None = None) -> tuple[list, DecodeReport]:
    reader = open_source(path, options).iter_frames()
    frames = list(reader)
    report = reader.report
    assert report is not None
    return frames, report


@pytest.fixture
def intact_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "intact.mp4"
    write_timed_video(path, evenly(NUM_FRAMES), faststart=True, gop=10)
    return path


def test_an_intact_video_reads_complete(intact_mp4: Path) -> None:
    frames, report = _read(intact_mp4)
    assert len(frames) == NUM_FRAMES
    assert report.complete and report.stopped == "end" and not report.truncated
    assert (report.frames_decoded, report.frames_declared, report.declared_exact) == (NUM_FRAMES, NUM_FRAMES, True)
    assert report.time_reached == pytest.approx(NUM_FRAMES / 10)
    assert report.summary() == f"decoded {NUM_FRAMES} frames of {NUM_FRAMES} declared (exact count)"


def test_a_truncated_mp4_keeps_its_frames_and_says_it_is_truncated(
    tmp_path: Path, intact_mp4: Path, identify_frame: Callable
) -> None:
    cut = cut_copy(intact_mp4, tmp_path / "cut.mp4", 0.5)
    frames, report = _read(cut)
    assert 0 < len(frames) < NUM_FRAMES
    # The frames before the cut, in order, each where it belongs.
    assert [f.frame_index for f in frames] == list(range(len(frames)))
    assert [identify_frame(f.image) for f in frames] == [i % 31 for i in range(len(frames))]
    assert not report.complete and report.truncated and report.stopped == "end"
    assert (report.frames_declared, report.declared_exact) == (NUM_FRAMES, True)
    assert report.frames_decoded == len(frames)
    summary = report.summary()
    assert "\n" not in summary
    assert f"decoded {len(frames)} frames of {NUM_FRAMES} declared (exact count)" in summary
    assert "truncated" in summary


def test_a_truncated_mkv_is_judged_on_its_declared_duration(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    write_timed_video(path, evenly(NUM_FRAMES), gop=10)
    frames, report = _read(cut_copy(path, tmp_path / "cut.mkv", 0.5))
    assert 0 < len(frames) < NUM_FRAMES
    assert not report.complete and report.truncated
    # Matroska declares no frame count: the number is duration x rate, and says so.
    assert report.frames_declared == NUM_FRAMES and not report.declared_exact
    assert report.duration_declared == pytest.approx(NUM_FRAMES / 10)
    assert report.time_reached is not None and report.time_reached < report.duration_declared / 2 + 0.5
    assert "estimated from duration x frame rate" in report.summary()


def test_damage_in_the_middle_is_reported_and_decoding_goes_on(tmp_path: Path, intact_mp4: Path) -> None:
    damaged = zeroed_copy(intact_mp4, tmp_path / "damaged.mp4", 0.45, 0.6)
    frames, report = _read(damaged)
    assert not report.complete and not report.truncated
    assert report.damaged_packets > 0 and report.problem
    assert report.first_problem_time is not None and 1.0 < report.first_problem_time < NUM_FRAMES / 10
    # The frames after the damage are still there.
    assert frames[-1].time == pytest.approx((NUM_FRAMES - 1) / 10)
    times = [f.time for f in frames]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert "damaged packet" in report.summary()


def test_a_file_cut_inside_its_header_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_timed_video(path, evenly(NUM_FRAMES))  # index at the end, as most cameras write it
    with pytest.raises(VideoError) as excinfo:
        open_source(cut_copy(path, tmp_path / "cut.mp4", 0.9))
    message = str(excinfo.value)
    assert "\n" not in message and "cut.mp4" in message and "corrupt" in message


def test_an_empty_file_is_called_empty(tmp_path: Path) -> None:
    """A 0-byte file is an interrupted copy far more often than a corrupt video: say what it is."""
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match=r"clip\.mp4 is empty \(0 bytes\); copy or download it again$"):
        open_source(tmp_path / "clip.mp4")


def test_the_report_comes_through_windows_and_prefetch(tmp_path: Path, intact_mp4: Path) -> None:
    cut = cut_copy(intact_mp4, tmp_path / "cut.mp4", 0.5)
    for prefetch in (0, 2):
        reader = open_source(cut).iter_windows(4, prefetch=prefetch)
        assert reader.report is None  # nothing read yet
        windows = list(reader)
        assert reader.report is not None and reader.report.truncated
        assert sum(w.num_frames for w in windows) == reader.report.frames_decoded
        times = np.concatenate([w.times for w in windows])
        np.testing.assert_allclose(times, np.arange(len(times)) / 10)


def test_stopping_on_purpose_is_complete(intact_mp4: Path) -> None:
    _, report = _read(intact_mp4, ReadOptions(max_frames=5))
    assert report.complete and report.stopped == "selection"
    _, report = _read(intact_mp4, ReadOptions(start_time=1.0, end_time=2.0))
    assert report.complete and report.stopped == "selection"
    reader = open_source(intact_mp4).iter_frames()
    next(reader)
    reader.close()
    assert reader.report is not None and reader.report.stopped == "selection"


def test_frame_folders_report_too(tmp_path: Path, make_frame_folder: Callable) -> None:
    make_frame_folder("frames", num_frames=4)
    frames, report = _read(tmp_path / "frames")
    assert len(frames) == 4 and report.complete
    assert (report.frames_decoded, report.frames_declared, report.declared_exact) == (4, 4, True)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_an_error_not_a_grey_frame(tmp_path: Path, suffix: str) -> None:
    """FFmpeg conceals a cut JPEG by default (missing rows grey); it must fail like a cut PNG does."""
    import av

    rng = np.random.default_rng(0)
    image = tmp_path / f"frame{suffix}"
    frame = av.VideoFrame.from_ndarray((rng.random((96, 128, 3)) * 255).astype(np.uint8), format="rgb24")
    with av.open(str(image), "w", format="image2") as container:
        stream = container.add_stream("mjpeg" if suffix == ".jpg" else "png", rate=1)
        stream.width, stream.height = 128, 96
        stream.pix_fmt = "yuvj420p" if suffix == ".jpg" else "rgb24"
        for packet in [*stream.encode(frame.reformat(format=stream.pix_fmt)), *stream.encode(None)]:
            container.mux(packet)
    (intact,), _ = _read(image)
    assert intact.image.shape == (96, 128, 3)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(VideoError, match="is corrupt"):
        _read(image)

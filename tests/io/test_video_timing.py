"""Irregular frame timing is kept: frame times are real seconds, start/end select by them, frame
numbers after a seek agree with a read from the start, and progress totals come from the index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import pytest

from ovformer_core.io.video import ReadOptions, open_source
from tests.conftest import synthetic_frame
from tests.io.timed_videos import evenly, write_timed_video

#: Frames at irregular times, as a phone writes a dark or static scene (seconds).
IRREGULAR = [0.0, 0.5, 0.6, 2.0, 2.1, 2.2, 5.0, 7.5, 7.6, 9.0]


def _frames(path: Path, options: ReadOptions | None = None) -> list[tuple[int, float]]:
    return [(f.frame_index, round(f.time, 6)) for f in open_source(path, options).iter_frames()]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_frame_times_are_the_source_times(tmp_path: Path, identify_frame: Callable, ext: str) -> None:
    path = tmp_path / f"vfr.{ext}"
    write_timed_video(path, IRREGULAR)
    frames = list(open_source(path).iter_frames())
    assert [f.time for f in frames] == pytest.approx(IRREGULAR)
    assert [f.frame_index for f in frames] == list(range(len(IRREGULAR)))
    assert [identify_frame(f.image) for f in frames] == list(range(len(IRREGULAR)))


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_start_and_end_are_real_seconds(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"vfr.{ext}"
    write_timed_video(path, IRREGULAR, gop=2)
    after = [time for _, time in _frames(path, ReadOptions(start_time=2.05))]
    assert after == [2.1, 2.2, 5.0, 7.5, 7.6, 9.0]
    strided = _frames(path, ReadOptions(start_time=2.05, end_time=7.55, stride=2))
    assert [time for _, time in strided] == [2.1, 5.0]
    if ext == "mp4":  # its index lists every frame: exact numbers after the seek
        assert strided == [(4, 2.1), (6, 5.0)]


def test_frame_numbers_after_a_seek_agree_with_a_full_read(tmp_path: Path) -> None:
    # Key frames every 3 frames, B-frames reordered: a seek lands on a key frame mid-file.
    times = [round(0.1 * i + (0.05 if i % 4 == 3 else 0.0), 3) for i in range(30)]
    path = tmp_path / "seek.mp4"
    write_timed_video(path, times, gop=3)
    full = dict((time, index) for index, time in _frames(path))
    reader = open_source(path, ReadOptions(start_time=1.62)).iter_frames()
    after_seek = [(f.frame_index, round(f.time, 6)) for f in reader]
    assert after_seek[0][1] >= 1.62 and len(after_seek) == sum(1 for t in times if t >= 1.62)
    assert all(full[time] == index for index, time in after_seek)
    assert reader.report is not None and reader.report.indices_exact  # the MP4 index lists every frame


def test_seek_positions_without_a_full_index_are_flagged_as_estimates(tmp_path: Path) -> None:
    path = tmp_path / "seek.mkv"
    write_timed_video(path, evenly(30), gop=3)
    reader = open_source(path, ReadOptions(start_time=1.62)).iter_frames()
    frames = list(reader)
    assert frames[0].time == pytest.approx(1.7)
    assert frames[0].frame_index == 17  # constant rate: the time x rate estimate is right
    assert reader.report is not None and not reader.report.indices_exact
    assert reader.report.complete


def test_progress_totals_come_from_the_frame_index(tmp_path: Path) -> None:
    mp4, mkv = tmp_path / "vfr.mp4", tmp_path / "vfr.mkv"
    write_timed_video(mp4, IRREGULAR)
    write_timed_video(mkv, IRREGULAR)
    source = open_source(mp4)
    assert (source.info.num_frames, source.info.num_frames_exact) == (10, True)
    assert (source.estimated_output_frames, source.output_frames_exact) == (10, True)
    # The average rate comes from the count, not the nominal 10 fps the stream declares.
    assert source.info.fps == pytest.approx(10 / source.info.duration)
    windowed = open_source(mp4, ReadOptions(start_time=2.05, end_time=7.55))
    assert windowed.estimated_output_frames == 4 and not windowed.output_frames_exact
    # Matroska has no frame count: duration x nominal rate, flagged as an estimate.
    assert not open_source(mkv).info.num_frames_exact
    assert not open_source(mkv).output_frames_exact


@pytest.mark.parametrize("gop", [1, 12])
def test_variable_rate_avi_counts_its_coded_frames(tmp_path: Path, gop: int) -> None:
    # AVI stores variable timing as a constant slot rate with "drop" slots; its header counts slots,
    # its index the coded frames (all of them key frames when gop is 1).
    path = tmp_path / "vfr.avi"
    times = [0.0, 0.3, 0.4, 1.5, 1.6]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": str(gop)}
        for i, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, 48, 64), format="rgb24")
            frame.pts = round(time * 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    source = open_source(path)
    assert (source.info.num_frames, source.info.num_frames_exact) == (5, True)
    assert source.estimated_output_frames == 5
    reader = source.iter_frames()
    assert [round(f.time, 6) for f in reader] == times
    assert reader.report is not None and reader.report.complete


def test_a_variable_rate_mkv_estimates_its_length_from_its_frames(tmp_path: Path) -> None:
    # Two frames a second, while the stream declares 10 fps: duration x 10 would promise 300.
    path = tmp_path / "slow.mkv"
    write_timed_video(path, [0.5 * i for i in range(60)])
    source = open_source(path)
    assert not source.info.num_frames_exact
    assert abs(source.info.num_frames - 60) <= 2 and source.info.fps == pytest.approx(2.0, rel=0.05)
    assert abs(source.estimated_output_frames - 60) <= 2

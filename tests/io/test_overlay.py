"""Overlay videos: frame count and size, colours where the masks are, stride, errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from ovformer_core.errors import OutputError, ResultsError
from ovformer_core.io.overlay import (
    OverlayStyle,
    draw_tracks,
    mask_contour,
    result_frames,
    track_color,
    write_overlay,
)
from ovformer_core.io.results import Track, VideoResult
from ovformer_core.io.video import ReadOptions, open_source
from tests.conftest import random_result
from tests.io.timed_videos import write_timed_video


def _codec_or_skip(codec: str) -> str:
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    return codec


def _decoded(path: Path) -> np.ndarray:
    return np.stack([frame for _, _, frame in open_source(path).iter_frames()])


def _through_yuv420(frame: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray(format="rgb24")


def test_overlay_has_the_frames_and_size_of_the_result(
    tmp_path: Path, make_video: Callable[..., np.ndarray], make_result: Callable
) -> None:
    make_video("clip.mp4", num_frames=8, height=48, width=64)
    result, masks = make_result(num_frames=8, height=48, width=64, num_tracks=2)
    report = write_overlay(tmp_path / "overlay.mp4", open_source(tmp_path / "clip.mp4").iter_frames(), result)
    assert (report.num_frames, report.width, report.height) == (8, 64, 48)
    assert report.codec in ("libx264", "mpeg4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "overlay.mp4"]
    source = open_source(tmp_path / "overlay.mp4")
    assert (source.info.width, source.info.height, source.info.num_frames) == (64, 48, 8)
    assert source.info.fps == pytest.approx(10.0)
    overlay = _decoded(tmp_path / "overlay.mp4")
    original = _decoded(tmp_path / "clip.mp4")
    assert overlay.shape == (8, 48, 64, 3)
    # The overlay is what draw_tracks renders, up to 4:2:0 chroma subsampling and compression ...
    tracks = sorted(result.tracks, key=lambda track: track.score)
    expected = [
        draw_tracks(original[t], [(track, track.mask(t)) for track in tracks], OverlayStyle()) for t in range(8)
    ]
    subsampled = np.stack([_through_yuv420(frame) for frame in expected])
    assert np.abs(overlay.astype(int) - subsampled).mean() < 6
    # ... and differs clearly from the source where the masks are.
    covered = masks.any(axis=0)
    assert np.abs(overlay[covered].astype(int) - original[covered]).mean() > 20


def test_odd_size_is_padded_to_even(
    tmp_path: Path, make_video: Callable[..., np.ndarray], make_result: Callable
) -> None:
    if "ffv1" not in av.codecs_available:
        pytest.skip("no ffv1 encoder")
    make_video("odd.mkv", num_frames=3, height=25, width=33, codec="ffv1")
    result, _ = make_result(num_frames=3, height=25, width=33, num_tracks=1)
    report = write_overlay(tmp_path / "odd.mp4", open_source(tmp_path / "odd.mkv").iter_frames(), result)
    assert (report.width, report.height) == (34, 26)
    assert _decoded(tmp_path / "odd.mp4").shape == (3, 26, 34, 3)


def test_stride_results_skip_frames_and_halve_the_rate(
    tmp_path: Path, make_video: Callable[..., np.ndarray], make_result: Callable, identify_frame: Callable
) -> None:
    make_video("clip.mp4", num_frames=10, fps=10)
    result, _ = make_result(num_frames=5, height=48, width=64, num_tracks=1, frame_indices=[0, 2, 4, 6, 8])
    style = OverlayStyle(show_labels=False, alpha=0.0, contour_width=0, codec="mpeg4")
    report = write_overlay(tmp_path / "o.mp4", open_source(tmp_path / "clip.mp4").iter_frames(), result, style=style)
    assert report.codec == "mpeg4" and report.num_frames == 5
    source = open_source(tmp_path / "o.mp4")
    assert source.info.fps == pytest.approx(5.0)
    assert [identify_frame(frame) for _, _, frame in source.iter_frames()] == [0, 2, 4, 6, 8]


def test_mismatched_video_is_rejected_without_output(
    tmp_path: Path, make_video: Callable[..., np.ndarray], make_result: Callable
) -> None:
    make_video("clip.mp4", num_frames=4, height=48, width=64)
    wrong_size, _ = make_result(num_frames=4, height=24, width=32)
    with pytest.raises(ResultsError) as excinfo:
        write_overlay(tmp_path / "o.mp4", open_source(tmp_path / "clip.mp4").iter_frames(), wrong_size)
    assert "64x48" in str(excinfo.value) and "32x24" in str(excinfo.value) and "\n" not in str(excinfo.value)
    too_long, _ = make_result(num_frames=6, height=48, width=64)
    with pytest.raises(ResultsError, match="ended after 4 of the 6 frames"):
        write_overlay(tmp_path / "o.mp4", open_source(tmp_path / "clip.mp4").iter_frames(), too_long)
    gap, _ = make_result(num_frames=2, height=48, width=64, frame_indices=[1, 2])
    frames = (frame for frame in open_source(tmp_path / "clip.mp4").iter_frames() if frame.frame_index != 1)
    with pytest.raises(ResultsError, match="no frame 1"):
        write_overlay(tmp_path / "o.mp4", frames, gap)
    with pytest.raises(OutputError, match="must end with"):
        write_overlay(tmp_path / "o.gif", iter(()), gap)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_track_colours_are_deterministic_and_distinct() -> None:
    colours = [track_color(i) for i in range(1, 21)]
    assert colours == [track_color(i) for i in range(1, 21)]
    assert len(set(colours)) == 20
    # Consecutive ids are far apart in colour.
    assert min(np.abs(np.subtract(a, b)).sum() for a, b in zip(colours, colours[1:], strict=False)) > 60


def test_mask_contour() -> None:
    mask = np.zeros((9, 9), dtype=bool)
    mask[2:7, 2:7] = True
    ring = mask_contour(mask, 1)
    assert ring.sum() == 16 and not ring[3:6, 3:6].any() and not (ring & ~mask).any()
    assert mask_contour(mask, 2).sum() == 24
    full = np.ones((4, 5), dtype=bool)
    assert mask_contour(full, 1).sum() == 4 * 5 - 2 * 3  # the image border counts as outside


def test_draw_tracks_blends_and_labels() -> None:
    frame = np.full((40, 100, 3), 100, dtype=np.uint8)
    mask = np.zeros((40, 100), dtype=bool)
    mask[20:35, 10:40] = True
    track = Track(5, 0, "dog", 1, 0.87, [None])
    style = OverlayStyle(alpha=0.5, contour_width=1, show_labels=False)
    drawn = draw_tracks(frame, [(track, mask)], style)
    colour = np.asarray(track_color(5))
    np.testing.assert_allclose(drawn[25, 20], np.rint(50 + 0.5 * colour), atol=1)
    np.testing.assert_array_equal(drawn[20, 20], colour)  # contour at full colour
    np.testing.assert_array_equal(drawn[~mask], frame[~mask])
    labelled = draw_tracks(frame, [(track, mask)], dataclasses.replace(style, show_labels=True))
    above = labelled[:20] != frame[:20]
    # The label sits just above the mask, starting at its left edge.
    assert above[10:20, 10:30].any() and not above[:, :10].any() and not above[:, 80:].any()
    assert (frame == 100).all()  # the input frame is not modified


def _result_for(frames: list, report: object = None, num_tracks: int = 1) -> VideoResult:
    """A random result covering exactly ``frames`` (DecodedFrame), with their indices and times."""
    height, width = frames[0].image.shape[:2]
    result, _ = random_result(
        num_frames=len(frames),
        height=height,
        width=width,
        num_tracks=num_tracks,
        frame_indices=[f.frame_index for f in frames],
    )
    return dataclasses.replace(result, frame_times=[f.time for f in frames], decode=report)


def _written_times(path: Path) -> tuple[list[float], float]:
    """Frame times of a written video (seconds) and its container duration, read back with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.pts * stream.time_base) for frame in container.decode(stream)]
        assert container.duration is not None
        return times, container.duration / av.time_base


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_overlay_keeps_the_source_timing(tmp_path: Path, identify_frame: Callable, codec: str) -> None:
    times = [0.0, 0.5, 0.6, 2.0, 2.1, 2.2, 5.0, 7.5, 7.6, 9.0]
    write_timed_video(tmp_path / "vfr.mkv", times)
    frames = list(open_source(tmp_path / "vfr.mkv", ReadOptions(stride=2)).iter_frames())
    result = _result_for(frames)
    style = OverlayStyle(codec=_codec_or_skip(codec), alpha=0.0, contour_width=0, show_labels=False)
    write_overlay(tmp_path / "o.mp4", open_source(tmp_path / "vfr.mkv").iter_frames(), result, style=style)
    written, duration = _written_times(tmp_path / "o.mp4")
    assert written == pytest.approx([0.0, 0.6, 2.1, 5.0, 7.6], abs=1e-4)
    # The last frame lasts an average frame (7.6 s over 4 steps), so the whole clip is shown.
    assert duration == pytest.approx(7.6 + 7.6 / 4, abs=1e-3)
    assert [identify_frame(f.image) for f in open_source(tmp_path / "o.mp4").iter_frames()] == [0, 2, 4, 6, 8]


def test_overlay_of_a_result_read_after_a_seek(tmp_path: Path, identify_frame: Callable) -> None:
    times = [round(0.1 * i, 3) for i in range(30)]
    write_timed_video(tmp_path / "clip.mkv", times, gop=4)
    frames = list(open_source(tmp_path / "clip.mkv", ReadOptions(start_time=1.55, end_time=2.5)).iter_frames())
    result = _result_for(frames)
    style = OverlayStyle(alpha=0.0, contour_width=0, show_labels=False)
    # The whole video is passed; the frames are found by their time, whatever their numbers.
    report = write_overlay(tmp_path / "o.mp4", open_source(tmp_path / "clip.mkv").iter_frames(), result, style=style)
    assert report.num_frames == 9
    assert [identify_frame(f.image) for f in open_source(tmp_path / "o.mp4").iter_frames()] == list(range(16, 25))
    written, _ = _written_times(tmp_path / "o.mp4")
    assert written == pytest.approx([0.1 * i for i in range(9)], abs=1e-4)
    # Or only the covered span is read, and the overlay is the same.
    reader = result_frames(tmp_path / "clip.mkv", result)
    write_overlay(tmp_path / "o2.mp4", reader, result, style=style)
    assert reader.report is not None and reader.report.frames_decoded < 30 and reader.report.stopped == "selection"
    assert (tmp_path / "o2.mp4").read_bytes() == (tmp_path / "o.mp4").read_bytes()


def test_overlay_of_a_rotated_video_is_upright(tmp_path: Path) -> None:
    matrix = [0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30]  # shown turned a quarter clockwise
    write_timed_video(tmp_path / "phone.mp4", [0.0, 0.1, 0.2], height=48, width=64, display_matrix=matrix)
    frames = list(open_source(tmp_path / "phone.mp4").iter_frames())
    result = _result_for(frames)
    assert (result.width, result.height) == (48, 64)
    report = write_overlay(tmp_path / "o.mp4", open_source(tmp_path / "phone.mp4").iter_frames(), result)
    assert (report.width, report.height) == (48, 64)
    overlay = open_source(tmp_path / "o.mp4")
    assert (overlay.info.width, overlay.info.height, overlay.info.orientation.degrees) == (48, 64, 0)


def test_frames_missing_by_time_are_named(tmp_path: Path) -> None:
    write_timed_video(tmp_path / "clip.mp4", [0.0, 0.1, 0.2, 0.3])
    frames = list(open_source(tmp_path / "clip.mp4").iter_frames())
    result = _result_for(frames[:3])
    shifted = dataclasses.replace(result, frame_times=[0.0, 0.15, 0.2])
    with pytest.raises(ResultsError) as excinfo:
        write_overlay(tmp_path / "o.mp4", open_source(tmp_path / "clip.mp4").iter_frames(), shifted)
    assert str(excinfo.value) == (
        "the video has no frame at 0.150 s (next is at 0.200 s); pass the video the results were made from"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]

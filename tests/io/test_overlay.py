"""Overlay videos: frame count and size, colours where the masks are, stride, errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from ovformer_core.errors import OutputError, ResultsError
from ovformer_core.io.overlay import OverlayStyle, draw_tracks, mask_contour, track_color, write_overlay
from ovformer_core.io.results import Track
from ovformer_core.io.video import open_source


def _decoded(path: Path) -> np.ndarray:
    return np.stack([frame for _, frame in open_source(path).iter_frames()])


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
    assert [identify_frame(frame) for _, frame in source.iter_frames()] == [0, 2, 4, 6, 8]


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
    frames = ((i, f) for i, f in open_source(tmp_path / "clip.mp4").iter_frames() if i != 1)
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

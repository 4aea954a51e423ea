"""Frame reading: every container, frame folders, images, frame selection, windows, errors."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from ovformer_core.errors import VideoError
from ovformer_core.io.video import (
    ReadOptions,
    expand_inputs,
    natural_sort_key,
    open_source,
)
from tests.conftest import synthetic_frame
from tests.io.timed_videos import write_timed_video

CONTAINERS = [
    ("mp4", "libx264"),
    ("avi", "mpeg4"),
    ("mkv", "libx264"),
    ("webm", "libvpx-vp9"),
    ("mov", "mpeg4"),
]
SAMPLE_CLIP = Path(__file__).resolve().parents[2] / "samples" / "clip.mp4"


def _codec_or_skip(codec: str) -> str:
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    return codec


def _one_line_error(excinfo: pytest.ExceptionInfo[VideoError], *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize(("ext", "codec"), CONTAINERS)
def test_reads_every_container(
    tmp_path: Path, make_video: Callable[..., np.ndarray], identify_frame: Callable, ext: str, codec: str
) -> None:
    written = make_video(f"clip.{ext}", num_frames=12, height=48, width=64, fps=10, codec=_codec_or_skip(codec))
    source = open_source(tmp_path / f"clip.{ext}")
    assert (source.info.width, source.info.height, source.info.kind) == (64, 48, "video")
    assert source.info.fps == pytest.approx(10.0)
    assert source.info.num_frames == 12
    assert source.info.name == "clip"
    frames = list(source.iter_frames())
    assert [index for index, _, _ in frames] == list(range(12))
    for index, _, frame in frames:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert identify_frame(frame) == index
        # Lossy, but close to what was written.
        assert np.abs(frame.astype(np.int16) - written[index]).mean() < 6


def test_lossless_video_with_odd_size_is_exact(tmp_path: Path, make_video: Callable[..., np.ndarray]) -> None:
    written = make_video("odd.mkv", num_frames=5, height=25, width=33, codec=_codec_or_skip("ffv1"))
    frames = np.stack([frame for _, _, frame in open_source(tmp_path / "odd.mkv").iter_frames()])
    np.testing.assert_array_equal(frames, written)


def test_frame_folder_is_read_in_natural_order(tmp_path: Path, make_frame_folder: Callable) -> None:
    names = ["frame1.png", "frame2.png", "frame9.png", "frame10.png", "frame11.png"]
    written = make_frame_folder("frames", names=names)
    source = open_source(tmp_path / "frames", ReadOptions(folder_fps=5.0))
    assert (source.info.kind, source.info.num_frames, source.info.fps) == ("frames", 5, 5.0)
    assert source.info.name == "frames"
    frames = np.stack([frame for _, _, frame in source.iter_frames()])
    np.testing.assert_array_equal(frames, written)  # PNG is lossless; plain sorting would put 10 before 2
    assert sorted(names) != names


def test_natural_sort_key() -> None:
    names = ["img10.jpg", "img2.jpg", "IMG1.jpg", "img2b.jpg", "a.jpg"]
    assert sorted(names, key=natural_sort_key) == ["a.jpg", "IMG1.jpg", "img2.jpg", "img2b.jpg", "img10.jpg"]


def test_jpeg_folder(tmp_path: Path, make_frame_folder: Callable) -> None:
    written = make_frame_folder("jpgs", num_frames=3, ext="jpg")
    frames = np.stack([frame for _, _, frame in open_source(tmp_path / "jpgs").iter_frames()])
    assert frames.shape == written.shape
    assert np.abs(frames.astype(np.int16) - written).mean() < 4


def test_single_image_is_a_one_frame_video(tmp_path: Path, make_frame_folder: Callable) -> None:
    written = make_frame_folder("one", num_frames=1, height=30, width=40)
    source = open_source(tmp_path / "one" / "frame0.png")
    assert (source.info.kind, source.info.num_frames, source.info.width, source.info.height) == ("image", 1, 40, 30)
    windows = list(source.iter_windows(5))
    assert len(windows) == 1
    assert windows[0].start == 0 and windows[0].indices.tolist() == [0]
    np.testing.assert_array_equal(windows[0].frames, written)


def test_stride_and_max_frames(tmp_path: Path, make_video: Callable[..., np.ndarray], identify_frame: Callable) -> None:
    make_video("clip.mp4", num_frames=12)
    source = open_source(tmp_path / "clip.mp4", ReadOptions(stride=3, max_frames=3))
    frames = list(source.iter_frames())
    assert [index for index, _, _ in frames] == [0, 3, 6]
    assert [identify_frame(frame) for _, _, frame in frames] == [0, 3, 6]
    assert source.estimated_output_frames == 3
    assert source.output_fps == pytest.approx(10 / 3)
    assert open_source(tmp_path / "clip.mp4", ReadOptions(stride=5)).estimated_output_frames == 3


@pytest.mark.parametrize(("ext", "codec"), [("mp4", "libx264"), ("avi", "mpeg4"), ("webm", "libvpx-vp9")])
def test_start_and_end_time_seek(
    tmp_path: Path, make_video: Callable[..., np.ndarray], identify_frame: Callable, ext: str, codec: str
) -> None:
    # mpeg4 puts a key frame every 12 frames, so start 1.3 s seeks past the first one.
    make_video(f"clip.{ext}", num_frames=20, fps=10, codec=_codec_or_skip(codec))
    source = open_source(tmp_path / f"clip.{ext}", ReadOptions(start_time=1.3, end_time=1.75, stride=2))
    frames = list(source.iter_frames())
    assert [index for index, _, _ in frames] == [13, 15, 17]
    assert [identify_frame(frame) for _, _, frame in frames] == [13, 15, 17]
    assert source.estimated_output_frames == 3


def test_start_time_in_frame_folder(tmp_path: Path, make_frame_folder: Callable) -> None:
    make_frame_folder("frames", num_frames=8)
    source = open_source(tmp_path / "frames", ReadOptions(start_time=0.5, end_time=1.5, folder_fps=4.0))
    assert [index for index, _, _ in source.iter_frames()] == [2, 3, 4, 5]


def test_window_sizes(tmp_path: Path, make_video: Callable[..., np.ndarray]) -> None:
    make_video("clip.mkv", num_frames=12, codec=_codec_or_skip("ffv1"))
    source = open_source(tmp_path / "clip.mkv")
    windows = list(source.iter_windows(5))
    assert [w.num_frames for w in windows] == [5, 5, 2]
    assert [w.start for w in windows] == [0, 5, 10]
    assert np.concatenate([w.indices for w in windows]).tolist() == list(range(12))
    assert all(w.frames.dtype == np.uint8 and w.frames.shape[1:] == (48, 64, 3) for w in windows)
    assert [w.num_frames for w in source.iter_windows(12)] == [12]
    assert [w.num_frames for w in source.iter_windows(1)] == [1] * 12


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ovformer-prefetch"]


def test_prefetch_equals_plain_iteration(tmp_path: Path, make_video: Callable[..., np.ndarray]) -> None:
    make_video("clip.mp4", num_frames=13)
    source = open_source(tmp_path / "clip.mp4", ReadOptions(stride=2))
    plain = list(source.iter_windows(3))
    ahead = list(source.iter_windows(3, prefetch=2))
    assert len(plain) == len(ahead) == 3
    for a, b in zip(plain, ahead, strict=True):
        assert a.start == b.start
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.frames, b.frames)
    assert not _prefetch_threads()


def test_prefetch_thread_stops_when_consumer_stops(tmp_path: Path, make_video: Callable[..., np.ndarray]) -> None:
    make_video("clip.mp4", num_frames=20)
    windows = open_source(tmp_path / "clip.mp4").iter_windows(2, prefetch=1)
    first = next(windows)
    assert first.indices.tolist() == [0, 1]
    assert _prefetch_threads()
    windows.close()
    assert not _prefetch_threads()


def test_prefetch_reraises_decode_errors(tmp_path: Path, make_frame_folder: Callable) -> None:
    make_frame_folder("frames", num_frames=4)
    source = open_source(tmp_path / "frames")
    (tmp_path / "frames" / "frame2.png").write_bytes(b"not a png any more")
    windows = source.iter_windows(1, prefetch=2)
    assert next(windows).indices.tolist() == [0]
    assert next(windows).indices.tolist() == [1]
    with pytest.raises(VideoError) as excinfo:
        next(windows)
    _one_line_error(excinfo, "frame2.png")
    assert not _prefetch_threads()


def test_expand_inputs(tmp_path: Path, make_video: Callable[..., np.ndarray], make_frame_folder: Callable) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/clip.mp4", "a/clip10.mp4", "a/clip2.mp4", "b/clip.mp4"):
        make_video(name, num_frames=1)
    make_frame_folder("frames", num_frames=2)
    specs = expand_inputs(
        [str(tmp_path / "a" / "clip*.mp4"), tmp_path / "b", tmp_path / "frames", tmp_path / "a/clip.mp4"]
    )
    assert [s.path.relative_to(tmp_path).as_posix() for s in specs] == [
        "a/clip.mp4",
        "a/clip2.mp4",
        "a/clip10.mp4",
        "b/clip.mp4",
        "frames",
    ]
    assert [s.name for s in specs] == ["clip", "clip2", "clip10", "clip-2", "frames"]
    assert [s.video_id for s in specs] == [1, 2, 3, 4, 5]
    assert [s.kind for s in specs] == ["video"] * 4 + ["frames"]
    source = open_source(specs[3])
    assert source.info.name == "clip-2"


def test_expand_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as excinfo:
        expand_inputs([str(tmp_path / "*.mp4")])
    _one_line_error(excinfo, "no file matches")
    with pytest.raises(VideoError) as excinfo:
        expand_inputs([tmp_path / "missing.mp4"])
    _one_line_error(excinfo, "missing.mp4", "does not exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError) as excinfo:
        expand_inputs([tmp_path / "empty"])
    _one_line_error(excinfo, "holds no images")
    with pytest.raises(VideoError):
        expand_inputs([])


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "nope.mp4")
    _one_line_error(excinfo, "nope.mp4", "does not exist")


def test_error_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("just some text\n" * 20)
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "notes.mp4")
    _one_line_error(excinfo, "notes.mp4", "not a video or image FFmpeg can read")


def test_error_truncated_video(tmp_path: Path, make_video: Callable[..., np.ndarray]) -> None:
    make_video("clip.mp4", num_frames=10)
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "cut.mp4")
    _one_line_error(excinfo, "cut.mp4")


def test_error_zero_decodable_frames(tmp_path: Path) -> None:
    with av.open(str(tmp_path / "empty.avi"), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "empty.avi")
    _one_line_error(excinfo, "empty.avi", "no decodable frames")


def test_error_no_video_stream(tmp_path: Path) -> None:
    with av.open(str(tmp_path / "sound.m4a"), mode="w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame) + stream.encode(None):
            container.mux(packet)
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "sound.m4a")
    _one_line_error(excinfo, "sound.m4a", "no video stream")


def test_error_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "readme.txt").write_text("no images here")
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "frames")
    _one_line_error(excinfo, "frames", "no image files")


def test_error_frame_sizes_differ(tmp_path: Path, make_frame_folder: Callable) -> None:
    make_frame_folder("frames", names=["f1.png", "f2.png", "f3.png"], height=24, width=32)
    make_frame_folder("other", names=["f2.png"], height=20, width=32)
    (tmp_path / "other" / "f2.png").replace(tmp_path / "frames" / "f2.png")
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "frames")
    _one_line_error(excinfo, "f2.png", "32x20", "32x24")


def test_error_start_time_beyond_end(
    tmp_path: Path, make_video: Callable[..., np.ndarray], make_frame_folder: Callable
) -> None:
    make_video("clip.mkv", num_frames=10, fps=10, codec=_codec_or_skip("ffv1"))
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "clip.mkv", ReadOptions(start_time=5.0))
    _one_line_error(excinfo, "start time 5.0 s is beyond the end", "clip.mkv")
    make_frame_folder("frames", num_frames=3)
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "frames", ReadOptions(start_time=1.0, folder_fps=3.0))
    _one_line_error(excinfo, "beyond the end")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"stride": 0}, "stride"),
        ({"max_frames": 0}, "max frames"),
        ({"start_time": -1.0}, "start time"),
        ({"start_time": 2.0, "end_time": 1.0}, "end time"),
        ({"folder_fps": 0.0}, "frame rate"),
    ],
)
def test_error_bad_options(kwargs: dict, fragment: str) -> None:
    with pytest.raises(VideoError) as excinfo:
        ReadOptions(**kwargs)
    _one_line_error(excinfo, fragment)


def test_error_bad_window(tmp_path: Path, make_frame_folder: Callable) -> None:
    make_frame_folder("frames", num_frames=2)
    with pytest.raises(VideoError):
        next(open_source(tmp_path / "frames").iter_windows(0))


def test_sample_clip_is_readable() -> None:
    if not SAMPLE_CLIP.exists():
        pytest.skip("samples/clip.mp4 not generated; run samples/make_sample_clip.py")
    source = open_source(SAMPLE_CLIP)
    assert (source.info.width, source.info.height) == (320, 240)
    assert 45 <= sum(1 for _ in source.iter_frames()) <= 75
    assert SAMPLE_CLIP.stat().st_size < 300_000


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n../secret/private.mp4\n#EXT-X-ENDLIST\n"),
        ("list.ffconcat", "ffconcat version 1.0\nfile private.mp4\n"),
        ("notes.txt", "| just | some | text |\n" * 200),
    ],
)
def test_inputs_that_point_to_other_files_are_refused(tmp_path: Path, name: str, text: str) -> None:
    # A playlist would make FFmpeg read a video outside the folder given (here ../secret), a concat
    # list any file it names; FFmpeg renders text as video. None of it is read.
    (tmp_path / "secret").mkdir()
    (tmp_path / "inputs").mkdir()
    for folder in ("secret", "inputs"):
        write_timed_video(tmp_path / folder / "private.mp4", [0.0, 0.1, 0.2], faststart=True)
    (tmp_path / "inputs" / name).write_text(text)
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "inputs" / name)
    _one_line_error(excinfo, name, "not a video", "pass the video file itself")


def test_a_stream_that_changes_size_is_scaled_to_its_first_size(tmp_path: Path, identify_frame: Callable) -> None:
    # A raw H.264 stream whose second half is coded at another size (concatenated recordings).
    data = b""
    for width, height, first in ((64, 48, 0), (96, 64, 6)):
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = Fraction(1, 10)
        for i in range(first, first + 6):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, height, width), format="rgb24")
            frame.pts = i
            data += b"".join(bytes(packet) for packet in codec.encode(frame))
        data += b"".join(bytes(packet) for packet in codec.encode(None))
    (tmp_path / "joined.h264").write_bytes(data)
    source = open_source(tmp_path / "joined.h264")
    reader = source.iter_windows(5)
    windows = list(reader)
    assert [w.frames.shape for w in windows] == [(5, 48, 64, 3), (5, 48, 64, 3), (2, 48, 64, 3)]
    assert [identify_frame(f) for w in windows for f in w.frames] == list(range(12))
    report = reader.report
    assert report is not None and report.complete and report.frames_resized == 6
    assert "frame size changed at" in report.summary() and "96x64" in report.summary()


def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "live.mp4")
    with pytest.raises(VideoError) as excinfo:
        open_source(tmp_path / "live.mp4")
    _one_line_error(excinfo, "live.mp4", "not a regular file")

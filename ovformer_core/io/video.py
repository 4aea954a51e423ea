"""Streaming frame reader: video files (through PyAV), folders of frames, and single images.

Nothing here holds a whole video in memory: frames are decoded on demand and handed out one at a
time (``iter_frames``) or in short windows of consecutive frames (``iter_windows``), optionally
decoded ahead on a background thread. A single image is simply a one-frame video.

Typical use::

    source = open_source("clip.mp4", ReadOptions(stride=2, max_frames=100))
    reader = source.iter_windows(5, prefetch=2)
    for window in reader:
        ...  # window.frames: uint8 [T, H, W, 3] RGB; window.indices: source positions [T]; window.times: s [T]
    if not reader.report.complete:
        print(reader.report.summary())  # e.g. a truncated file: what was decoded of what is declared

Frames are in display orientation: a video's display matrix (phones tag upright footage stored
sideways) is applied, so ``VideoInfo.width/height`` and every frame are what a player shows.

Times (``time``) are seconds on the source timeline (the frame's presentation time minus the
stream's start), exact for constant and variable frame rate alike; ``start_time``/``end_time``
select by them. Frame numbers (``frame_index``, ``indices``) are the frame's position in the source in presentation
order: the n-th coded frame of a video file (see ``video_stream`` for how this survives seeks and
damage, and when it is an estimate) or the n-th file of a frame folder (0-based, natural order),
before stride. Frame folders and images carry no times: frame ``n`` is at ``n / folder_fps``.

Each pass over a source is a ``SourceReader``: iterate it, then its ``report`` (a ``DecodeReport``)
says how many frames were decoded of how many the container declares, and whether the data was
truncated or damaged. Decoding continues past damaged packets and keeps every frame it can.
"""

from __future__ import annotations

import functools
import glob
import math
import os
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, NamedTuple, TypeVar

import av
import av.error
import numpy as np

from ovformer_core.errors import VideoError
from ovformer_core.io.decode_report import DecodeReport, ReadLog
from ovformer_core.io.orientation import Orientation
from ovformer_core.io.paths import input_path_problem
from ovformer_core.io.prefetch import BackgroundIterator
from ovformer_core.io.video_stream import (
    NOMINAL_FPS,
    RawFrame,
    StreamFacts,
    av_reason,
    decode_stream,
    index_times,
    open_container,
    probe_stream,
    video_stream,
)

#: File suffixes read as still images (one frame each); decoded by PyAV's image demuxers.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: File suffixes that a folder expansion (``expand_inputs``) treats as videos. ``open_source`` tries
#: PyAV on any other non-image file too.
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif"}
)
#: Slack when comparing frame timestamps with start/end times; timestamps are exact rationals
#: rounded to float, so only rounding noise needs absorbing.
_TIME_EPS = 1e-6

T = TypeVar("T")

SourceKind = Literal["video", "frames", "image"]


@dataclass(frozen=True)
class ReadOptions:
    """Which frames of a source to read.

    Attributes:
        stride: keep every ``stride``-th frame (counted from the first frame kept), >= 1.
        max_frames: stop after this many kept frames; ``None`` reads to the end.
        start_time: first time to read, seconds from the start of the video; the reader seeks to the
            key frame before it and decodes forward. ``None`` = from the beginning.
        end_time: stop before this time (seconds, exclusive); ``None`` = to the end.
        folder_fps: frame rate assumed for frame folders and images (they carry none); used for
            start/end times there and reported as ``VideoInfo.fps``.
    """

    stride: int = 1
    max_frames: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    folder_fps: float = NOMINAL_FPS

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise VideoError(f"stride must be at least 1, got {self.stride}")
        if self.max_frames is not None and self.max_frames < 1:
            raise VideoError(f"max frames must be at least 1, got {self.max_frames}")
        if self.start_time is not None and self.start_time < 0:
            raise VideoError(f"start time must be 0 or more seconds, got {self.start_time}")
        if self.end_time is not None and self.end_time <= (self.start_time or 0.0):
            raise VideoError(f"end time {self.end_time} s must be after the start time {self.start_time or 0.0} s")
        if not self.folder_fps > 0:
            raise VideoError(f"frame rate for frame folders must be positive, got {self.folder_fps}")


@dataclass(frozen=True)
class SourceSpec:
    """One input, resolved: where it is, what kind it is, and a stable name and id for results.

    Attributes:
        path: the video file, image file or frame folder.
        kind: ``"video"`` (anything PyAV demuxes), ``"frames"`` (a folder of images) or ``"image"``.
        name: file stem or folder name, made unique within one ``expand_inputs`` call.
        video_id: 1-based position in the expanded input list (the YouTube-VIS ``video_id``).
    """

    path: Path
    kind: SourceKind
    name: str
    video_id: int = 1


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding all of it.

    Attributes:
        name: the source's name (``SourceSpec.name``).
        path: the source's path.
        kind: ``"video"``, ``"frames"`` or ``"image"``.
        width: frame width in pixels, in display orientation (of the first decoded frame).
        height: frame height in pixels, in display orientation.
        fps: frames per second of the source (``ReadOptions.folder_fps`` for folders and images).
        num_frames: frames in the whole source: exact for folders and images, and for videos whose
            container has a frame index or a count in its header (MP4, MOV, AVI); else duration x
            fps (Matroska, WebM, MPEG-TS); 0 if unknown.
        duration: length in seconds, ``None`` if unknown.
        num_frames_exact: ``num_frames`` is a count, not an estimate.
        orientation: how decoded frames are turned to display orientation (identity for images).
        orientation_note: why a video's display matrix could not be honoured exactly, or ``""``.
    """

    name: str
    path: Path
    kind: SourceKind
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float | None
    num_frames_exact: bool = True
    orientation: Orientation = Orientation()
    orientation_note: str = ""


class DecodedFrame(NamedTuple):
    """One selected frame.

    Attributes:
        frame_index: source frame number (position in the source, before stride).
        time: seconds on the source timeline.
        image: uint8 RGB ``[H, W, 3]`` in display orientation.
    """

    frame_index: int
    time: float
    image: np.ndarray


@dataclass(frozen=True)
class FrameWindow:
    """Consecutive (post-stride) frames of a source.

    Attributes:
        start: position of the first frame among the frames read (0, window, 2*window, ...).
        frames: uint8 RGB frames ``[T, H, W, 3]``; T <= the window size (the last window may be short).
        indices: int64 ``[T]``: source frame number of each frame.
        times: float64 ``[T]``: seconds on the source timeline of each frame.
    """

    start: int
    frames: np.ndarray
    indices: np.ndarray = field(repr=False)
    times: np.ndarray = field(repr=False)

    @property
    def num_frames(self) -> int:
        """T, the number of frames in this window."""
        return int(self.frames.shape[0])


class SourceReader(Generic[T]):
    """One pass over a source: iterate it for its items, then ``report`` says how the read went.

    Closing it (or leaving a ``for`` loop early and dropping it) stops decoding and closes the file.
    """

    def __init__(self, items: Generator[T, None, None], log: ReadLog) -> None:
        self._items = items
        self._log = log

    def __iter__(self) -> SourceReader[T]:
        return self

    def __next__(self) -> T:
        return next(self._items)

    def close(self) -> None:
        """Stop reading; ``report`` then describes what was read so far."""
        self._items.close()

    @property
    def report(self) -> DecodeReport | None:
        """How the read went; ``None`` until the iteration has ended or the reader was closed."""
        return self._log.report()


def natural_sort_key(name: str) -> tuple[list[int | str], str]:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compare as numbers, case ignored).

    The extension is compared last, so ``clip.mp4`` sorts before ``clip2.mp4``.
    """
    stem, suffix = os.path.splitext(name)
    # re.split with a capture group alternates text, number, text, ... so positions always compare
    # like with like.
    parts = [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", stem)]
    return parts, suffix.lower()


def _kind_of(path: Path) -> SourceKind:
    if path.is_dir():
        return "frames"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "video"


def _images_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def _videos_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def _expand_one(arg: str | os.PathLike[str]) -> list[Path]:
    path = Path(arg)
    if path.exists():
        if path.is_dir() and not _images_in(path):
            videos = _videos_in(path)
            if not videos:
                raise VideoError(
                    f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or videos; "
                    "pass a video, an image or a folder of frames"
                )
            return videos
        return [path]
    text = str(arg)
    if glob.has_magic(text) and not os.path.lexists(path):
        matches = sorted(glob.glob(text, recursive=True), key=natural_sort_key)
        if not matches:
            raise VideoError(f"no file matches {text}; check the pattern")
        return [Path(match) for match in matches]
    raise VideoError(f"{path} {input_path_problem(path, 'any') or 'cannot be read; check the path'}")


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """File stems (folder names for folders), suffixed -2, -3, ... where two inputs share one."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        base = path.name if path.is_dir() else path.stem
        count = seen.get(base, 0) + 1
        seen[base] = count
        names.append(base if count == 1 else f"{base}-{count}")
    # A generated "clip-2" could collide with a real input named "clip-2": fall back to the ordinal.
    if len(set(names)) != len(names):
        names = [f"{name}-{i + 1}" for i, name in enumerate(names)]
    return names


@dataclass(frozen=True)
class InputFailure:
    """A command-line input that names nothing readable.

    Attributes:
        input: the argument as given.
        error: why (a missing path, a pattern without matches, a folder without images or videos).
    """

    input: str
    error: VideoError


def resolve_inputs(args: Sequence[str | os.PathLike[str]]) -> tuple[list[SourceSpec], list[InputFailure]]:
    """Like ``expand_inputs``, but an argument that names nothing is returned as a failure, not raised.

    A batch goes on with its other inputs when one path is mistyped or gone; names and ids are given
    to the inputs that resolved, in order.

    Raises:
        VideoError: no argument at all.
    """
    if not args:
        raise VideoError("no input given; pass a video, an image, a folder of frames or a glob pattern")
    paths: list[Path] = []
    failures: list[InputFailure] = []
    seen: set[Path] = set()
    for arg in args:
        try:
            expanded = _expand_one(arg)
        except VideoError as err:
            failures.append(InputFailure(str(arg), err))
            continue
        for path in expanded:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                paths.append(path)
    names = _unique_names(paths)
    specs = [
        SourceSpec(path=path, kind=_kind_of(path), name=name, video_id=i + 1)
        for i, (path, name) in enumerate(zip(paths, names, strict=True))
    ]
    return specs, failures


def expand_inputs(args: Sequence[str | os.PathLike[str]]) -> list[SourceSpec]:
    """Turn command-line inputs into sources: globs expanded, folders of videos listed.

    Each argument may be a video file, an image, a folder of frames (it holds image files), a folder
    of videos (no images, at least one video file: each video becomes an input), or a glob pattern
    (``*`` ``?`` ``[...]``, ``**`` recursive) expanded in natural order. Inputs keep the order given;
    a path listed twice is read once. Names are file stems made unique (``clip``, ``clip-2``) and
    ids count from 1, so they are stable for a given command line.

    Args:
        args: paths or patterns.

    Returns:
        One ``SourceSpec`` per input.

    Raises:
        VideoError: a path does not exist, a pattern matches nothing, or a folder holds neither
            images nor videos, or nothing was given.
    """
    specs, failures = resolve_inputs(args)
    if failures:
        raise failures[0].error
    return specs


def open_source(source: str | os.PathLike[str] | SourceSpec, options: ReadOptions | None = None) -> VideoSource:
    """Open a video file, a folder of frames or a single image for streaming.

    Opening probes the source (decodes its first frame, checks every image size in a folder) so a
    bad input fails here, before any model work, with a one-line ``VideoError``.

    Args:
        source: a path, or a ``SourceSpec`` from ``expand_inputs``.
        options: which frames to read; defaults to all of them.

    Returns:
        A ``VideoSource``; iterate it as often as needed (each pass reopens the file).

    Raises:
        VideoError: missing file, not a video / corrupt file, no decodable frames, empty folder,
            differing frame sizes in a folder, start time beyond the end.
    """
    spec = source if isinstance(source, SourceSpec) else None
    path = spec.path if spec is not None else Path(source)  # type: ignore[arg-type]
    problem = input_path_problem(path, "any")
    if problem is not None:
        raise VideoError(f"{path} {problem}")
    kind = spec.kind if spec is not None else _kind_of(path)
    if kind != "frames" and not path.is_file():
        # FFmpeg would block forever on a pipe nobody writes to.
        raise VideoError(f"{path} is not a regular file (a pipe, device or socket); pass a video or image file")
    name = spec.name if spec is not None else (path.name if path.is_dir() else path.stem)
    opts = options if options is not None else ReadOptions()
    facts: StreamFacts | None = None
    if kind == "video":
        info, facts = _probe_video(path, name)
    else:
        images = _images_in(path) if kind == "frames" else [path]
        if not images:
            raise VideoError(
                f"folder {path} contains no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); pass a folder of frames"
            )
        info = _probe_images(path, kind, name, images, opts.folder_fps)
    if opts.start_time is not None and info.duration is not None and opts.start_time >= info.duration:
        raise VideoError(
            f"start time {opts.start_time} s is beyond the end of {path} ({info.duration:.3f} s long); "
            "choose an earlier start"
        )
    return VideoSource(info=info, options=opts, _images=None if kind == "video" else images, _stream=facts)


def open_frame_list(
    images: Sequence[str | os.PathLike[str]], name: str, options: ReadOptions | None = None
) -> VideoSource:
    """Open an explicit, ordered list of frame files as one video (a dataset's ``file_names``).

    Raises:
        VideoError: an empty list, a missing or unreadable file, or frames of differing sizes.
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise VideoError(f"video {name} lists no frames; check the dataset file")
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise VideoError(f"frame {missing} of video {name} does not exist; check `frames_root`")
    opts = options if options is not None else ReadOptions()
    info = _probe_images(paths[0].parent, "frames", name, paths, opts.folder_fps)
    return VideoSource(info=info, options=opts, _images=paths)


def _probe_video(path: Path, name: str) -> tuple[VideoInfo, StreamFacts]:
    facts = probe_stream(path)
    info = VideoInfo(
        name=name,
        path=path,
        kind="video",
        width=facts.width,
        height=facts.height,
        fps=facts.fps,
        num_frames=facts.num_frames,
        duration=facts.duration,
        num_frames_exact=facts.num_frames_exact,
        orientation=facts.orientation,
        orientation_note=facts.orientation_note,
    )
    return info, facts


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header, without decoding the pixels."""
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        width, height = int(stream.width), int(stream.height)
    finally:
        container.close()
    if width <= 0 or height <= 0:
        raise VideoError(f"{path} is not a readable image (no size in its header); remove or replace it")
    return width, height


def _probe_images(path: Path, kind: SourceKind, name: str, images: list[Path], fps: float) -> VideoInfo:
    width, height = _image_size(images[0])
    for image in images[1:]:
        size = _image_size(image)
        if size != (width, height):
            raise VideoError(
                f"{image} is {size[0]}x{size[1]} but {images[0].name} is {width}x{height}; "
                "all frames in a folder must have the same size"
            )
    return VideoInfo(
        name=name,
        path=path,
        kind=kind,
        width=width,
        height=height,
        fps=fps,
        num_frames=len(images),
        duration=len(images) / fps,
    )


def _read_image(path: Path) -> np.ndarray:
    """Decode one image to uint8 RGB [H, W, 3]; a damaged one is an error, never a half-grey frame.

    FFmpeg's JPEG decoder conceals errors by default: a truncated JPEG decodes without complaint, its
    missing rows grey. ``err_detect=explode`` makes it report them, as the PNG decoder always does
    (all 585 JPEG files found on this project's machine decode with it).
    """
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        stream.codec_context.options = {"err_detect": "explode"}
        frame = next(container.decode(stream), None)
        if frame is None:
            raise VideoError(f"{path} has no decodable image data; remove or replace it")
        return frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as err:
        raise VideoError(f"{path} is corrupt ({av_reason(err)}); remove or replace it") from err
    finally:
        container.close()


@dataclass(frozen=True)
class VideoSource:
    """An opened source. Build with ``open_source``; iterate with ``iter_frames`` or ``iter_windows``.

    Attributes:
        info: size, rate and length.
        options: which frames are read.
    """

    info: VideoInfo
    options: ReadOptions
    _images: list[Path] | None = field(default=None, repr=False)
    _stream: StreamFacts | None = field(default=None, repr=False)

    @property
    def output_fps(self) -> float:
        """Average rate of the frames read (the source rate divided by the stride)."""
        return self.info.fps / self.options.stride

    @property
    def estimated_output_frames(self) -> int:
        """How many frames ``iter_frames`` should yield, for progress bars (see ``output_frames_exact``)."""
        return self._expected_output[0]

    @property
    def output_frames_exact(self) -> bool:
        """``estimated_output_frames`` is an exact count (it still assumes undamaged data).

        Exact for frame folders and images, and for videos with a frame count read from the start;
        with start/end times it is counted from the frame index where there is one (right to within
        the decoder's reorder delay), else estimated as duration x frame rate.
        """
        return self._expected_output[1]

    @functools.cached_property
    def _expected_output(self) -> tuple[int, bool]:
        opts, info = self.options, self.info
        times: Sequence[float] | None = None
        if self._images is None and (opts.start_time is not None or opts.end_time is not None):
            times = index_times(info.path) if self._stream is not None and self._stream.index_complete else None
        if times is not None:
            start = opts.start_time or 0.0
            end = math.inf if opts.end_time is None else opts.end_time
            available = sum(1 for t in times if start - _TIME_EPS <= t < end - _TIME_EPS)
            exact = False
        else:
            first = math.ceil((opts.start_time or 0.0) * info.fps - _TIME_EPS)
            stop = info.num_frames
            if opts.end_time is not None:
                stop = min(stop, math.ceil(opts.end_time * info.fps - _TIME_EPS))
            available = max(0, stop - first)
            exact = info.num_frames_exact and opts.start_time is None and opts.end_time is None
        count = -(-available // opts.stride)
        return (count if opts.max_frames is None else min(count, opts.max_frames)), exact

    def _new_log(self) -> ReadLog:
        info, facts = self.info, self._stream
        return ReadLog(
            frames_declared=info.num_frames if info.num_frames > 0 else None,
            declared_exact=info.num_frames_exact,
            duration_declared=info.duration,
            end_slack=facts.end_slack if facts is not None else 0.0,
            rotation=info.orientation.degrees,
            mirrored=info.orientation.mirror,
            orientation_note=info.orientation_note,
        )

    def iter_frames(self) -> SourceReader[DecodedFrame]:
        """Read the selected frames, in order, as ``DecodedFrame(frame_index, time, image)``.

        ``frame_index`` is the source frame number, ``time`` seconds on the source timeline, ``image``
        uint8 RGB ``[H, W, 3]`` in display orientation. After the iteration the reader's ``report``
        says whether everything was decoded.

        Raises (while iterating):
            VideoError: no frame lies at or after ``start_time`` (or none decodes at all), or a
                frame of a folder is unreadable.
        """
        log = self._new_log()
        return SourceReader(self._selected(log), log)

    def iter_windows(self, window: int, prefetch: int = 0) -> SourceReader[FrameWindow]:
        """Read the selected frames in windows of ``window`` frames (the last may be shorter).

        Args:
            window: frames per window, >= 1 (the model's clip length, e.g. 5).
            prefetch: if > 0, decode on a background thread, up to this many windows ahead of the
                consumer; the thread stops when the iteration ends, fails or is closed early.

        Returns:
            A reader yielding ``FrameWindow`` (``frames`` uint8 ``[T, H, W, 3]``, ``indices`` int64
            ``[T]``, ``times`` float64 ``[T]``); its ``report`` is set once the iteration has ended.
        """
        if window < 1:
            raise VideoError(f"window size must be at least 1, got {window}")
        if prefetch < 0:
            raise VideoError(f"prefetch must be 0 or more windows, got {prefetch}")
        log = self._new_log()
        if prefetch == 0:
            return SourceReader(self._windows(window, log), log)
        return SourceReader(self._prefetched_windows(window, prefetch, log), log)

    def _prefetched_windows(self, window: int, prefetch: int, log: ReadLog) -> Generator[FrameWindow, None, None]:
        # The producer thread fills ``log``; it is read only after the thread has been joined.
        with BackgroundIterator(lambda: self._windows(window, log), max_ahead=prefetch) as windows:
            yield from windows

    def _selected(self, log: ReadLog) -> Generator[DecodedFrame, None, None]:
        opts = self.options
        start = opts.start_time or 0.0
        end = math.inf if opts.end_time is None else opts.end_time
        first_kept: int | None = None
        num_kept = 0
        raw_frames = self._raw_frames(start, log)
        try:
            for index, time, to_rgb in raw_frames:
                if time < start - _TIME_EPS:
                    continue
                if time >= end - _TIME_EPS:
                    log.stop("selection")
                    break
                if first_kept is None:
                    first_kept = index
                if (index - first_kept) % opts.stride:
                    continue
                yield DecodedFrame(index, time, to_rgb())
                num_kept += 1
                if opts.max_frames is not None and num_kept >= opts.max_frames:
                    log.stop("selection")
                    break
        finally:
            # Closed early by the consumer (or failed): the read stopped on request.
            log.stop("selection")
            # Closes the container now rather than whenever the generator is collected.
            raw_frames.close()
        if num_kept == 0:
            where = self.info.path
            if log.frames_decoded == 0 and start == 0.0:
                raise VideoError(f"{where} has no decodable frames; pass a video with at least one frame")
            raise VideoError(
                f"no frame of {where} lies between {start} s and {opts.end_time} s; "
                "choose a start time before the end of the video"
                if opts.end_time is not None
                else f"start time {start} s is beyond the end of {where}; choose an earlier start"
            )

    def _windows(self, window: int, log: ReadLog) -> Generator[FrameWindow, None, None]:
        frames: list[np.ndarray] = []
        indices: list[int] = []
        times: list[float] = []
        start = 0
        selected = self._selected(log)
        try:
            for frame in selected:
                frames.append(frame.image)
                indices.append(frame.frame_index)
                times.append(frame.time)
                if len(frames) == window:
                    yield _window(start, frames, indices, times)
                    start += window
                    frames, indices, times = [], [], []
        finally:
            selected.close()
        if frames:
            yield _window(start, frames, indices, times)

    def _raw_frames(self, start_time: float, log: ReadLog) -> Generator[RawFrame, None, None]:
        if self._images is None:
            assert self._stream is not None
            return decode_stream(self.info.path, self._stream, start_time, log)
        return self._raw_image_frames(start_time, log)

    def _raw_image_frames(self, start_time: float, log: ReadLog) -> Generator[RawFrame, None, None]:
        fps = self.info.fps
        first = max(0, math.ceil(start_time * fps - _TIME_EPS))
        assert self._images is not None
        for index in range(first, len(self._images)):
            image = self._images[index]
            log.frames_decoded += 1
            log.reached(index, (index + 1) / fps)
            yield index, index / fps, functools.partial(self._checked_image, image)
        log.stop("end")

    def _checked_image(self, path: Path) -> np.ndarray:
        frame = _read_image(path)
        # The header check at open time can miss a file replaced since; never hand out a wrong shape.
        if frame.shape[:2] != (self.info.height, self.info.width):
            raise VideoError(
                f"{path} is {frame.shape[1]}x{frame.shape[0]} but the folder's frames are "
                f"{self.info.width}x{self.info.height}; all frames in a folder must have the same size"
            )
        return frame


def _window(start: int, frames: list[np.ndarray], indices: list[int], times: list[float]) -> FrameWindow:
    return FrameWindow(
        start, np.stack(frames), np.asarray(indices, dtype=np.int64), np.asarray(times, dtype=np.float64)
    )

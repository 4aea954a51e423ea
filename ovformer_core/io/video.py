"""Streaming frame reader: video files (through PyAV), folders of frames, and single images.

Nothing here holds a whole video in memory: frames are decoded on demand and handed out one at a
time (``iter_frames``) or in short windows of consecutive frames (``iter_windows``), optionally
decoded ahead on a background thread. A single image is simply a one-frame video.

Typical use::

    source = open_source("clip.mp4", ReadOptions(stride=2, max_frames=100))
    for window in source.iter_windows(5, prefetch=2):
        ...  # window.frames: uint8 [T, H, W, 3] RGB; window.indices: source frame numbers [T]

Frame numbers (``indices``) always refer to the source: the n-th decoded frame of a video file or the
n-th file of a frame folder (0-based, natural order), before stride, so they stay meaningful with
``stride``/``start_time`` and can be written to results files. After a seek (``start_time``) the
first frame's number is recovered from its timestamp (``round(t * fps)``), which is exact for
constant-frame-rate video and an estimate for variable-frame-rate video.
"""

from __future__ import annotations

import functools
import glob
import math
import os
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import av.error
import numpy as np

from ovformer_core.errors import VideoError
from ovformer_core.io.prefetch import BackgroundIterator

#: File suffixes read as still images (one frame each); decoded by PyAV's image demuxers.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: File suffixes that a folder expansion (``expand_inputs``) treats as videos. ``open_source`` tries
#: PyAV on any other non-image file too.
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif"}
)
#: Frame rate reported when the source has none (frame folders, images, streams without a rate).
NOMINAL_FPS = 30.0
#: Slack when comparing frame timestamps with start/end times; timestamps are exact rationals
#: rounded to float, so only rounding noise needs absorbing.
_TIME_EPS = 1e-6

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
        width: frame width in pixels (of the first decoded frame).
        height: frame height in pixels.
        fps: frames per second of the source (``ReadOptions.folder_fps`` for folders and images).
        num_frames: estimated number of frames in the whole source (exact for folders and images; for
            videos the container's frame count, or duration x fps; 0 if unknown).
        duration: length in seconds, ``None`` if unknown.
    """

    name: str
    path: Path
    kind: SourceKind
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float | None


@dataclass(frozen=True)
class FrameWindow:
    """Consecutive (post-stride) frames of a source.

    Attributes:
        start: position of the first frame among the frames read (0, window, 2*window, ...).
        frames: uint8 RGB frames ``[T, H, W, 3]``; T <= the window size (the last window may be short).
        indices: int64 ``[T]``: source frame number of each frame.
    """

    start: int
    frames: np.ndarray
    indices: np.ndarray = field(repr=False)

    @property
    def num_frames(self) -> int:
        """T, the number of frames in this window."""
        return int(self.frames.shape[0])


# A decoded-but-not-yet-converted frame: (source frame number, time in seconds, RGB converter).
_RawFrame = tuple[int, float, Callable[[], np.ndarray]]


def natural_sort_key(name: str) -> tuple[list[int | str], str]:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compare as numbers, case ignored).

    The extension is compared last, so ``clip.mp4`` sorts before ``clip2.mp4``.
    """
    stem, suffix = os.path.splitext(name)
    # re.split with a capture group alternates text, number, text, ... so positions always compare
    # like with like.
    parts = [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", stem)]
    return parts, suffix.lower()


def _av_reason(err: BaseException) -> str:
    """FFmpeg's message without the errno prefix and file name PyAV adds."""
    reason = getattr(err, "strerror", None) or str(err)
    return str(reason).rstrip(".")


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
    if glob.has_magic(text):
        matches = sorted(glob.glob(text, recursive=True), key=natural_sort_key)
        if not matches:
            raise VideoError(f"no file matches {text}; check the pattern")
        return [Path(match) for match in matches]
    raise VideoError(f"{path} does not exist; check the path")


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
    if not path.exists():
        raise VideoError(f"{path} does not exist; check the path")
    kind = spec.kind if spec is not None else _kind_of(path)
    name = spec.name if spec is not None else (path.name if path.is_dir() else path.stem)
    opts = options if options is not None else ReadOptions()
    if kind == "video":
        info = _probe_video(path, name)
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
    return VideoSource(info=info, options=opts, _images=None if kind == "video" else images)


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
        raise VideoError(f"frame {missing} of video {name} does not exist; check --frames-root")
    opts = options if options is not None else ReadOptions()
    info = _probe_images(paths[0].parent, "frames", name, paths, opts.folder_fps)
    return VideoSource(info=info, options=opts, _images=paths)


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.error.FileNotFoundError as err:
        raise VideoError(f"{path} does not exist; check the path") from err
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoError(
            f"{path} is corrupt or not a video or image FFmpeg can read ({_av_reason(err)}); "
            "pass a video, image or frame folder"
        ) from err


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoError(f"{path} has no video stream; pass a video file")
    return container.streams.video[0]


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return NOMINAL_FPS


def _probe_video(path: Path, name: str) -> VideoInfo:
    """Read the header and the first frame: size, rate, length estimate, and proof it decodes."""
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream)
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        if stream.frames > 0:
            num_frames = int(stream.frames)
        else:
            num_frames = round(duration * fps) if duration is not None else 0
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as err:
            raise VideoError(f"{path} is corrupt: cannot decode its first frame ({_av_reason(err)})") from err
        if first is None:
            raise VideoError(f"{path} has no decodable frames; pass a video with at least one frame")
        return VideoInfo(
            name=name,
            path=path,
            kind="video",
            width=int(first.width),
            height=int(first.height),
            fps=fps,
            num_frames=num_frames,
            duration=duration,
        )
    finally:
        container.close()


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header, without decoding the pixels."""
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
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
    """Decode one image to uint8 RGB [H, W, 3]."""
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        frame = next(container.decode(stream), None)
        if frame is None:
            raise VideoError(f"{path} has no decodable image data; remove or replace it")
        return frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as err:
        raise VideoError(f"{path} is corrupt ({_av_reason(err)}); remove or replace it") from err
    finally:
        container.close()


@dataclass(frozen=True)
class VideoSource:
    """An opened source. Build with ``open_source``; iterate with ``iter_frames`` or ``iter_windows``.

    Attributes:
        info: size, rate and length estimate.
        options: which frames are read.
    """

    info: VideoInfo
    options: ReadOptions
    _images: list[Path] | None = field(default=None, repr=False)

    @property
    def output_fps(self) -> float:
        """Rate of the frames read (the source rate divided by the stride)."""
        return self.info.fps / self.options.stride

    @property
    def estimated_output_frames(self) -> int:
        """How many frames ``iter_frames`` should yield (estimate for videos, for progress bars)."""
        opts, info = self.options, self.info
        first = math.ceil((opts.start_time or 0.0) * info.fps - _TIME_EPS)
        stop = info.num_frames
        if opts.end_time is not None:
            stop = min(stop, math.ceil(opts.end_time * info.fps - _TIME_EPS))
        count = max(0, -(-(stop - first) // opts.stride))
        return count if opts.max_frames is None else min(count, opts.max_frames)

    def iter_frames(self) -> Generator[tuple[int, np.ndarray], None, None]:
        """Yield ``(frame_index, frame)`` for each selected frame, in order.

        ``frame_index`` is the source frame number; ``frame`` is uint8 RGB ``[H, W, 3]``.

        Raises:
            VideoError: decoding fails part-way, or no frame lies at or after ``start_time``.
        """
        opts = self.options
        start = opts.start_time or 0.0
        end = math.inf if opts.end_time is None else opts.end_time
        first_kept: int | None = None
        num_kept = 0
        decoded_any = False
        raw_frames = self._raw_frames(start)
        try:
            for index, time, to_rgb in raw_frames:
                decoded_any = True
                if time < start - _TIME_EPS:
                    continue
                if time >= end - _TIME_EPS:
                    break
                if first_kept is None:
                    first_kept = index
                if (index - first_kept) % opts.stride:
                    continue
                yield index, to_rgb()
                num_kept += 1
                if opts.max_frames is not None and num_kept >= opts.max_frames:
                    break
        finally:
            # Closes the container now rather than whenever the generator is collected.
            raw_frames.close()
        if num_kept == 0:
            where = self.info.path
            if not decoded_any and start == 0.0:
                raise VideoError(f"{where} has no decodable frames; pass a video with at least one frame")
            raise VideoError(
                f"no frame of {where} lies between {start} s and {opts.end_time} s; "
                "choose a start time before the end of the video"
                if opts.end_time is not None
                else f"start time {start} s is beyond the end of {where}; choose an earlier start"
            )

    def iter_windows(self, window: int, prefetch: int = 0) -> Iterator[FrameWindow]:
        """Yield consecutive selected frames in windows of ``window`` frames (the last may be shorter).

        Args:
            window: frames per window, >= 1 (the model's clip length, e.g. 5).
            prefetch: if > 0, decode on a background thread, up to this many windows ahead of the
                consumer; the thread stops when the iteration ends, fails or is closed early.

        Yields:
            ``FrameWindow`` with ``frames`` uint8 ``[T, H, W, 3]`` and ``indices`` int64 ``[T]``.
        """
        if window < 1:
            raise VideoError(f"window size must be at least 1, got {window}")
        if prefetch < 0:
            raise VideoError(f"prefetch must be 0 or more windows, got {prefetch}")
        if prefetch == 0:
            yield from self._windows(window)
            return
        with BackgroundIterator(lambda: self._windows(window), max_ahead=prefetch) as windows:
            yield from windows

    def _windows(self, window: int) -> Generator[FrameWindow, None, None]:
        frames: list[np.ndarray] = []
        indices: list[int] = []
        start = 0
        selected = self.iter_frames()
        try:
            for index, frame in selected:
                frames.append(frame)
                indices.append(index)
                if len(frames) == window:
                    yield FrameWindow(start, np.stack(frames), np.asarray(indices, dtype=np.int64))
                    start += window
                    frames, indices = [], []
        finally:
            selected.close()
        if frames:
            yield FrameWindow(start, np.stack(frames), np.asarray(indices, dtype=np.int64))

    def _raw_frames(self, start_time: float) -> Generator[_RawFrame, None, None]:
        if self._images is None:
            return self._raw_video_frames(start_time)
        return self._raw_image_frames(start_time)

    def _raw_image_frames(self, start_time: float) -> Generator[_RawFrame, None, None]:
        fps = self.info.fps
        first = max(0, math.ceil(start_time * fps - _TIME_EPS))
        assert self._images is not None
        for index in range(first, len(self._images)):
            image = self._images[index]
            yield index, index / fps, functools.partial(self._checked_image, image)

    def _checked_image(self, path: Path) -> np.ndarray:
        frame = _read_image(path)
        # The header check at open time can miss a file replaced since; never hand out a wrong shape.
        if frame.shape[:2] != (self.info.height, self.info.width):
            raise VideoError(
                f"{path} is {frame.shape[1]}x{frame.shape[0]} but the folder's frames are "
                f"{self.info.width}x{self.info.height}; all frames in a folder must have the same size"
            )
        return frame

    def _raw_video_frames(self, start_time: float) -> Generator[_RawFrame, None, None]:
        path = self.info.path
        container = _open_container(path)
        try:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO"
            time_base = stream.time_base
            origin = stream.start_time or 0
            fps = self.info.fps
            seeked = False
            if start_time > 0 and time_base is not None:
                # Lands on the key frame at or before the target; frames before it are skipped by time.
                target = origin + int(start_time / time_base)
                try:
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                    seeked = True
                except av.error.FFmpegError:
                    seeked = False  # unseekable input: decode from the start instead
            index: int | None = None if seeked else 0
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames, None)
                except av.error.FFmpegError as err:
                    raise VideoError(
                        f"{path} is corrupt: decoding failed after frame {index} ({_av_reason(err)})"
                    ) from err
                if frame is None:
                    return
                if frame.pts is not None and time_base is not None:
                    time = float((frame.pts - origin) * time_base)
                else:
                    time = (index or 0) / fps
                if index is None:
                    # After a seek the frame count restarts; recover the frame number from the time.
                    index = round(time * fps)
                yield index, time, functools.partial(frame.to_ndarray, format="rgb24")
                index += 1
        finally:
            container.close()

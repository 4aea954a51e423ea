"""Overlay video: each track's mask blended onto the frames in its own colour, with a contour and a
``name score`` label, encoded as H.264 MP4 through PyAV.

Streaming: frames come from an iterator (``VideoSource.iter_frames()``) and are drawn and encoded one
at a time. The file is written to a temporary name and renamed when complete.

Timing: each overlay frame is shown when its source frame was (``VideoResult.frame_times``, shifted so
the first processed frame is at 0), so variable frame rate, strides and gaps keep their real
duration. Results from older versions, without times, are written at a constant rate.

H.264 with the yuv420p pixel format needs an even width and height; an odd-sized video is padded by
one pixel on the right and/or bottom (the edge pixels repeated), so the overlay is at most one pixel
larger than the source and never loses content. If the installed PyAV has no libx264 encoder, MPEG-4
Part 2 (``mpeg4``) is used instead; ``OverlayReport.codec`` says which.

Labels are drawn with Pillow's built-in default font (Pillow is installed with torchvision).
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.error
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ovformer_core.errors import OutputError, ResultsError
from ovformer_core.io.atomic import atomic_path
from ovformer_core.io.results import Track, VideoResult
from ovformer_core.io.video import DecodedFrame, ReadOptions, SourceReader, open_source

#: Hue step between consecutive track ids: the golden-ratio conjugate spreads any run of ids evenly
#: around the colour wheel without ever repeating exactly.
_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
#: Container format for each accepted overlay suffix.
_CONTAINER_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: Time base of the overlay's timestamps. 1/120000 s holds the frame times of every common rate
#: exactly (24000/1001 and 30000/1001 fps, 24, 25, 30, 50, 60 fps, millisecond clocks); MPEG-4 Part 2
#: allows a denominator of at most 65535, so it gets 1/60000 (times rounded to 17 microseconds).
_TIME_BASES = {"libx264": Fraction(1, 120000), "mpeg4": Fraction(1, 60000)}
#: How far a frame's time may be from a result's frame time and still be that frame (seconds): the
#: same reader gives the same times, so this only absorbs float rounding; real frames are far apart.
_TIME_MATCH = 1e-4


@dataclass(frozen=True)
class OverlayStyle:
    """How masks are drawn.

    Attributes:
        alpha: mask opacity in [0, 1].
        contour_width: contour thickness in pixels (0 = none).
        show_labels: draw ``category score`` next to each mask.
        min_score: tracks scoring below this are not drawn.
        codec: ``"auto"`` (libx264 if available, else mpeg4), or force one.
        crf: H.264 constant rate factor (lower = better quality, larger file); 23 is x264's default.
    """

    alpha: float = 0.5
    contour_width: int = 2
    show_labels: bool = True
    min_score: float = 0.0
    codec: Literal["auto", "libx264", "mpeg4"] = "auto"
    crf: int = 23

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ResultsError(f"overlay alpha must be between 0 and 1, got {self.alpha}")
        if self.contour_width < 0:
            raise ResultsError(f"contour width must be 0 or more pixels, got {self.contour_width}")


@dataclass(frozen=True)
class OverlayReport:
    """What ``write_overlay`` produced.

    Attributes:
        path: the overlay file.
        codec: encoder used (``"libx264"`` or ``"mpeg4"``).
        num_frames: frames written.
        width: encoded width (source width rounded up to even).
        height: encoded height (source height rounded up to even).
    """

    path: Path
    codec: str
    num_frames: int
    width: int
    height: int


def track_color(track_id: int) -> tuple[int, int, int]:
    """A bright RGB colour that depends only on ``track_id`` (golden-ratio hue steps)."""
    hue = (track_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


def mask_contour(mask: np.ndarray, width: int) -> np.ndarray:
    """Inner boundary band of ``mask``: pixels within ``width`` steps (4-neighbour) of the outside.

    Args:
        mask: bool ``[H, W]``.
        width: band thickness in pixels.

    Returns:
        bool ``[H, W]``, a subset of ``mask``.
    """
    eroded = mask.copy()
    for _ in range(width):
        # The image border counts as outside, so masks touching the edge get a contour there too.
        padded = np.pad(eroded, 1, constant_values=False)
        eroded = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~eroded


def _label_text(track: Track) -> str:
    return f"{track.category_name} {track.score:.2f}"


def draw_tracks(
    frame: np.ndarray,
    tracks: Iterable[tuple[Track, np.ndarray]],
    style: OverlayStyle,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None,
) -> np.ndarray:
    """Draw masks, contours and labels on a copy of one frame.

    Args:
        frame: uint8 RGB ``[H, W, 3]``.
        tracks: ``(track, mask)`` pairs, mask bool ``[H, W]``; drawn in the given order (later on top).
        style: drawing options.
        font: label font (defaults to Pillow's default font).

    Returns:
        uint8 RGB ``[H, W, 3]``, a new array.
    """
    canvas = frame.astype(np.float32)
    labels: list[tuple[Track, int, int]] = []
    for track, mask in tracks:
        if not mask.any():
            continue
        color = np.asarray(track_color(track.track_id), dtype=np.float32)
        canvas[mask] = canvas[mask] * (1.0 - style.alpha) + color * style.alpha
        if style.contour_width:
            canvas[mask_contour(mask, style.contour_width)] = color
        if style.show_labels:
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            labels.append((track, int(cols[0]), int(rows[0])))
    out = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if not labels:
        return out
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = font if font is not None else ImageFont.load_default()
    for track, left, top in labels:
        text = _label_text(track)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = x1 - x0 + 4, y1 - y0 + 2
        # Above the mask's top-left corner when there is room, else just inside it.
        x = min(left, max(0, image.width - text_w))
        y = top - text_h if top - text_h >= 0 else top
        label_color = track_color(track.track_id)
        draw.rectangle((x, y, x + text_w - 1, y + text_h - 1), fill=label_color)
        luminance = 0.299 * label_color[0] + 0.587 * label_color[1] + 0.114 * label_color[2]
        draw.text((x + 2 - x0, y + 1 - y0), text, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255), font=font)
    return np.asarray(image)


def _pick_codec(requested: Literal["auto", "libx264", "mpeg4"]) -> Literal["libx264", "mpeg4"]:
    if requested == "auto":
        return "libx264" if "libx264" in av.codecs_available else "mpeg4"
    if requested not in av.codecs_available:
        raise OutputError(f"this PyAV build has no {requested} encoder; use codec 'auto'")
    return requested


def _default_fps(result: VideoResult) -> float:
    """The rate of the processed frames: source fps over the typical gap between frame indices."""
    if result.num_frames < 2:
        return result.fps
    step = float(np.median(np.diff(np.asarray(result.frame_indices))))
    return result.fps / max(step, 1.0)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if not (pad_h or pad_w):
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _selected_frames(frames: Iterable[DecodedFrame], result: VideoResult) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(position, image)`` for the frames the result covers, checking size and coverage.

    Frames are matched on their time when the result has ``frame_times``, else on their index.
    """
    times = result.frame_times
    position = 0
    for frame in frames:
        if position == result.num_frames:
            return
        if times is not None:
            behind = frame.time < times[position] - _TIME_MATCH
            ahead = frame.time > times[position] + _TIME_MATCH
            wanted, found = f"at {times[position]:.3f} s", f"at {frame.time:.3f} s"
        else:
            behind = frame.frame_index < result.frame_indices[position]
            ahead = frame.frame_index > result.frame_indices[position]
            wanted, found = str(result.frame_indices[position]), str(frame.frame_index)
        if behind:
            continue
        if ahead:
            raise ResultsError(
                f"the video has no frame {wanted} (next is {found}); pass the video the results were made from"
            )
        image = frame.image
        if image.shape != (result.height, result.width, 3):
            raise ResultsError(
                f"video frames are {image.shape[1]}x{image.shape[0]} but the results are for "
                f"{result.width}x{result.height}; pass the video the results were made from"
            )
        yield position, image
        position += 1
    if position < result.num_frames:
        raise ResultsError(
            f"the video ended after {position} of the {result.num_frames} frames in the results; "
            "pass the video the results were made from"
        )


def _timestamps(result: VideoResult, time_base: Fraction) -> list[int] | None:
    """Presentation stamps (in ``time_base``) of the result's frames, first at 0; ``None`` without times."""
    if result.frame_times is None:
        return None
    first = result.frame_times[0]
    stamps: list[int] = []
    for time in result.frame_times:
        stamp = round(Fraction(time - first) / time_base)
        # Times closer than one tick would collide; a stream's stamps must increase.
        stamps.append(stamp if not stamps or stamp > stamps[-1] else stamps[-1] + 1)
    return stamps


def _average_rate(result: VideoResult) -> float:
    """Frames per second of the processed frames over their time span (source fps without times)."""
    times = result.frame_times
    if times is None or len(times) < 2 or times[-1] <= times[0]:
        return _default_fps(result)
    return (len(times) - 1) / (times[-1] - times[0])


def result_frames(video: str | os.PathLike[str], result: VideoResult) -> SourceReader[DecodedFrame]:
    """The frames of ``video`` that ``result`` covers, for ``write_overlay``: with frame times, read
    from the first one to the last (a seek, not a decode of everything before); else the whole video.

    Raises:
        VideoError: the video cannot be opened.
    """
    times = result.frame_times
    if not times:
        return open_source(video).iter_frames()
    # Half a millisecond past the last frame: later frames are never decoded.
    options = ReadOptions(start_time=times[0] if times[0] > 0 else None, end_time=times[-1] + 5e-4)
    return open_source(video, options).iter_frames()


def write_overlay(
    path: str | os.PathLike[str],
    frames: Iterable[DecodedFrame],
    result: VideoResult,
    fps: float | None = None,
    style: OverlayStyle | None = None,
) -> OverlayReport:
    """Render ``result`` onto the video's frames and encode it; atomic.

    Args:
        path: output file, ``.mp4`` (also ``.mov``, ``.mkv``).
        frames: the source's frames in order, e.g. ``result_frames(video, result)`` or
            ``open_source(video).iter_frames()``; frames the result does not cover (before a start
            time, between strides) are skipped, so the whole video may be passed.
        result: the tracks to draw.
        fps: force a constant output rate (frames evenly spaced); by default each frame keeps its
            source time (``result.frame_times``), or, for results without times, the rate of the
            processed frames (source fps / stride).
        style: drawing and encoding options.

    Returns:
        An ``OverlayReport`` (codec used, frame count, encoded size).

    Raises:
        OutputError: unsupported suffix, or the location is not writable.
        ResultsError: the frames do not match the result (size, missing frames).
    """
    style = style if style is not None else OverlayStyle()
    target = Path(path)
    container_format = _CONTAINER_FORMATS.get(target.suffix.lower())
    if container_format is None:
        raise OutputError(f"overlay {target} must end with {', '.join(_CONTAINER_FORMATS)}; choose another file name")
    codec = _pick_codec(style.codec)
    rate = Fraction(fps if fps is not None else _average_rate(result)).limit_denominator(1001)
    time_base = _TIME_BASES[codec]
    stamps = _timestamps(result, time_base) if fps is None else None
    if stamps is None:
        step = round(1 / (rate * time_base))
        stamps = [step * position for position in range(result.num_frames)]
    # The last frame lasts as long as a typical frame; it is the only one whose duration is not
    # given by the next frame's time.
    last_duration = round(1 / (rate * time_base))
    width, height = result.width + result.width % 2, result.height + result.height % 2
    tracks = sorted((t for t in result.tracks if t.score >= style.min_score), key=lambda t: t.score)
    font = ImageFont.load_default() if style.show_labels else None
    num_written = 0
    with atomic_path(target) as tmp:
        try:
            container = av.open(str(tmp), mode="w", format=container_format)
        except av.error.FFmpegError as err:
            raise OutputError(f"cannot write {target} ({err}); choose a writable location") from err
        try:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
            if codec == "libx264":
                # No B-frames: with them MP4 track durations follow decode stamps, which for uneven
                # frame times end before the last frame (players that honour edit lists cut it off).
                stream.options = {"crf": str(style.crf), "preset": "veryfast", "bf": "0"}
            else:
                stream.bit_rate = max(400_000, int(width * height * float(rate) * 0.25))
            for position, frame in _selected_frames(frames, result):
                present = [
                    (track, track.mask(position, result.frame_size))
                    for track in tracks
                    if track.segmentations[position] is not None
                ]
                drawn = _pad_even(draw_tracks(frame, present, style, font))
                video_frame = av.VideoFrame.from_ndarray(drawn, format="rgb24")
                video_frame.pts = stamps[position]
                video_frame.time_base = time_base
                last = position + 1 == len(stamps)
                video_frame.duration = last_duration if last else stamps[position + 1] - stamps[position]
                for packet in stream.encode(video_frame):
                    container.mux(packet)
                num_written += 1
            for packet in stream.encode(None):
                container.mux(packet)
        finally:
            container.close()
    return OverlayReport(path=target, codec=codec, num_frames=num_written, width=width, height=height)

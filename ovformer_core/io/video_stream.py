"""Decoding one video stream with PyAV: probing, packets -> frames with source positions and times,
display orientation, and an honest account of damage.

Why packets are demuxed and decoded by hand rather than with ``container.decode``: to see what
FFmpeg knows and would otherwise keep to itself. A truncated MP4 ends with a packet FFmpeg flags as
corrupt, and frame-threaded decoding drops the decode error it causes; a damaged packet makes
``avcodec_send_packet`` fail, and decoding goes on after it (the decoder resyncs at the next key
frame, as players do) instead of giving up on the rest of the video. Every such event is counted in
a ``ReadLog``; the reader compares what it got with what the container declares.

Source positions (``index``): a frame's rank in presentation order among the stream's coded frames,
i.e. the number of packets whose presentation time is earlier. Counting packets (not decoded
frames) keeps positions right when the decoder drops a damaged frame, and lets a read that starts
after a seek agree with one from the start: the key frame it lands on is found in the container's
frame index (MP4/MOV sample tables, AVI indexes list every frame), and its position is the number of
frames before it. Containers whose index lists only key frames (Matroska/WebM cues) or none (MPEG-TS)
give no such count; there the first position after a seek is estimated as time x frame rate and the
read says so (``indices_exact``).
"""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from ovformer_core.errors import VideoError
from ovformer_core.io.decode_report import ReadLog
from ovformer_core.io.orientation import Orientation, frame_orientation

#: Frame rate reported when the source has none (frame folders, images, streams without a rate).
NOMINAL_FPS = 30.0
#: Decoder threading. "AUTO" (frame + slice threads) decodes H.264/HEVC fastest (benchmarks/bench_io.py)
#: and finds the same damage as single-threaded decoding: the decode error frame threads drop at a
#: cut is still seen through FFmpeg's corrupt-packet flag and the declared frame count. It gives up
#: the one or two frames in flight at a cut, which single-threaded decoding would still deliver.
DECODE_THREADS = "AUTO"
#: Slack when comparing where the data ends with the declared duration: frames of rounding, plus a
#: fixed margin for containers that round their durations.
_END_SLACK_FRAMES = 2.0
_END_SLACK_SECONDS = 0.05
#: Extra slack when the only duration known is the whole file's, which covers its audio too.
_FILE_DURATION_SLACK_SECONDS = 1.0
#: Relative difference from which the header's nominal rate is taken as wrong (variable frame rate
#: AVI files declare their slot rate, not their frames' rate).
_RATE_MISMATCH = 0.01
#: ``AVFMT_FLAG_GENPTS`` (libavformat/avformat.h), which PyAV sets on every input it opens.
_GEN_PTS = 0x0001
#: Demuxers that open other files or network streams (playlists, file lists, session descriptions),
#: or render text as video; never used on a user's input.
_INDIRECT_FORMATS = frozenset(
    {"hls", "concat", "dash", "imf", "sdp", "rtp", "rtsp", "tty", "lavfi", "webm_dash_manifest"}
)
#: Packets whose time span gives the frame rate of a stream without a frame count; stamps dropped at
#: each end of the sorted sample (more than any decoder's reorder depth); fewest left to trust it.
_RATE_SAMPLE_PACKETS = 120
_RATE_SAMPLE_EDGE = 8
_RATE_SAMPLE_MIN = 30
#: Matroska's per-track ``DURATION`` tag, ``HH:MM:SS.fraction``.
_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")

# A decoded-but-not-yet-converted frame: (source position, time in seconds, RGB converter).
RawFrame = tuple[int, float, Callable[[], np.ndarray]]


@dataclass(frozen=True)
class StreamFacts:
    """What the header, the frame index and the first frame say about a video stream.

    Attributes:
        width: display width (after orientation).
        height: display height.
        fps: average frame rate (frames / duration when the count is exact and the nominal rate
            disagrees, as in variable-rate AVI).
        num_frames: frames declared for the stream (0 if unknown).
        num_frames_exact: ``num_frames`` is a count from the frame index or header, not an estimate.
        duration: seconds declared for the video (the stream's own, else the file's); ``None`` if unknown.
        end_slack: seconds the data may end before ``duration`` without being called truncated.
        index_complete: the container's frame index lists every frame (positions after a seek are exact).
        orientation: turn + mirror to display orientation.
        orientation_note: why the display matrix could not be honoured exactly, or ``""``.
        coded_width: width of the decoded frames before orientation (every frame is scaled to it).
        coded_height: height of the decoded frames before orientation.
    """

    width: int
    height: int
    fps: float
    num_frames: int
    num_frames_exact: bool
    duration: float | None
    end_slack: float
    index_complete: bool
    orientation: Orientation
    orientation_note: str = ""
    coded_width: int = 0
    coded_height: int = 0


def av_reason(err: BaseException) -> str:
    """FFmpeg's message without the errno prefix and file name PyAV adds."""
    reason = getattr(err, "strerror", None) or str(err)
    return str(reason).rstrip(".")


@functools.cache
def _input_options() -> dict[str, str]:
    """FFmpeg options for opening a user's file: local files only, and no demuxer that opens others."""
    allowed = sorted(name for name in av.formats_available if name not in _INDIRECT_FORMATS)
    return {"protocol_whitelist": "file", "format_whitelist": ",".join(allowed)}


def open_container(path: Path) -> av.container.InputContainer:
    """Open a file for reading; one-line ``VideoError`` if FFmpeg cannot or may not.

    Playlists and file lists (HLS ``.m3u8``, ``ffconcat``, DASH, IMF), session descriptions (SDP)
    and text (FFmpeg renders it as video) are refused before anything they point to is opened, so an
    input never makes FFmpeg read outside the file it names, or from the network.
    """
    try:
        return av.open(str(path), mode="r", options=_input_options())
    except av.error.FileNotFoundError as err:
        raise VideoError(f"{path} does not exist; check the path") from err
    except av.error.ArgumentError as err:
        # The only invalid argument at open is a demuxer outside the whitelist.
        raise VideoError(
            f"{path} is a playlist, a list of other files, a stream description or text, not a video; "
            "pass the video file itself"
        ) from err
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        if path.is_file() and path.stat().st_size == 0:  # an interrupted copy or download, most often
            raise VideoError(f"{path} is empty (0 bytes); copy or download it again") from err
        raise VideoError(
            f"{path} is corrupt or not a video or image FFmpeg can read ({av_reason(err)}); "
            "pass a video, image or frame folder"
        ) from err


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream; one-line ``VideoError`` if there is none."""
    if not container.streams.video:
        raise VideoError(f"{path} has no video stream; pass a video file")
    return container.streams.video[0]


def _nominal_fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return NOMINAL_FPS


def _counted_entries(stream: av.video.stream.VideoStream, duration: float | None, nominal: float) -> tuple[int, bool]:
    """``(frames listed, lists every frame)`` of the container's frame index.

    Entries the demuxer marks as discarded (cut away by an MP4 edit list) and empty ones are not
    frames. The index lists every frame when it matches the header's count, or holds non-key frames
    (seek indexes, such as Matroska cues or the one FFmpeg builds while reading an AVI whose index is
    lost, hold key frames only), or, for an all-key-frame stream with a frame count in its header,
    spans the whole declared duration (a variable-rate AVI's index lists its frames, while its header
    counts time slots, dropped ones included).
    """
    entries = stream.index_entries
    counted = 0
    has_inter = False
    first: int | None = None
    last: int | None = None
    for entry in entries:
        if entry.is_discard or entry.size == 0:
            continue
        counted += 1
        has_inter = has_inter or not entry.is_keyframe
        first = entry.timestamp if first is None else first
        last = entry.timestamp
    if counted == 0:
        return 0, False
    spans = (
        duration is not None
        and stream.time_base is not None
        and first is not None
        and last is not None
        and float((last - first) * stream.time_base) + _END_SLACK_FRAMES / nominal >= duration
    )
    return counted, has_inter or counted == stream.frames or (stream.frames > 0 and spans)


def _declared_duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[float | None, bool]:
    """``(seconds, whole_file)``: the video stream's own duration, else the file's (``whole_file``)."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base), False
    tag = _DURATION_TAG.match(str(stream.metadata.get("DURATION", "")))
    if tag is not None:
        hours, minutes, seconds = tag.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds), False
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base, True
    return None, True


def _sampled_rate(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """Frames per second over the time span of the next packets (demuxed, not decoded); ``None`` when
    too few. The stamps at both ends of the sorted sample are dropped: reordered frames near the edges
    of a decode-order sample may have their neighbours outside it."""
    stamps: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                stamps.append(packet.pts)
            if len(stamps) >= _RATE_SAMPLE_PACKETS:
                break
    except av.error.FFmpegError:
        pass  # damage is the reader's business; a shorter sample still gives a rate
    inner = sorted(stamps)[_RATE_SAMPLE_EDGE:-_RATE_SAMPLE_EDGE]
    if len(inner) < _RATE_SAMPLE_MIN or stream.time_base is None or inner[-1] == inner[0]:
        return None
    return (len(inner) - 1) / float((inner[-1] - inner[0]) * stream.time_base)


def probe_stream(path: Path) -> StreamFacts:
    """Read the header, the frame index and the first frame: size, orientation, rate, declared length.

    Raises:
        VideoError: not a video, no video stream, or the first frame does not decode.
    """
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        nominal = _nominal_fps(stream)
        duration, whole_file = _declared_duration(container, stream)
        counted, index_complete = _counted_entries(stream, duration, nominal)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as err:
            raise VideoError(f"{path} is corrupt: cannot decode its first frame ({av_reason(err)})") from err
        if first is None:
            raise VideoError(f"{path} has no decodable frames; pass a video with at least one frame")
        fps = nominal
        if index_complete:
            num_frames, exact = counted, True
            if duration and num_frames > 1 and abs(num_frames / duration - nominal) > _RATE_MISMATCH * nominal:
                fps = num_frames / duration
        elif stream.frames > 0:
            num_frames, exact = int(stream.frames), True
        else:
            # No count: duration x rate, the rate measured on the first packets when the header's
            # nominal one disagrees (variable-rate Matroska declares its time base's rate).
            sampled = _sampled_rate(container, stream)
            if sampled is not None and abs(sampled - nominal) > _RATE_MISMATCH * nominal:
                fps = sampled
            num_frames, exact = (round(duration * fps) if duration is not None else 0), False
        orientation, note = frame_orientation(first)
        width, height = orientation.display_size(int(first.width), int(first.height))
        slack = _END_SLACK_FRAMES / fps + _END_SLACK_SECONDS
        if whole_file and len(container.streams) > 1:
            slack += _FILE_DURATION_SLACK_SECONDS
        return StreamFacts(
            width=width,
            height=height,
            fps=fps,
            num_frames=num_frames,
            num_frames_exact=exact,
            duration=duration,
            end_slack=slack,
            index_complete=index_complete,
            orientation=orientation,
            orientation_note=note,
            coded_width=int(first.width),
            coded_height=int(first.height),
        )
    finally:
        container.close()


def index_times(path: Path) -> list[float] | None:
    """Times (seconds from the first frame, decode order) of the frames in a complete frame index.

    Decode times lag presentation times by the reorder delay, which cancels out here because both
    start at 0; frames counted between two times are right to within that delay. ``None`` when the
    index does not list every frame.
    """
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        duration, _ = _declared_duration(container, stream)
        _, complete = _counted_entries(stream, duration, _nominal_fps(stream))
        if not complete or stream.time_base is None:
            return None
        stamps = [e.timestamp for e in stream.index_entries if not e.is_discard and e.size > 0]
        first = stamps[0]
        return [float((stamp - first) * stream.time_base) for stamp in stamps]
    finally:
        container.close()


class _BestEffortTime:
    """FFmpeg's best-effort timestamp (libavcodec ``guess_correct_pts``): a frame's presentation
    stamp, unless presentation stamps have gone backwards more often than decode stamps; then its
    decode stamp. AVI files with packed B-frames, for one, carry no usable presentation stamps.
    """

    def __init__(self) -> None:
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._faulty_pts = 0
        self._faulty_dts = 0

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts
        if pts is not None and (self._faulty_pts <= self._faulty_dts or dts is None):
            return pts
        return dts


class _Positions:
    """Source position of each decoded frame: how many packets come before it in presentation order.

    Packets are registered as they are demuxed; a frame's position is the number of packets with an
    earlier presentation time (a heap holds those no frame has passed yet). Where packets carry no
    presentation time, frames are counted instead.

    Args:
        first: packets known to precede the first packet read (0 from the start; ``None`` after a
            seek, until ``landed`` gives the landing packet's position).
    """

    def __init__(self, first: int | None) -> None:
        self._passed = first
        self._pending: list[int] = []
        self._count_frames = False
        self._last: int | None = None

    @property
    def known(self) -> bool:
        return self._passed is not None

    def landed(self, passed: int) -> None:
        self._passed = passed

    def add_packet(self, pts: int | None) -> None:
        if pts is None:
            self._count_frames = True
        else:
            heapq.heappush(self._pending, pts)

    def of_frame(self, pts: int | None) -> int:
        assert self._passed is not None
        if self._count_frames or pts is None:
            index = self._passed if self._last is None else self._last + 1
        else:
            while self._pending and self._pending[0] < pts:
                heapq.heappop(self._pending)
                self._passed += 1
            index = self._passed
            if self._pending and self._pending[0] == pts:
                heapq.heappop(self._pending)
                self._passed += 1
        if self._last is not None and index <= self._last:
            index = self._last + 1
        self._last = index
        return index


def _landing_position(stream: av.video.stream.VideoStream, packet: av.Packet) -> int | None:
    """Frames before ``packet`` (the first after a seek) according to a complete frame index."""
    stamp = packet.dts if packet.dts is not None else packet.pts
    if stamp is None:
        return None
    entries = stream.index_entries
    position = entries.search_timestamp(stamp, backward=True, any_frame=True)
    if position < 0 or entries[position].timestamp != stamp:
        return None
    return sum(1 for entry in entries[:position] if not entry.is_discard and entry.size > 0)


def _display_rgb(frame: av.VideoFrame, facts: StreamFacts) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` in display orientation, at the stream's first frame size."""
    if (frame.width, frame.height) != (facts.coded_width, facts.coded_height):
        image = frame.to_ndarray(format="rgb24", width=facts.coded_width, height=facts.coded_height)
    else:
        image = frame.to_ndarray(format="rgb24")
    return facts.orientation.apply(image)


def decode_stream(
    path: Path, facts: StreamFacts, start_time: float, log: ReadLog, threads: str = DECODE_THREADS
) -> Generator[RawFrame, None, None]:
    """Decode a video file's first video stream from ``start_time`` (seconds; 0 = the start).

    Seeks to the key frame at or before ``start_time`` and yields every frame from there, in
    presentation order, as ``(position, time, to_rgb)``; ``to_rgb()`` returns uint8 RGB ``[H, W, 3]``
    in display orientation. Damage, read errors and where the data ended are recorded in ``log``;
    ``log.stopped`` is set when the data ends or a read error stops the demuxer. ``threads`` is
    FFmpeg's decoder threading (``AUTO``, ``FRAME``, ``SLICE``, ``NONE``), for benchmarks.
    """
    container = open_container(path)
    try:
        # PyAV asks FFmpeg to invent missing presentation stamps; for AVI's packed B-frames the
        # invented ones go backwards. Missing stamps are handled below, as FFmpeg's own tools do.
        container.flags &= ~_GEN_PTS
        stream = video_stream(container, path)
        stream.thread_type = threads
        time_base: Fraction | None = stream.time_base
        origin = stream.start_time or 0
        interval = 1.0 / facts.fps

        def seconds(pts: int | None) -> float | None:
            return None if pts is None or time_base is None else float((pts - origin) * time_base)

        positions = _Positions(0)
        if start_time > 0 and time_base is not None:
            try:
                container.seek(origin + int(start_time / time_base), stream=stream, backward=True, any_frame=False)
                positions = _Positions(None)
            except av.error.FFmpegError:
                pass  # unseekable input: decode from the start instead
        last_time: float | None = None
        best_effort = _BestEffortTime()

        def emit(frame: av.VideoFrame) -> RawFrame | None:
            nonlocal last_time
            log.frames_decoded += 1
            stamp = best_effort(frame.pts, frame.dts)
            time = seconds(stamp)
            if time is None:
                time = 0.0 if last_time is None else last_time + interval
            if last_time is not None and time <= last_time:
                log.frames_dropped += 1
                log.problem_at(time, "frame timestamps went backwards")
                return None
            if frame.is_corrupt:
                # Decoded with errors concealed (the decoder could not read all of it).
                log.damaged(time, "the decoder concealed errors in a frame")
            index = positions.of_frame(stamp)
            duration = float(frame.duration * time_base) if frame.duration and time_base is not None else interval
            log.reached(index, time + duration)
            last_time = time
            if (frame.width, frame.height) != (facts.coded_width, facts.coded_height):
                log.frames_resized += 1
                if log.frames_resized == 1:
                    log.resize_note = (
                        f"frame size changed at {time:.2f} s from {facts.coded_width}x{facts.coded_height} "
                        f"to {frame.width}x{frame.height}; such frames are scaled to the first size"
                    )
            return index, time, functools.partial(_display_rgb, frame, facts)

        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets, None)
            except av.error.FFmpegError as err:
                log.read_error(last_time, av_reason(err))
                break
            if packet is None:
                break
            if packet.size == 0:
                continue  # end-of-stream markers and AVI "repeat the last frame" chunks carry no frame
            if not positions.known:
                landing = _landing_position(stream, packet) if facts.index_complete else None
                if landing is None:
                    landing = round((seconds(packet.pts) or 0.0) * facts.fps)
                    log.indices_exact = False
                positions.landed(landing)
            if not packet.is_discard:
                positions.add_packet(packet.pts)
            if packet.is_corrupt:
                log.damaged(seconds(packet.pts), "corrupt packet: the data is damaged or cut off")
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError as err:
                log.damaged(seconds(packet.pts), av_reason(err))
                continue
            for frame in frames:
                item = emit(frame)
                if item is not None:
                    yield item
        try:
            remaining = stream.decode(None)
        except av.error.FFmpegError as err:
            log.damaged(last_time, av_reason(err))
            remaining = []
        for frame in remaining:
            item = emit(frame)
            if item is not None:
                yield item
        log.stop("end")
    finally:
        container.close()

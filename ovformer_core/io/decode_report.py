"""How one read of a source went: frames decoded against what the container declares, damage,
orientation. Filled by ``ovformer_core.io.video`` for every pass over a source and kept in
``VideoResult.decode`` (JSON key ``"decode"``).

A damaged file is never a silent success. ``complete`` is False when

- the data ends before what the container declares (``truncated``: fewer frames than an exact
  count, or the last frame ends well before the declared duration),
- a read error stopped the demuxer (``stopped == "error"``; the frames before it are kept),
- the decoder rejected packets, or FFmpeg flagged a packet or a decoded frame as corrupt
  (``damaged_packets``; decoding goes on after them, so frames there may be missing or concealed), or
- frames came out of order after damage and were dropped (``frames_dropped``).

``summary()`` says which in one line.

Declared counts: exact (``declared_exact``) when they come from a frame index that lists every frame
(MP4/MOV sample tables, AVI indexes) or the header; an estimate (declared duration x average frame
rate) for containers without one (Matroska/WebM, MPEG-TS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ovformer_core.errors import ResultsError

#: Why reading stopped: the data ended, the frame selection (end time, max frames) was satisfied
#: or the consumer stopped early, or a read error ended the demuxer.
StopReason = Literal["end", "selection", "error"]
#: Differences below this (seconds) are not worth printing as "x of y".
_SHORTEST_GAP = 0.01


@dataclass(frozen=True)
class DecodeReport:
    """The outcome of one read of a source.

    Attributes:
        frames_decoded: frames the decoder delivered in this read, from where it began (the start, or
            the key frame before ``start_time``) to where it stopped.
        frames_declared: frames the container declares for the whole stream; ``None`` if unknown.
        declared_exact: ``frames_declared`` is an exact count (frame index or header), not an
            estimate from duration x frame rate.
        duration_declared: seconds the container declares for the video; ``None`` if unknown.
        time_reached: seconds on the source timeline where the last decoded frame ends.
        stopped: ``"end"`` (the data ended), ``"selection"`` (end time / max frames reached, or the
            reader was closed early) or ``"error"`` (a read error stopped the demuxer).
        truncated: the data ended before the declared frame count or duration.
        damaged_packets: packets the decoder rejected, or FFmpeg flagged as corrupt (the packet, or
            the frame decoded from it).
        frames_dropped: frames dropped because their timestamp did not increase (seen after damage).
        first_problem_time: seconds where the first damage or read error was met; ``None`` if none.
        problem: FFmpeg's message for the first damage or read error; ``""`` if none.
        indices_exact: every frame index is the frame's exact position in the source; False after a
            seek in a container without a full frame index (then estimated as time x frame rate), or
            when frames may have been lost to damage before them.
        rotation: clockwise degrees the frames were turned to display orientation (0, 90, 180, 270).
        mirrored: frames were mirrored left-right after turning.
        orientation_note: why the display matrix could not be honoured exactly; ``""`` normally.
        frames_resized: frames whose size differed from the first frame's, scaled to it (a stream
            that changes resolution); they do not make the read incomplete.
        resize_note: where the size first changed, or ``""``.
    """

    frames_decoded: int
    frames_declared: int | None
    declared_exact: bool
    duration_declared: float | None
    time_reached: float | None
    stopped: StopReason
    truncated: bool = False
    damaged_packets: int = 0
    frames_dropped: int = 0
    first_problem_time: float | None = None
    problem: str = ""
    indices_exact: bool = True
    rotation: int = 0
    mirrored: bool = False
    orientation_note: str = ""
    frames_resized: int = 0
    resize_note: str = ""

    @property
    def complete(self) -> bool:
        """Everything requested was decoded from undamaged data."""
        return self.stopped != "error" and not self.truncated and self.damaged_packets == 0 and self.frames_dropped == 0

    def summary(self) -> str:
        """One line: what was decoded and, when incomplete, what went wrong."""
        count = f"decoded {self.frames_decoded} frames"
        if self.frames_declared is not None:
            how = "exact count" if self.declared_exact else "estimated from duration x frame rate"
            count += f" of {self.frames_declared} declared ({how})"
        parts = [count]
        if self.truncated:
            reached, declared = self.time_reached, self.duration_declared
            if reached is not None and declared is not None and reached < declared - _SHORTEST_GAP:
                where = f"{_seconds(reached)} of {_seconds(declared)}"
            else:
                where = f"{_seconds(reached)}, before the declared end"
            parts.append(f"the data ends at {where}: the file looks truncated")
        if self.stopped == "error":
            parts.append(f"a read error stopped decoding at {_seconds(self.time_reached)}")
        if self.damaged_packets:
            parts.append(f"{self.damaged_packets} damaged packet(s); frames there may be missing or garbled")
        if self.frames_dropped:
            parts.append(f"{self.frames_dropped} out-of-order frame(s) dropped")
        if self.problem:
            parts.append(f"first problem at {_seconds(self.first_problem_time)}: {self.problem}")
        if self.frames_resized:
            parts.append(f"{self.frames_resized} frame(s) scaled: {self.resize_note}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``complete`` and ``summary`` are included for readers of the file."""
        return {
            "complete": self.complete,
            "summary": self.summary(),
            "frames_decoded": int(self.frames_decoded),
            "frames_declared": None if self.frames_declared is None else int(self.frames_declared),
            "declared_exact": bool(self.declared_exact),
            "duration_declared": _json_float(self.duration_declared),
            "time_reached": _json_float(self.time_reached),
            "stopped": self.stopped,
            "truncated": bool(self.truncated),
            "damaged_packets": int(self.damaged_packets),
            "frames_dropped": int(self.frames_dropped),
            "first_problem_time": _json_float(self.first_problem_time),
            "problem": str(self.problem),
            "indices_exact": bool(self.indices_exact),
            "rotation": int(self.rotation),
            "mirrored": bool(self.mirrored),
            "orientation_note": str(self.orientation_note),
            "frames_resized": int(self.frames_resized),
            "resize_note": str(self.resize_note),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "decode report") -> DecodeReport:
        """Inverse of ``to_dict`` (``complete`` and ``summary`` are recomputed, not read).

        Raises:
            ResultsError: a key is missing or has the wrong type or value.
        """
        if not isinstance(data, dict):
            raise ResultsError(f"{where}: 'decode' must be an object, got {type(data).__name__}")
        stopped = _field(data, "stopped", str, where)
        if stopped not in get_args(StopReason):
            raise ResultsError(f"{where}: 'stopped' must be one of {', '.join(get_args(StopReason))}, got {stopped!r}")
        rotation = _count(data, "rotation", where)
        if rotation not in (0, 90, 180, 270):
            raise ResultsError(f"{where}: 'rotation' must be 0, 90, 180 or 270, got {rotation}")
        return cls(
            frames_decoded=_count(data, "frames_decoded", where),
            frames_declared=_optional_count(data, "frames_declared", where),
            declared_exact=_field(data, "declared_exact", bool, where),
            duration_declared=_optional_seconds(data, "duration_declared", where),
            time_reached=_optional_seconds(data, "time_reached", where),
            stopped=stopped,
            truncated=_field(data, "truncated", bool, where),
            damaged_packets=_count(data, "damaged_packets", where),
            frames_dropped=_count(data, "frames_dropped", where),
            first_problem_time=_optional_seconds(data, "first_problem_time", where),
            problem=_field(data, "problem", str, where),
            indices_exact=_field(data, "indices_exact", bool, where),
            rotation=rotation,
            mirrored=_field(data, "mirrored", bool, where),
            orientation_note=_field(data, "orientation_note", str, where),
            frames_resized=_count(data, "frames_resized", where),
            resize_note=_field(data, "resize_note", str, where),
        )


@dataclass
class ReadLog:
    """What happens during one read, filled in by the reader; ``report()`` turns it into a ``DecodeReport``.

    Attributes:
        frames_declared, declared_exact, duration_declared: what the container declares.
        end_slack: seconds the data may end before ``duration_declared`` without being truncated.
        rotation, mirrored, orientation_note: the display orientation applied.
        (the rest): counters and marks, as in ``DecodeReport``; ``last_index`` is the last frame's
        source position.
    """

    frames_declared: int | None
    declared_exact: bool
    duration_declared: float | None
    end_slack: float = 0.0
    rotation: int = 0
    mirrored: bool = False
    orientation_note: str = ""
    frames_decoded: int = 0
    last_index: int | None = None
    time_reached: float | None = None
    stopped: StopReason | None = None
    damaged_packets: int = 0
    frames_dropped: int = 0
    first_problem_time: float | None = None
    problem: str = ""
    indices_exact: bool = True
    frames_resized: int = 0
    resize_note: str = ""

    def reached(self, index: int, end_time: float) -> None:
        """A frame at source position ``index`` was decoded; it ends at ``end_time`` seconds."""
        self.last_index = index
        self.time_reached = end_time if self.time_reached is None else max(self.time_reached, end_time)

    def problem_at(self, time: float | None, message: str) -> None:
        """Note a problem; the first one is kept. Positions after it may be off by lost packets."""
        if not self.problem:
            self.problem = message
            self.first_problem_time = time
        self.indices_exact = False

    def damaged(self, time: float | None, message: str) -> None:
        """A packet was rejected by the decoder or flagged corrupt."""
        self.damaged_packets += 1
        self.problem_at(time, message)

    def read_error(self, time: float | None, message: str) -> None:
        """A read error stopped the demuxer."""
        self.problem_at(time, message)
        self.stopped = "error"

    def stop(self, reason: StopReason) -> None:
        """Reading stopped for ``reason``, unless it had already stopped for another."""
        if self.stopped is None:
            self.stopped = reason

    def report(self) -> DecodeReport | None:
        """The report, or ``None`` while reading has not stopped."""
        if self.stopped is None:
            return None
        truncated = False
        if self.stopped == "end":
            short_count = (
                self.declared_exact
                and self.frames_declared is not None
                and self.last_index is not None
                and self.last_index + 1 < self.frames_declared
            )
            short_time = (
                self.duration_declared is not None
                and self.time_reached is not None
                and self.time_reached < self.duration_declared - self.end_slack
            )
            # The damage met was where the data ends (a cut inside a frame): the end is missing.
            damage_at_end = (
                self.first_problem_time is not None
                and self.time_reached is not None
                and self.first_problem_time >= self.time_reached - self.end_slack
            )
            # An exact count settles it, unless damage may have lost packets along the way (then the
            # time or the damage must point to the end). Durations alone decide only without a count:
            # an MP4's track duration follows decode stamps, which need not end where the last frame ends.
            truncated = bool(
                (short_count and (self.indices_exact or short_time or damage_at_end))
                or (not self.declared_exact and short_time)
            )
        return DecodeReport(
            frames_decoded=self.frames_decoded,
            frames_declared=self.frames_declared,
            declared_exact=self.declared_exact,
            duration_declared=self.duration_declared,
            time_reached=self.time_reached,
            stopped=self.stopped,
            truncated=truncated,
            damaged_packets=self.damaged_packets,
            frames_dropped=self.frames_dropped,
            first_problem_time=self.first_problem_time,
            problem=self.problem,
            indices_exact=self.indices_exact,
            rotation=self.rotation,
            mirrored=self.mirrored,
            orientation_note=self.orientation_note,
            frames_resized=self.frames_resized,
            resize_note=self.resize_note,
        )


def _seconds(value: float | None) -> str:
    return "an unknown time" if value is None else f"{value:.2f} s"


def _json_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _field(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise ResultsError(f"{where}: missing key '{key}'; pass a file written by `write_result_json()`")
    value = data[key]
    # bool is an int subclass: never accept one for the other.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ResultsError(f"{where}: '{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _count(data: dict[str, Any], key: str, where: str) -> int:
    value: int = _field(data, key, int, where)
    if value < 0:
        raise ResultsError(f"{where}: '{key}' must be 0 or more, got {value}")
    return value


def _optional_count(data: dict[str, Any], key: str, where: str) -> int | None:
    return None if _field(data, key, object, where) is None else _count(data, key, where)


def _optional_seconds(data: dict[str, Any], key: str, where: str) -> float | None:
    value = _field(data, key, object, where)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ResultsError(f"{where}: '{key}' must be a finite number of seconds or null, got {value!r}")
    return float(value)

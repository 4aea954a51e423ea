"""Display orientation of video frames: the container's display matrix -> quarter turns + mirror.

Phones store frames as the sensor saw them and tag the track with a display matrix (MP4/MOV
``tkhd``, Matroska projection) telling players to rotate them. FFmpeg attaches that matrix to
every decoded frame as ``DISPLAYMATRIX`` side data but does not apply it, so frames come out
sideways unless the reader turns them. FFmpeg's definition (libavutil/display.h) maps a source pixel
position ``(p, q)`` (``p`` right, ``q`` down) to its displayed position
``p' = a p + c q + x``, ``q' = b p + d q + y``, with the nine int32 values stored as
``[a, b, u, c, d, v, x, y, w]`` (``a b c d x y`` in 16.16 fixed point). Every orientation a camera
writes is a right angle with an optional mirror: one of the eight ``Orientation`` values.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

#: The display matrix as FFmpeg stores it: nine native int32 values.
_MATRIX_FORMAT = "=9i"


@dataclass(frozen=True)
class Orientation:
    """How a decoded frame becomes its displayed self: ``turns`` clockwise quarter turns, then a
    left-right mirror if ``mirror``.

    Attributes:
        turns: clockwise quarter turns, 0..3.
        mirror: mirror left-right after turning.
    """

    turns: int = 0
    mirror: bool = False

    def __post_init__(self) -> None:
        if self.turns not in (0, 1, 2, 3):
            raise ValueError(f"turns must be 0..3, got {self.turns}")

    @property
    def degrees(self) -> int:
        """Clockwise rotation in degrees: 0, 90, 180 or 270."""
        return 90 * self.turns

    @property
    def is_identity(self) -> bool:
        return self.turns == 0 and not self.mirror

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of a ``width`` x ``height`` frame once displayed."""
        return (height, width) if self.turns % 2 else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Turn one decoded frame ``[H, W, C]`` into display orientation ``[H', W', C]`` (contiguous)."""
        if self.is_identity:
            return image
        # np.rot90 turns counter-clockwise for positive k.
        turned = np.rot90(image, k=-self.turns)
        if self.mirror:
            turned = turned[:, ::-1]
        return np.ascontiguousarray(turned)

    def matrix(self) -> tuple[int, int, int, int]:
        """``(a, b, c, d)`` of this orientation as unit entries of FFmpeg's display matrix."""
        # One clockwise quarter turn on screen (q down): (p, q) -> (-q, p), i.e. a=0 b=1 c=-1 d=0.
        a, b, c, d = 1, 0, 0, 1
        for _ in range(self.turns):
            a, b, c, d = -b, a, -d, c
        if self.mirror:
            a, c = -a, -c
        return a, b, c, d


#: All eight orientations, keyed by their unit matrix entries ``(a, b, c, d)``.
_BY_MATRIX = {o.matrix(): o for o in (Orientation(t, m) for t in range(4) for m in (False, True))}


def orientation_from_matrix(matrix: tuple[int, ...] | list[int]) -> Orientation | None:
    """The orientation a display matrix describes, or ``None`` if it is not a right angle (+ mirror).

    Args:
        matrix: the nine int32 values of an FFmpeg display matrix.
    """
    if len(matrix) != 9:
        return None
    a, b, _, c, d, _, _, _, _ = matrix
    scale = max(abs(a), abs(b), abs(c), abs(d))
    if scale == 0:
        return None
    # Scale-free: some writers store a zoomed matrix; only the directions matter here. Entries must be
    # within 1% of 0 or +-1 (a 1-degree tilt already misses that), anything else is a free rotation.
    units = []
    for value in (a, b, c, d):
        unit = value / scale
        rounded = round(unit)
        if abs(unit - rounded) > 0.01:
            return None
        units.append(int(rounded))
    return _BY_MATRIX.get((units[0], units[1], units[2], units[3]))


def frame_orientation(frame: av.VideoFrame) -> tuple[Orientation, str]:
    """The display orientation of a decoded frame and, when it could not be honoured exactly, why.

    Returns:
        ``(orientation, note)``; ``note`` is ``""`` when the frame has no display matrix or it was
        read exactly.
    """
    try:
        # PyAV's stub types side_data as a TypedDict of motion vectors; it is a Mapping by Type.
        side_data: Mapping[SideDataType, object] = cast("Mapping[SideDataType, object]", frame.side_data)
    except ValueError:
        # PyAV cannot wrap side data types newer than itself (e.g. FFmpeg 8's EXIF); its C helper still
        # reads the rotation angle, but not a mirror.
        angle = frame.rotation
        if angle == 0:
            return Orientation(), ""
        turns = round(-angle / 90) % 4
        note = f"display matrix read as a {90 * turns} degree rotation only (a mirror flag would be missed)"
        return Orientation(turns, False), note
    if SideDataType.DISPLAYMATRIX not in side_data:
        return Orientation(), ""
    raw = bytes(side_data[SideDataType.DISPLAYMATRIX])  # type: ignore[call-overload]
    if len(raw) != struct.calcsize(_MATRIX_FORMAT):
        return Orientation(), f"display matrix of {len(raw)} bytes ignored"
    values = struct.unpack(_MATRIX_FORMAT, raw)
    orientation = orientation_from_matrix(values)
    if orientation is not None:
        return orientation, ""
    # A free rotation (not a right angle): turn by the nearest quarter and say so.
    turns = round(-frame.rotation / 90) % 4
    return Orientation(turns, False), (
        f"display matrix rotates by {-frame.rotation} degrees; turned by the nearest {90 * turns} degrees"
    )

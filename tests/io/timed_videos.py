"""Test videos the plain ``write_video`` fixture cannot make, all written with PyAV (no ffmpeg CLI):
frames at chosen times (variable frame rate), a display matrix (phone rotation), the MP4 index at the
front (so a cut file keeps its header), short GOPs (so seeks land mid-file), and damaged copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.conftest import synthetic_frame

#: Millisecond clock: every test time is a whole number of milliseconds.
MS = Fraction(1, 1000)


def write_timed_video(
    path: Path,
    times: Sequence[float],
    height: int = 48,
    width: int = 64,
    codec: str = "libx264",
    images: np.ndarray | None = None,
    display_matrix: Sequence[int] | None = None,
    faststart: bool = False,
    gop: int | None = None,
) -> np.ndarray:
    """Write frames shown at ``times`` (seconds); returns the images written, uint8 ``[T, H, W, 3]``.

    Args:
        images: the frames to write (default: ``synthetic_frame(i)``, whose id strip ``identify`` reads).
        codec: ``libx264`` (lossy) or ``libx264rgb`` (lossless, exact pixels).
        display_matrix: nine int32 values stored as the track's display matrix (FFmpeg layout).
        faststart: MP4 index before the data, as phones and web encoders write it.
        gop: key frame every ``gop`` frames (default: the encoder's).
    """
    if images is None:
        images = np.stack([synthetic_frame(i, height, width) for i in range(len(times))])
    height, width = images.shape[1:3]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
        stream.time_base = MS
        stream.codec_context.time_base = MS
        codec_options = {"qp": "0"} if codec == "libx264rgb" else {}
        if gop is not None:
            codec_options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
        stream.options = codec_options
        if display_matrix is not None:
            stream.set_display_matrix(list(display_matrix))
        for image, time in zip(images, times, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = round(Fraction(time) / MS)
            frame.time_base = MS
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return images


def evenly(num_frames: int, fps: float = 10.0) -> list[float]:
    """Times of ``num_frames`` frames at a constant ``fps``."""
    return [i / fps for i in range(num_frames)]


def cut_copy(source: Path, target: Path, fraction: float) -> Path:
    """``head -c``: the first ``fraction`` of ``source``'s bytes."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def zeroed_copy(source: Path, target: Path, start: float, stop: float) -> Path:
    """A copy with the bytes between the fractions ``start`` and ``stop`` of the file set to zero."""
    data = bytearray(source.read_bytes())
    first, last = int(len(data) * start), int(len(data) * stop)
    data[first:last] = bytes(last - first)
    target.write_bytes(bytes(data))
    return target

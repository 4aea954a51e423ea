"""Source frames for the result page, decoded on the server and sent as JPEG.

The browser is handed decoded frames rather than the video file: stepping is then exact to the frame
(a ``<video>`` element seeks to times, not frames), every source ``ovformer segment`` reads plays
(any codec PyAV decodes, frame folders, images), and the frame numbers are the very ones recorded in
the result. Playback and stepping read forward, so each source keeps its decoder open where it
stopped and only seeks for jumps; recently sent frames are kept for stepping back.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from ovformer_core.errors import VideoError
from ovformer_core.io.video import DecodedFrame, ReadOptions, SourceReader, VideoSource, open_source

#: JPEG quality of the frames sent (high: the masks' edges are judged against them).
JPEG_QUALITY = 90
#: Frames decoded forward rather than seeking, when the requested frame is ahead of the decoder.
FORWARD_DECODE_LIMIT = 48
#: Encoded frames kept per source, for stepping back and re-drawing.
RECENT_FRAMES_KEPT = 64
#: Frames before the target also encoded when a step back needs a seek (the next steps back are then cached).
BACKWARD_FRAMES_KEPT = 16
#: Sources kept open at once.
OPEN_SOURCES_KEPT = 4


def encode_jpeg(frame: np.ndarray) -> bytes:
    """uint8 RGB ``[H, W, 3]`` -> JPEG bytes."""
    buffer = io.BytesIO()
    # 4:4:4 chroma: with the default 4:2:0, colours bleed a pixel across the edges masks are judged on
    Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


class FrameDecoder:
    """Frames of one source by source frame number.

    Args:
        path: a video file, frame folder or image (as ``open_source`` takes it).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source: VideoSource = open_source(path)
        self._frames: SourceReader[DecodedFrame] | None = None
        self._position = -1  # source frame number of the last frame taken from _frames
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self.lock = threading.Lock()

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""
        return self.source.info.height, self.source.info.width

    def _restart(self, frame_index: int) -> None:
        self.close()
        fps = self.source.info.fps
        start = max(0.0, (frame_index - 0.5) / fps) if frame_index > 0 else None
        source = open_source(self.path, ReadOptions(start_time=start)) if start else self.source
        self._frames = source.iter_frames()
        self._position = -1

    def jpeg(self, frame_index: int) -> bytes:
        """The JPEG of source frame ``frame_index``; call with ``lock`` held.

        Raises:
            VideoError: the source cannot be decoded there, or has no such frame.
        """
        cached = self._recent.get(frame_index)
        if cached is not None:
            self._recent.move_to_end(frame_index)
            return cached
        ahead = frame_index - self._position
        keep_from = frame_index
        if self._frames is None or ahead <= 0 or ahead > FORWARD_DECODE_LIMIT:
            if self._frames is not None and ahead <= 0:
                # Stepping back: the seek decodes from a key frame anyway, so the frames just before
                # the target are kept too and the next steps back need no seek.
                keep_from = max(0, frame_index - BACKWARD_FRAMES_KEPT)
            try:
                self._restart(keep_from)
            except VideoError:
                raise VideoError(f"{self.path} has no frame {frame_index}; point the page at the right video") from None
        assert self._frames is not None
        try:
            for decoded in self._frames:
                index, frame = decoded.frame_index, decoded.image
                self._position = index
                if index < keep_from or (index < frame_index and index in self._recent):
                    continue
                data = encode_jpeg(frame)
                self._recent[index] = data
                self._recent.move_to_end(index)
                while len(self._recent) > RECENT_FRAMES_KEPT:
                    self._recent.popitem(last=False)
                if index == frame_index:
                    return data
                if index > frame_index:
                    break
        except VideoError:
            self.close()
            raise
        self.close()
        raise VideoError(f"{self.path} has no frame {frame_index}; point the page at the right video")

    def close(self) -> None:
        """Release the open decoder (the next request reopens it)."""
        if self._frames is not None:
            self._frames.close()
        self._frames = None
        self._position = -1


class FrameStore:
    """Open ``FrameDecoder``\\ s, the most recently used ``OPEN_SOURCES_KEPT`` of them."""

    def __init__(self) -> None:
        self._decoders: OrderedDict[Path, FrameDecoder] = OrderedDict()
        self._lock = threading.Lock()

    def decoder(self, path: Path) -> FrameDecoder:
        """The decoder of ``path``, opened on first use.

        Raises:
            VideoError: the source is missing or unreadable.
        """
        with self._lock:
            found = self._decoders.get(path)
            if found is not None:
                self._decoders.move_to_end(path)
                return found
        opened = FrameDecoder(path)
        with self._lock:
            self._decoders[path] = opened
            while len(self._decoders) > OPEN_SOURCES_KEPT:
                _, old = self._decoders.popitem(last=False)
                with old.lock:
                    old.close()
        return opened

    def jpeg(self, path: Path, frame_index: int) -> bytes:
        """JPEG of frame ``frame_index`` of ``path`` (see ``FrameDecoder.jpeg``)."""
        decoder = self.decoder(path)
        with decoder.lock:
            return decoder.jpeg(frame_index)

    def close(self) -> None:
        """Close every decoder."""
        with self._lock:
            for decoder in self._decoders.values():
                with decoder.lock:
                    decoder.close()
            self._decoders.clear()

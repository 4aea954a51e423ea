"""Shared fixtures: synthetic videos, frame folders and images written with PyAV, tiny results.

Synthetic frames are deterministic and easy to tell apart even after lossy compression: the left
quarter of frame ``i`` is a flat grey whose level encodes ``i`` (``frame_code``), next to a smooth
gradient and a moving coloured square. ``identify_frames`` maps decoded frames back to the written ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from ovformer_core.io.results import Track, VideoResult
from tests.train.synthetic import write_shapes_task

#: Grey levels of the frame-id strip: 8 levels apart so lossy codecs (error ~1-3) cannot confuse them.
_CODE_BASE, _CODE_STEP, _CODE_PERIOD = 10, 8, 31


def frame_code(index: int) -> int:
    """Grey level of the id strip of frame ``index`` (repeats every 31 frames)."""
    return _CODE_BASE + _CODE_STEP * (index % _CODE_PERIOD)


def synthetic_frame(index: int, height: int, width: int) -> np.ndarray:
    """Frame ``index`` of the synthetic video: uint8 RGB [H, W, 3]."""
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (60 + 120 * rows * np.ones_like(cols)).astype(np.uint8)
    frame[..., 1] = (60 + 120 * cols * np.ones_like(rows)).astype(np.uint8)
    frame[..., 2] = 128
    side = max(2, min(height, width) // 4)
    top = (index * 3) % max(1, height - side)
    left = width // 4 + (index * 5) % max(1, width - width // 4 - side)
    frame[top : top + side, left : left + side] = (230, 40, 40)
    frame[:, : max(1, width // 4)] = frame_code(index)
    return frame


def _default_codec(suffix: str) -> str:
    if suffix == ".webm":
        return "libvpx-vp9"
    if suffix == ".avi":
        return "mpeg4"
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(
    path: Path,
    num_frames: int = 10,
    height: int = 48,
    width: int = 64,
    fps: float = 10.0,
    codec: str | None = None,
) -> np.ndarray:
    """Write a synthetic video with PyAV; returns the frames written, uint8 [T, H, W, 3].

    ``codec`` defaults by suffix (mp4/mov/mkv: libx264, avi: mpeg4, webm: libvpx-vp9). ``ffv1`` and
    ``libx264rgb`` are written losslessly (decoded frames equal the returned ones exactly).
    """
    codec = codec or _default_codec(path.suffix.lower())
    frames = np.stack([synthetic_frame(i, height, width) for i in range(num_frames)])
    pixel_format = {"ffv1": "bgr0", "libx264rgb": "rgb24"}.get(codec, "yuv420p")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = pixel_format
        if codec == "libx264rgb":
            stream.options = {"qp": "0"}
        elif codec == "mpeg4":
            stream.bit_rate = 2_000_000  # mpeg4's default rate blurs the id strip of tiny frames
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return frames


def write_image(path: Path, image: np.ndarray) -> None:
    """Write uint8 RGB [H, W, 3] as PNG (lossless) or JPEG (by suffix) with PyAV's encoders."""
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    codec = av.CodecContext.create("mjpeg" if is_jpeg else "png", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt = "yuvj444p" if is_jpeg else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    if is_jpeg:
        frame = frame.reformat(format="yuvj444p")
    path.write_bytes(b"".join(bytes(p) for p in codec.encode(frame) + codec.encode(None)))


def write_frame_folder(
    folder: Path,
    num_frames: int = 6,
    height: int = 48,
    width: int = 64,
    ext: str = "png",
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Write frames ``frame0.<ext>``, ``frame1.<ext>``, ... (or ``names``); returns them [T, H, W, 3]."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else [f"frame{i}.{ext}" for i in range(num_frames)]
    frames = np.stack([synthetic_frame(i, height, width) for i in range(len(names))])
    for name, frame in zip(names, frames, strict=True):
        write_image(folder / name, frame)
    return frames


def identify(decoded: np.ndarray) -> int:
    """Recover ``index % 31`` of a synthetic frame from its id strip (robust to lossy coding)."""
    strip = decoded[:, : max(1, decoded.shape[1] // 4) - 1].astype(np.float32)
    return round((float(np.median(strip)) - _CODE_BASE) / _CODE_STEP)


def random_result(
    num_frames: int = 4,
    height: int = 24,
    width: int = 32,
    num_tracks: int = 3,
    seed: int = 0,
    frame_indices: Sequence[int] | None = None,
) -> tuple[VideoResult, np.ndarray]:
    """A small ``VideoResult`` of rectangle masks; returns it and the masks bool [N, T, H, W].

    Track ``k`` has id ``k + 1``, label ``k``, category id ``k + 1``, name ``cat<k>``; its rectangle moves
    randomly and is absent (all false) in one frame, so empty RLEs are covered.
    """
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_tracks, num_frames, height, width), dtype=bool)
    for k in range(num_tracks):
        for t in range(num_frames):
            if t == (k + 1) % num_frames and num_frames > 1:
                continue
            y0, x0 = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
            y1, x1 = int(rng.integers(y0 + 2, height + 1)), int(rng.integers(x0 + 2, width + 1))
            masks[k, t, y0:y1, x0:x1] = True
    scores = rng.uniform(0.1, 0.9, num_tracks)
    tracks = [Track.from_masks(k + 1, k, f"cat{k}", k + 1, float(scores[k]), masks[k]) for k in range(num_tracks)]
    result = VideoResult(
        video_name="synthetic",
        video_path="synthetic.mp4",
        video_id=1,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=10.0,
        frame_indices=list(frame_indices) if frame_indices is not None else list(range(num_frames)),
        tracks=tracks,
        categories=[{"id": k + 1, "name": f"cat{k}"} for k in range(num_tracks)],
        model_id="test",
        metadata={"seed": seed},
    )
    return result, masks


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., np.ndarray]:
    """Factory ``make_video(path, num_frames=10, height=48, width=64, fps=10.0, codec=None)``.

    ``path`` may be relative (then inside the test's tmp_path). Returns the frames written.
    """

    def make(
        path: str | Path,
        num_frames: int = 10,
        height: int = 48,
        width: int = 64,
        fps: float = 10.0,
        codec: str | None = None,
    ) -> np.ndarray:
        return write_video(tmp_path / path, num_frames, height, width, fps, codec)

    return make


@pytest.fixture
def make_frame_folder(tmp_path: Path) -> Callable[..., np.ndarray]:
    """Factory ``make_frame_folder(folder, num_frames=6, height=48, width=64, ext="png", names=None)``."""

    def make(folder: str | Path, *args: object, **kwargs: object) -> np.ndarray:
        return write_frame_folder(tmp_path / folder, *args, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def make_result() -> Callable[..., tuple[VideoResult, np.ndarray]]:
    """Factory for ``random_result`` (a tiny ``VideoResult`` and its dense masks)."""
    return random_result


@pytest.fixture
def identify_frame() -> Callable[[np.ndarray], int]:
    """``identify_frame(decoded_frame) -> index % 31`` for frames written by ``make_video``."""
    return identify


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic training videos of moving shapes (tests/train/synthetic.py) and a tiny CLIP, written once."""
    return write_shapes_task(tmp_path_factory.mktemp("shapes"))

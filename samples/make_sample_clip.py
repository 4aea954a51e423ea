"""Generate samples/clip.mp4: 3 s of coloured shapes moving over a textured background.

Deterministic (fixed seed, single-threaded encoder), 320x240 at 20 fps, H.264 (libx264; mpeg4 if the
installed PyAV lacks it), well under 300 KB. Run from the repository root::

    python samples/make_sample_clip.py            # writes samples/clip.mp4
    python samples/make_sample_clip.py out.mp4    # somewhere else
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ovformer_core.io.atomic import atomic_path

WIDTH, HEIGHT, FPS, SECONDS, SEED = 320, 240, 20, 3, 7
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "clip.mp4"


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth texture (a few random plane waves per channel) over a faint checkerboard floor.

    Returns:
        float32 RGB ``[H, W, 3]`` in 0..255.
    """
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    for channel, base in enumerate((110.0, 125.0, 95.0)):
        layer = np.full((HEIGHT, WIDTH), base, dtype=np.float32)
        for _ in range(4):
            angle, wavelength, phase = rng.uniform(0, np.pi), rng.uniform(25, 90), rng.uniform(0, 2 * np.pi)
            projection = xs * np.cos(angle) + ys * np.sin(angle)
            layer += 12.0 * np.sin(2 * np.pi * projection / wavelength + phase)
        image[..., channel] = layer
    floor = ys > HEIGHT * 0.6
    checker = ((xs // 32 + ys // 16) % 2 == 0) & floor
    image[checker] *= 0.8
    return image


def draw_frame(base: np.ndarray, t: float) -> np.ndarray:
    """Frame at time ``t`` seconds: a red disc, a blue square and a yellow triangle moving.

    Returns:
        uint8 RGB ``[H, W, 3]``.
    """
    frame = base.copy()
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    # Red disc rolling left to right along the floor.
    cx, cy, radius = 30 + 260 * t / SECONDS, 185.0, 26.0
    frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = (220, 40, 40)
    # Blue square bouncing up and down on the left.
    top = 40 + 70 * abs(np.sin(np.pi * t / 1.5))
    frame[(xs >= 60) & (xs < 110) & (ys >= top) & (ys < top + 50)] = (40, 70, 210)
    # Yellow triangle sliding right to left in the upper half.
    apex_x, apex_y, size = 280 - 180 * t / SECONDS, 30.0, 60.0
    inside = (ys >= apex_y) & (ys <= apex_y + size) & (np.abs(xs - apex_x) <= (ys - apex_y) * 0.6)
    frame[inside] = (235, 210, 50)
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_clip(path: Path) -> None:
    """Encode the clip to ``path`` (atomically)."""
    rng = np.random.default_rng(SEED)
    base = background(rng)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "libx264":
            # One thread: x264's output is then byte-for-byte reproducible.
            stream.options = {"crf": "26", "preset": "medium", "threads": "1"}
        else:
            stream.bit_rate = 400_000
        for index in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(draw_frame(base, index / FPS), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    write_clip(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.1f} KB)")


if __name__ == "__main__":
    main()

"""Input/output speed: decoding (plain vs background prefetch, FFmpeg thread types), RLE encoding,
overlay and PNG writing.

Prints figures and ratios; asserts nothing. Run from the repository root::

    python benchmarks/bench_io.py [--width 640 --height 360 --frames 120] [--video my_clip.mp4]

"Compute" is simulated with a NumPy workload of a fixed duration per window, so the prefetch ratio
shows how much decoding is hidden behind it (ideal: total time = compute time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ovformer_core.io.decode_report import ReadLog
from ovformer_core.io.overlay import write_overlay
from ovformer_core.io.png_masks import write_png_masks
from ovformer_core.io.results import Track, VideoResult
from ovformer_core.io.rle import decode_rle, encode_rles
from ovformer_core.io.video import open_source
from ovformer_core.io.video_stream import decode_stream, probe_stream

#: FFmpeg decoder threading modes compared by ``bench_thread_types``.
THREAD_TYPES = ("AUTO", "FRAME", "SLICE", "NONE")


def make_clip(path: Path, num_frames: int, height: int, width: int) -> None:
    """A moving-gradient H.264 clip (content that costs a realistic amount to decode)."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(num_frames):
            frame = np.roll(texture, 4 * t, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def busy(seconds: float) -> None:
    """Hold the CPU (and the GIL, in bursts) for about ``seconds``, like model compute would."""
    end = time.perf_counter() + seconds
    a = np.ones((128, 128), dtype=np.float32)
    while time.perf_counter() < end:
        a = (a @ a) * 1e-3


def bench_decode(path: Path, window: int, compute_s: float) -> None:
    source = open_source(path)
    start = time.perf_counter()
    n = sum(w.num_frames for w in source.iter_windows(window))
    decode_only = time.perf_counter() - start
    print(f"decode only: {n} frames in {decode_only:.2f} s = {n / decode_only:.0f} frames/s")
    for prefetch in (0, 2):
        start = time.perf_counter()
        num_windows = 0
        for _ in source.iter_windows(window, prefetch=prefetch):
            busy(compute_s)
            num_windows += 1
        total = time.perf_counter() - start
        compute = num_windows * compute_s
        print(
            f"decode + {compute_s * 1000:.0f} ms compute per window, prefetch={prefetch}: {total:.2f} s "
            f"(compute alone {compute:.2f} s, overhead {total / compute:.2f}x)"
        )


def bench_thread_types(path: Path, rounds: int = 4) -> None:
    """Decode + RGB conversion speed per thread type, interleaved A/B/A/B (order reversed every other
    round) so that load from other processes hits every mode alike; prints the median."""
    facts = probe_stream(path)
    rates: dict[str, list[float]] = {mode: [] for mode in THREAD_TYPES}
    for round_index in range(rounds):
        for mode in THREAD_TYPES if round_index % 2 == 0 else THREAD_TYPES[::-1]:
            log = ReadLog(frames_declared=None, declared_exact=False, duration_declared=None)
            start = time.perf_counter()
            count = sum(
                1 for _, _, to_rgb in decode_stream(path, facts, 0.0, log, threads=mode) if to_rgb() is not None
            )
            rates[mode].append(count / (time.perf_counter() - start))
    print(
        f"thread types on {path.name}: " + ", ".join(f"{m} {np.median(r):.0f}" for m, r in rates.items()) + " frames/s"
    )


def bench_rle(height: int, width: int, num_masks: int) -> None:
    rng = np.random.default_rng(1)
    masks = np.zeros((num_masks, height, width), dtype=bool)
    for m in masks:
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        m[y : y + height // 3, x : x + width // 3] = True
    start = time.perf_counter()
    rles = encode_rles(masks)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for rle in rles:
        decode_rle(rle)
    decode_s = time.perf_counter() - start
    print(f"RLE {width}x{height}: encode {num_masks / encode_s:.0f} masks/s, decode {num_masks / decode_s:.0f} masks/s")


def bench_writers(path: Path, folder: Path, num_frames: int, height: int, width: int, num_tracks: int) -> None:
    rng = np.random.default_rng(2)
    tracks = []
    for k in range(num_tracks):
        masks = np.zeros((num_frames, height, width), dtype=bool)
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        masks[:, y : y + height // 3, x : x + width // 4] = True
        tracks.append(Track.from_masks(k + 1, k, f"thing{k}", k + 1, float(rng.uniform(0.2, 0.9)), masks))
    result = VideoResult(
        video_name="bench",
        video_path=str(path),
        video_id=1,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=25.0,
        frame_indices=list(range(num_frames)),
        tracks=tracks,
        categories=[{"id": k + 1, "name": f"thing{k}"} for k in range(num_tracks)],
    )
    start = time.perf_counter()
    report = write_overlay(folder / "overlay.mp4", open_source(path).iter_frames(), result)
    overlay_s = time.perf_counter() - start
    print(
        f"overlay ({report.codec}, {num_tracks} tracks): {num_frames / overlay_s:.1f} frames/s "
        f"(decode + draw + encode), {report.path.stat().st_size / 1024:.0f} KB"
    )
    start = time.perf_counter()
    write_png_masks(folder / "masks", result)
    png_s = time.perf_counter() - start
    print(f"PNG id masks ({num_tracks} tracks): {num_frames / png_s:.1f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--compute-ms", type=float, default=40.0)
    parser.add_argument("--video", type=Path, action="append", default=[], help="also compare thread types on it")
    args = parser.parse_args()
    print(f"PyAV {av.__version__}; {args.width}x{args.height}, {args.frames} frames")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "bench.mp4"
        make_clip(clip, args.frames, args.height, args.width)
        bench_decode(clip, args.window, args.compute_ms / 1000)
        for video in [clip, *args.video]:
            bench_thread_types(video)
        bench_rle(args.height, args.width, 500)
        bench_writers(clip, Path(tmp), args.frames, args.height, args.width, num_tracks=5)


if __name__ == "__main__":
    main()

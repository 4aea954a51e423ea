"""Responsiveness of ``ovformer view`` on a large result, measured in a real browser.

A synthetic 2,000-frame 640x360 H.264 video with 50 tracks (moving ellipses that appear and disappear,
fixed seed) is written once into a cache folder, served with ``ovformer view`` and driven with headless
Chromium (Selenium). Reported:

- index: from opening ``/`` to the table listing the result (the server parses the result file here);
- page load: from navigation to the first frame drawn with its masks (cold: first visit, warm: again);
- frame step: from the ← / → key to the new frame drawn (frame decoded on the server, sent as JPEG,
  masks decoded from RLE and drawn in the page): forward, backward, and jumps to random frames;
- playback: frames drawn per second while playing, against the video's rate;
- the size of one 64-frame mask request.

Run: ``python benchmarks/bench_view.py [--frames 2000] [--tracks 50] [--steps 200] [--cache DIR]``
(needs the ``view`` and ``test`` extras, and Debian's chromium + chromium-driver).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ovformer_core.io.results import Track, VideoResult, write_result_json  # noqa: E402
from ovformer_core.io.rle import encode_rles  # noqa: E402

FPS = 25
CHUNK = 100  # frames of masks generated at once


def write_video(path: Path, num_frames: int, height: int, width: int) -> None:
    """A moving gradient with a frame counter bar, H.264 (default GOP), ``FPS`` frames per second."""
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(num_frames):
            phase = t / num_frames
            frame = np.empty((height, width, 3), dtype=np.uint8)
            frame[..., 0] = (40 + 150 * ((rows + phase) % 1)).astype(np.uint8)
            frame[..., 1] = (40 + 150 * ((cols + 2 * phase) % 1)).astype(np.uint8)
            frame[..., 2] = 110
            frame[: height // 30, : int(width * (t + 1) / num_frames)] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def synthetic_result(video: Path, num_frames: int, num_tracks: int, height: int, width: int) -> VideoResult:
    """``num_tracks`` moving ellipses, each present over a random span of frames (fixed seed)."""
    rng = np.random.default_rng(0)
    names = ["person", "car", "dog", "bicycle", "bird", "horse", "boat", "truck"]
    ys = np.arange(height, dtype=np.float32)[None, :, None]
    xs = np.arange(width, dtype=np.float32)[None, None, :]
    tracks = []
    for n in range(num_tracks):
        first = int(rng.integers(0, num_frames - 100))
        last = int(min(num_frames - 1, first + rng.integers(100, 1500)))
        radius = rng.uniform(12, 60, size=2).astype(np.float32)
        start, velocity = rng.uniform(0.1, 0.9, size=2), rng.uniform(-0.3, 0.3, size=2)
        segmentations = []
        for c0 in range(0, num_frames, CHUNK):
            t = np.arange(c0, min(num_frames, c0 + CHUNK), dtype=np.float32)
            centre = (start[:, None] + velocity[:, None] * t[None, :] / num_frames) % 1.0
            cy = (centre[0] * height)[:, None, None]
            cx = (centre[1] * width)[:, None, None]
            masks = ((ys - cy) / radius[0]) ** 2 + ((xs - cx) / radius[1]) ** 2 <= 1.0
            masks[(t < first) | (t > last)] = False
            rles = encode_rles(masks)
            segmentations.extend(rle if masks[i].any() else None for i, rle in enumerate(rles))
        label = int(rng.integers(0, len(names)))
        tracks.append(Track(n + 1, label, names[label], label + 1, float(rng.uniform(0.05, 0.99)), segmentations))
    return VideoResult(
        video_name="long",
        video_path=str(video),
        video_id=1,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=float(FPS),
        frame_indices=list(range(num_frames)),
        tracks=sorted(tracks, key=lambda track: -track.score),
        categories=[{"id": i + 1, "name": name} for i, name in enumerate(names)],
        model_id="synthetic",
    )


def prepare(cache: Path, num_frames: int, num_tracks: int, height: int, width: int) -> Path:
    folder = cache / f"view-{num_frames}f-{num_tracks}t-{width}x{height}"
    if (folder / "long.json").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    write_video(folder / "long.mp4", num_frames, height, width)
    result = synthetic_result(folder / "long.mp4", num_frames, num_tracks, height, width)
    write_result_json(folder / "long.json", result)
    size = (folder / "long.json").stat().st_size / 1e6
    print(f"wrote {folder} in {time.perf_counter() - started:.0f} s (result {size:.1f} MB)")
    return folder


def start_viewer(folder: Path) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ovformer_cli", "view", str(folder), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    with urllib.request.urlopen(url) as response:
        found = re.search(r'name="ovformer-token" content="([^"]+)"', response.read().decode())
    assert found, "no token in the page"
    return process, url, found[1]


def browser(chromium: str, chromedriver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(chromedriver))


def wait(driver, script: str, timeout: float = 300.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.01).until(lambda d: d.execute_script(script))


STEP = """
const [key, shift, done] = arguments;
const started = performance.now();
document.addEventListener("frame-drawn", () => done(performance.now() - started), { once: true });
document.dispatchEvent(new KeyboardEvent("keydown", { key, shiftKey: shift, bubbles: true }));
"""
JUMP = """
const [position, done] = arguments;
const started = performance.now();
window.viewer.show(position).then(() => done(performance.now() - started));
"""


def summary(name: str, values: list[float]) -> None:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(
        f"{name:<28} median {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {max(values):7.1f} ms   ({len(values)} steps)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--tracks", type=int, default=50)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--steps", type=int, default=200, help="forward steps (half as many back, 30 jumps)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ovformer-bench"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = parser.parse_args()

    folder = prepare(args.cache, args.frames, args.tracks, args.height, args.width)
    process, url, token = start_viewer(folder)
    driver = browser(args.chromium, args.chromedriver)
    try:
        started = time.perf_counter()
        driver.get(url)
        wait(driver, "return document.querySelectorAll('#results tbody a').length === 1")
        print(f"{'index (parses the result)':<28} {1000 * (time.perf_counter() - started):7.0f} ms")
        result_url = driver.find_element("css selector", "#results tbody a").get_attribute("href")
        for visit in ("cold", "warm"):
            driver.get(result_url)
            wait(driver, "return window.viewer && window.viewer.firstDrawnAt !== null")
            loaded = driver.execute_script("return window.viewer.firstDrawnAt")
            print(f"{'page load, ' + visit:<28} {loaded:7.0f} ms  (navigation to first frame drawn)")
        with urllib.request.urlopen(
            urllib.request.Request(
                result_url.replace("/result/", "/api/results/") + "/masks?start=0&stop=64",
                headers={"X-OVFormer-Token": token},
            )
        ) as response:
            print(f"{'64-frame mask request':<28} {len(response.read()) / 1024:7.0f} KiB")
        driver.set_script_timeout(60)
        forward = [driver.execute_async_script(STEP, "ArrowRight", False) for _ in range(args.steps)]
        backward = [driver.execute_async_script(STEP, "ArrowLeft", False) for _ in range(args.steps // 2)]
        rng = np.random.default_rng(1)
        jumps = [driver.execute_async_script(JUMP, int(p)) for p in rng.integers(0, args.frames, size=30)]
        summary("step forward (→)", forward)
        summary("step back (←)", backward)
        summary("jump to a random frame", jumps)
        driver.execute_script("window.viewer.show(0)")
        wait(driver, "return window.viewer.drawnPos === 0")
        before = driver.execute_script("return window.viewer.drawCount")
        driver.execute_script("document.getElementById('play').click()")
        time.sleep(5.0)
        driver.execute_script("document.getElementById('play').click()")
        drawn = driver.execute_script("return window.viewer.drawCount") - before
        print(f"{'playback':<28} {drawn / 5.0:7.1f} frames/s drawn (video: {FPS} frames/s)")
        print(json.dumps({"frames": args.frames, "tracks": args.tracks, "size": [args.width, args.height]}))
    finally:
        driver.quit()
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()

"""Fixtures of the viewer tests: a folder of results with known masks, real servers, a real browser.

The servers are ``python -m ovformer_cli view`` processes (the command a user runs), the browser is
Debian's Chromium driven by Selenium through Debian's chromedriver. Where no browser is installed the
browser tests are skipped with the reason; ``.ci/run`` installs one.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

from ovformer_core.io.results import Track, VideoResult, write_result_json
from ovformer_core.view.access import new_token
from ovformer_core.view.app import ViewerSettings, create_app
from ovformer_core.view.server import bind, url_of
from tests.cli.conftest import weights  # noqa: F401  (the tiny model for runs from the page)
from tests.conftest import write_video

#: Frames, height and width of the synthetic clip.
NUM_FRAMES, HEIGHT, WIDTH = 10, 120, 160
#: Rectangles ``(first frame, last frame, y0, y1, x0, x1)`` of the known tracks (ends exclusive in y/x).
BOXES = {
    1: (0, 5, 30, 110, 4, 36),  # person, in the flat grey strip on the left
    2: (3, 9, 70, 115, 90, 150),  # dog, smooth gradient bottom right
    3: (0, 9, 2, 24, 120, 158),  # car, low score
    4: (6, 9, 60, 100, 50, 80),  # dog again: the same object split by the tracker
}
NAMES = {1: ("person", 0, 0.9), 2: ("dog", 1, 0.8), 3: ("car", 2, 0.2), 4: ("dog", 1, 0.6)}
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "car"}]
SERVER_START_SECONDS = 60


def box_masks(track_id: int) -> np.ndarray:
    """bool ``[T, H, W]`` masks of a known track."""
    first, last, y0, y1, x0, x1 = BOXES[track_id]
    masks = np.zeros((NUM_FRAMES, HEIGHT, WIDTH), dtype=bool)
    masks[first : last + 1, y0:y1, x0:x1] = True
    return masks


def known_result(video_path: str, name: str, track_ids: tuple[int, ...]) -> VideoResult:
    tracks = [
        Track.from_masks(t, NAMES[t][1], NAMES[t][0], NAMES[t][1] + 1, NAMES[t][2], box_masks(t), empty_as_none=True)
        for t in track_ids
    ]
    return VideoResult(
        video_name=name,
        video_path=video_path,
        video_id=1,
        width=WIDTH,
        height=HEIGHT,
        num_frames=NUM_FRAMES,
        fps=10.0,
        frame_indices=list(range(NUM_FRAMES)),
        tracks=tracks,
        categories=CATEGORIES,
        model_id="synthetic",
    )


@dataclass
class Served:
    """A results folder: ``clip.json`` (4 known tracks over ``clip.mp4``) and ``other.json`` (its video moved)."""

    folder: Path
    frames: np.ndarray  # uint8 [T, H, W, 3], exactly what clip.mp4 decodes to


def make_served(folder: Path) -> Served:
    folder.mkdir(parents=True, exist_ok=True)
    frames = write_video(folder / "clip.mp4", NUM_FRAMES, HEIGHT, WIDTH, codec="libx264rgb")
    write_result_json(folder / "clip.json", known_result(str(folder / "clip.mp4"), "clip", (1, 2, 3, 4)))
    write_result_json(folder / "other.json", known_result(str(folder / "gone" / "other.mp4"), "other", (1, 2)))
    (folder / "notes.json").write_text('{"not": "a result"}')
    return Served(folder, frames)


@dataclass
class Server:
    """A running viewer: its URL (as printed), token, and either its process or its thread."""

    url: str
    token: str
    process: subprocess.Popen[str] | None = None
    uvicorn_server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    def request(
        self,
        path: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of one request (errors included)."""
        sent = dict(headers or {})
        if token:
            sent.setdefault("X-OVFormer-Token", self.token)
        parts = urllib.parse.urlsplit(self.url)
        req = urllib.request.Request(f"{parts.scheme}://{parts.netloc}{path}", data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def json(
        self, path: str, method: str = "GET", payload: object = None, headers: dict[str, str] | None = None, **kwargs
    ) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        sent = {"Content-Type": "application/json"} if payload is not None else {}
        status, _, data = self.request(path, method, body, {**sent, **(headers or {})}, **kwargs)
        return status, json.loads(data)


def _read_line(stream, timeout: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            return stream.readline()
    return ""


def start_server(folder: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start ``ovformer view FOLDER ARGS --port 0`` and wait for its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ovformer_cli", "view", str(folder), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    line = _read_line(process.stdout, SERVER_START_SECONDS).strip()
    if not line.startswith("http://"):
        process.kill()
        raise AssertionError(f"ovformer view printed no URL: {line!r} {process.stderr.read()}")
    token = ""
    if "token=" in line:
        token = line.split("token=", 1)[1]
    else:
        with urllib.request.urlopen(line, timeout=30) as response:
            page = response.read().decode()
        found = re.search(r'name="ovformer-token" content="([^"]+)"', page)
        assert found, "the page carries no token"
        token = found[1]
    return Server(line, token, process)


def serve_in_thread(folder: Path, **options: Any) -> Server:
    """The viewer app of ``folder`` served by uvicorn on a thread of the test process (fast to start)."""
    settings = ViewerSettings(folder=folder, token=new_token(), **options)
    sock = bind(settings.host, 0)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the viewer did not start"
    url = url_of(settings, sock.getsockname()[1], app.state.viewer.start_path())
    return Server(url, settings.token, uvicorn_server=server, thread=thread)


def stop_server(server: Server) -> str:
    """Stop a server as Ctrl-C does; returns what it wrote on stderr (a process) or ""."""
    if server.process is None:
        assert server.uvicorn_server is not None and server.thread is not None
        server.uvicorn_server.should_exit = True
        server.thread.join(20)
        return ""
    server.process.send_signal(2)
    try:
        _, stderr = server.process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        _, stderr = server.process.communicate()
    return stderr


@pytest.fixture
def served(tmp_path: Path) -> Served:
    return make_served(tmp_path / "results")


def _servers(home: Path) -> Iterator[tuple[Callable[..., Server], Callable[..., Server]]]:
    started: list[Server] = []

    def command(folder: Path, *args: str) -> Server:
        server = start_server(folder, *args, env={"OVFORMER_HOME": str(home), "OVFORMER_OFFLINE": "1"})
        started.append(server)
        return server

    def in_thread(folder: Path, **options: Any) -> Server:
        server = serve_in_thread(folder, **options)
        started.append(server)
        return server

    yield command, in_thread
    for server in started:
        if server.process is None or server.process.poll() is None:
            stop_server(server)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")


@pytest.fixture
def command_for(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``ovformer view FOLDER ARGS`` processes on demand; all are stopped after the test."""
    for command, _ in _servers(tmp_path / "home"):
        yield command


@pytest.fixture
def server_for(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start in-process viewers (``ViewerSettings`` keywords) on demand; all are stopped after the test."""
    for _, in_thread in _servers(tmp_path / "home"):
        yield in_thread


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Server]]:
    """One results folder and its viewer for the tests of a module that only read (they write nothing)."""
    folder = tmp_path_factory.mktemp("shared")
    served = make_served(folder / "results")
    for _, in_thread in _servers(folder / "home"):
        yield served, in_thread(served.folder)


def find_browser() -> tuple[str, str] | None:
    """Paths of Chromium and its chromedriver, or None."""
    chromium = os.environ.get("OVFORMER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("OVFORMER_CHROMEDRIVER") or shutil.which("chromedriver")
    if driver is None and os.path.exists("/usr/bin/chromedriver"):
        driver = "/usr/bin/chromedriver"
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by Selenium (skipped where none is installed)."""
    found = find_browser()
    if found is None:
        pytest.skip("no Chromium + chromedriver here: install Debian's chromium and chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e .[test]")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()

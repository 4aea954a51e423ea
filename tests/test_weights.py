"""Weight-file resolution: explicit path, cache, verified download from a loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovformer_core.errors import DownloadError, WeightsNotFoundError
from ovformer_core.weights import WeightFile, fingerprint, ovformer_home, resolve, resolve_all

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: several chunks, so streaming and progress are exercised


class _Server:
    """A loopback HTTP server serving ``PAYLOAD`` at /w.pt; counts requests."""

    def __init__(self) -> None:
        server = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests += 1
                if self.path in ("/page", "/page-as-binary"):  # what Google Drive sends when over quota
                    body = b"\n<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>"
                    self.send_response(200)
                    kind = "text/html; charset=utf-8" if self.path == "/page" else "application/octet-stream"
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path != "/w.pt":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    monkeypatch.delenv("OVFORMER_HOME", raising=False)


def _weight(url: str, sha256: str | None = hashlib.sha256(PAYLOAD).hexdigest(), size: int | None = None) -> WeightFile:
    return WeightFile(name="Test weights", filename="w.pt", url=url, sha256=sha256, size=size)


def test_download_verifies_and_caches(server: _Server, tmp_path: Path) -> None:
    weight = _weight(f"{server.url}/w.pt", size=len(PAYLOAD))
    path = resolve(weight, home=tmp_path, progress=True)
    assert path == tmp_path / "w.pt" and path.read_bytes() == PAYLOAD
    assert os.listdir(tmp_path) == ["w.pt"]  # no temporary file left
    assert resolve(weight, home=tmp_path) == path
    assert server.requests == 1  # the second call used the cache


def test_home_from_environment(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    assert ovformer_home() == tmp_path / "home"
    assert resolve(_weight(f"{server.url}/w.pt"), progress=False) == tmp_path / "home" / "w.pt"


def test_checksum_mismatch_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    weight = _weight(f"{server.url}/w.pt", sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256") as info:
        resolve(weight, home=tmp_path, progress=False)
    assert "\n" not in str(info.value) and str(tmp_path / "w.pt") in str(info.value)
    assert os.listdir(tmp_path) == []


def test_size_mismatch_and_http_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="bytes"):
        resolve(_weight(f"{server.url}/w.pt", sha256=None, size=7), home=tmp_path, progress=False)
    with pytest.raises(DownloadError, match="Not Found"):
        resolve(_weight(f"{server.url}/missing.pt"), home=tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", ["/page", "/page-as-binary"])
def test_a_web_page_is_not_cached_as_weights(server: _Server, tmp_path: Path, path: str) -> None:
    """Unpublished checksums (the official releases) cannot catch it: the page itself is refused."""
    with pytest.raises(DownloadError) as info:
        resolve(_weight(f"{server.url}{path}", sha256=None), home=tmp_path, progress=False)
    message = str(info.value)
    assert "sent a web page, not the Test weights" in message and "\n" not in message
    assert str(tmp_path / "w.pt") in message  # where to save it by hand
    assert os.listdir(tmp_path) == []


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    weight = _weight(f"http://127.0.0.1:{port}/w.pt")
    with pytest.raises(DownloadError) as info:
        resolve(weight, home=tmp_path, progress=False, parameter="clip_weights")
    message = str(info.value)
    assert "\n" not in message and "refused" in message.lower()
    assert weight.url in message and str(tmp_path / "w.pt") in message and "`clip_weights`" in message
    assert os.listdir(tmp_path) == []


def test_every_failed_download_is_named_in_one_error(tmp_path: Path) -> None:
    """Without network, one run names every file to fetch by hand, not one file a run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = WeightFile(name="Model", filename="m.pt", url=f"http://127.0.0.1:{port}/m.pt", sha256=None)
    clip = WeightFile(name="CLIP", filename="c.pt", url=f"http://127.0.0.1:{port}/c.pt", sha256=None)
    with pytest.raises(DownloadError) as info:
        resolve_all([(model, None, "weights"), (clip, None, "clip_weights")], home=tmp_path, progress=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("2 weight files are missing: ")
    assert model.url in message and clip.url in message and "`clip_weights`" in message
    assert os.listdir(tmp_path) == []


def test_offline_never_touches_the_network(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    weight = _weight(f"{server.url}/w.pt")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve(weight, home=tmp_path, parameter="clip_weights")
    message = str(info.value)
    assert "\n" not in message and "OVFORMER_OFFLINE" in message
    assert weight.url in message and str(tmp_path / "w.pt") in message and "`clip_weights`" in message
    monkeypatch.delenv("OVFORMER_OFFLINE")
    with pytest.raises(WeightsNotFoundError, match="disabled"):
        resolve(weight, home=tmp_path, allow_download=False)
    assert server.requests == 0
    # A file put where the message says is then found without the network.
    (tmp_path / "w.pt").write_bytes(PAYLOAD)
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    assert resolve(weight, home=tmp_path) == tmp_path / "w.pt"


def test_explicit_path_wins(server: _Server, tmp_path: Path) -> None:
    mine = tmp_path / "my.pt"
    mine.write_bytes(b"weights")
    weight = _weight(f"{server.url}/w.pt")
    assert resolve(weight, explicit_path=mine, home=tmp_path / "cache") == mine
    with pytest.raises(WeightsNotFoundError, match="`clip_weights`") as info:
        resolve(weight, explicit_path=tmp_path / "nope.pt", home=tmp_path / "cache", parameter="clip_weights")
    assert str(tmp_path / "nope.pt") in str(info.value)
    assert server.requests == 0 and not (tmp_path / "cache").exists()


def test_fingerprint(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(PAYLOAD * 3)
    same = tmp_path / "same.bin"
    same.write_bytes(PAYLOAD * 3)
    assert fingerprint(big) == fingerprint(same) and len(fingerprint(big)) == 16
    changed = bytearray(PAYLOAD * 3)
    changed[-1] ^= 1  # the last byte lies in the hashed tail
    same.write_bytes(bytes(changed))
    assert fingerprint(big) != fingerprint(same)

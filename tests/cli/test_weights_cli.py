"""``ovformer weights list | download`` against a loopback HTTP server the test starts (no internet)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ovformer_core.predictor as predictor_module
from ovformer_cli.app import app
from ovformer_core.weights import WeightFile
from tests.test_weights import PAYLOAD, _Server

runner = CliRunner()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture
def catalogue(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[WeightFile, WeightFile]:
    """Two files served on loopback (one with a published sha256, one without) in an empty cache."""
    files = (
        WeightFile("Model weights", "w.pt", f"{server.url}/w.pt", sha256=hashlib.sha256(PAYLOAD).hexdigest()),
        WeightFile("CLIP weights", "clip.pt", f"{server.url}/w.pt"),
    )
    monkeypatch.setattr(predictor_module, "weight_files", lambda: files)
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    return files


def test_download_fetches_every_missing_file_then_list_shows_them_cached(
    catalogue: tuple[WeightFile, WeightFile], server: _Server, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    listed = runner.invoke(app, ["weights", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"Model weights: {cache / 'w.pt'} (missing; sha256 published)" in listed.stdout
    assert f"from {catalogue[0].url}" in listed.stdout

    done = runner.invoke(app, ["weights", "download", "-q"])
    assert done.exit_code == 0, done.output
    assert (cache / "w.pt").read_bytes() == PAYLOAD and (cache / "clip.pt").read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["clip.pt", "w.pt"]  # no partial file left
    assert server.requests == 2

    again = runner.invoke(app, ["weights", "download"])
    assert again.exit_code == 0 and server.requests == 2  # nothing fetched twice
    assert f"cached {cache / 'w.pt'}" in again.stdout
    listed = runner.invoke(app, ["weights", "list"])
    assert f"Model weights: {cache / 'w.pt'} (cached, 1.2 MiB; sha256 published)" in listed.stdout


def test_a_wrong_checksum_is_one_line_and_leaves_nothing(
    catalogue: tuple[WeightFile, WeightFile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = WeightFile("Model weights", "w.pt", catalogue[0].url, sha256="0" * 64)
    monkeypatch.setattr(predictor_module, "weight_files", lambda: (bad,))
    done = runner.invoke(app, ["weights", "download", "-q"])
    assert done.exit_code == 2
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: downloaded Model weights weights have sha256")
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_offline_refuses_to_download(
    catalogue: tuple[WeightFile, WeightFile], server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    done = runner.invoke(app, ["weights", "download"])
    assert done.exit_code == 2 and server.requests == 0
    assert done.output.strip() == "error: OVFORMER_OFFLINE=1 forbids downloads; unset it to download the weight files"

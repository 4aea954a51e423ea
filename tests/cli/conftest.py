"""Fixtures shared by the CLI tests: tiny real-layout weights and an isolated, offline cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovformer_core.checkpoints import load_weights, save_checkpoint
from ovformer_core.model.build import build_model
from tests.clip_fixtures import save_safetensors, tiny_clip
from tests.reference_fixtures import VIDEO_TINY, tiny_config


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The official tiny weights re-saved in our format (config included) and a tiny CLIP."""
    folder = tmp_path_factory.mktemp("weights")
    cfg = tiny_config(video=True)
    model = build_model(cfg)
    loaded = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    save_checkpoint(folder / "tiny.pt", model, cfg, loaded.text_classifier)
    return {"model": folder / "tiny.pt", "clip": save_safetensors(tiny_clip(), folder / "clip.safetensors")}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")

"""Training-test helpers: a tiny training config over the ``shapes`` data (fixture in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from ovformer_core.config import ModelConfig
from ovformer_core.inference.precision import Precision
from ovformer_core.model.clip import ClipFrameEncoder, ClipTextEncoderFactory, load_clip
from ovformer_core.train.evaluation import evaluate_split


def tiny_train_overrides(shapes: dict[str, Path], output_dir: Path, **run: Any) -> dict[str, Any]:
    """A training config (as JSON overrides of the r50-lvvis recipe) small enough for CPU tests."""
    overrides: dict[str, Any] = {
        "recipe": "r50-lvvis",
        "model": {
            "backbone": {
                "kind": "swin",
                "swin": {"embed_dim": 32, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8], "window_size": 7},
            },
            "pixel_decoder": {"conv_dim": 64, "mask_dim": 64, "num_encoder_layers": 2},
            "decoder": {"num_layers": 3, "num_queries": 10, "ffn_dim": 256},
            "inference": {"min_size_test": 64},
            "num_classes": 3,
        },
        "loss": {"num_points": 256},
        "optim": {"lr": 1e-3, "max_iter": 6, "steps": [1000], "warmup_iters": 0},
        "data": {
            "train_json": str(shapes["json"]),
            "train_root": str(shapes["root"]),
            "num_workers": 0,
            "video_augment": {"min_sizes": [64], "max_size": 1333},
        },
        "run": {
            "output_dir": str(output_dir),
            "batch_size": 2,
            "micro_batch_size": 1,
            "checkpoint_period": 2,
            "log_period": 1,
            "init_weights": "",
            "clip_weights": str(shapes["clip"]),
            "device": "cpu",
            **run,
        },
    }
    return overrides


def evaluate_on_shapes(
    model: nn.Module, model_cfg: ModelConfig, shapes: dict[str, Path], out_dir: Path, precision: Precision = "auto"
) -> dict[str, float]:
    """``evaluate_split`` of ``model`` on the shapes videos (YouTube-VIS metrics), with the task's tiny CLIP."""
    clip = load_clip(shapes["clip"])
    stats = evaluate_split(
        model,
        model_cfg,
        ClipFrameEncoder.from_clip(clip),
        ClipTextEncoderFactory(shapes["clip"], preloaded=clip),
        shapes["json"],
        shapes["root"],
        "ytvis",
        out_dir,
        precision=precision,
    )
    assert stats is not None  # one process: rank 0
    return stats


def write_config(path: Path, overrides: dict[str, Any]) -> Path:
    path.write_text(json.dumps(overrides))
    return path


@pytest.fixture(autouse=True)
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")

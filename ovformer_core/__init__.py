"""ovformer: open-vocabulary video instance segmentation (OVFormer, ECCV 2024) without detectron2.

Public API (imported on first use, so ``import ovformer_core`` stays light)::

    from ovformer_core import load_model, evaluate
    predictor = load_model("r50-lvvis")
    result = predictor.segment("clip.mp4", vocabulary=["person", "dog"])

    # many inputs -> NAME.json (+ formats) each, as ``ovformer segment`` writes them
    from ovformer_core import BatchOptions, segment_batch
    summary = segment_batch(["a.mp4", "b.mp4"], "person,dog", load_model, BatchOptions("out", formats=("coco",)))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ovformer_core.errors import OVFormerError

if TYPE_CHECKING:  # what the lazy table hands out, for type checkers and editors
    from ovformer_core.batch import BatchOptions, segment_batch
    from ovformer_core.checkpoints import load_weights
    from ovformer_core.eval import evaluate
    from ovformer_core.io.results import Track, VideoResult
    from ovformer_core.model.build import build_model
    from ovformer_core.predictor import Predictor, load_model
    from ovformer_core.vocab import Vocabulary

#: The one source of the version: pyproject.toml reads it (``[tool.setuptools.dynamic]``).
__version__ = "0.1.0"

_LAZY = {
    "load_model": "ovformer_core.predictor",
    "Predictor": "ovformer_core.predictor",
    "VideoResult": "ovformer_core.io.results",
    "Track": "ovformer_core.io.results",
    "Vocabulary": "ovformer_core.vocab",
    "evaluate": "ovformer_core.eval",
    "build_model": "ovformer_core.model.build",
    "load_weights": "ovformer_core.checkpoints",
    "segment_batch": "ovformer_core.batch",
    "BatchOptions": "ovformer_core.batch",
}

__all__ = [
    "BatchOptions",
    "OVFormerError",
    "Predictor",
    "Track",
    "VideoResult",
    "Vocabulary",
    "__version__",
    "build_model",
    "evaluate",
    "load_model",
    "load_weights",
    "segment_batch",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ovformer_core' has no attribute {name!r}")

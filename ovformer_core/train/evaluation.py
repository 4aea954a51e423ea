"""Periodic evaluation during training: the model being trained segments the validation split with the
project's inference path (``segment_split``) and the project's evaluator scores it."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ovformer_core.config import ModelConfig
from ovformer_core.eval.ytvis import evaluate
from ovformer_core.inference.dataset import merge_parts, read_dataset, segment_split, split_keys
from ovformer_core.inference.precision import Precision
from ovformer_core.model.clip import ClipFrameEncoder, ClipTextEncoderFactory
from ovformer_core.model.ovformer import OVFormer
from ovformer_core.predictor import Predictor, segment_options_for


def evaluate_split(
    model: nn.Module,
    model_cfg: ModelConfig,
    frame_encoder: ClipFrameEncoder,
    text_factory: ClipTextEncoderFactory,
    val_json: str | Path,
    val_root: str | Path,
    benchmark: str,
    out_dir: Path,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    precision: Precision = "auto",
) -> dict[str, float] | None:
    """Segment every validation video and evaluate; the model is put back in training mode after.

    Args:
        model: the network being trained (unwrapped from DDP).
        model_cfg: its config (decides the inference rule, e.g. semi-online for video models).
        frame_encoder: CLIP image tower (on the model's device).
        text_factory: CLIP text tower for the validation vocabulary (the split's category names).
        val_json: ground truth (YouTube-VIS format).
        val_root: folder of the validation frames.
        benchmark: ``ytvis``, ``ovis``, ``lvvis`` or ``burst``.
        out_dir: the results JSON is written here (``results.json``).
        rank, world_size: under torchrun every process segments its share of the videos
            (``segment_split``); rank 0 merges and evaluates.
        barrier: waits for every process (a no-op for one process).
        precision: the network's precision while segmenting (``SegmentOptions.precision``).

    Returns:
        The evaluator's 12 numbers by name (``AP``, ``AP50``, ...) on rank 0; None on the others.
    """
    assert isinstance(model, OVFormer)
    dataset = read_dataset(val_json)
    results = out_dir / "results.json"
    if rank == 0:
        # A results folder from an interrupted evaluation of the same iteration is stale: start clean.
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    predictor = Predictor(
        model,
        model_cfg,
        frame_encoder,
        text_factory,
        model_id="training",
        options=segment_options_for(model_cfg).updated(precision=precision),
        cache_dir=out_dir.parent / "vocab_cache",
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            segment_split(predictor, dataset, val_root, results, rank=rank, world_size=world_size)
    finally:
        model.train(was_training)
    barrier()
    if rank != 0:
        return None
    merge_parts(dataset, results, split_keys(predictor, dataset, val_root, predictor.options))
    with warnings.catch_warnings():
        # An untrained model may predict nothing: the evaluator warns and returns zeros, which is the answer.
        warnings.simplefilter("ignore")
        result = evaluate(val_json, results, benchmark=benchmark)
    return {name: float(value) for name, value in result.stats.items()}

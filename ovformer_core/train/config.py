"""Training configs: frozen dataclasses with the official recipes as presets.

A training config file is JSON: ``{"recipe": "r50-lvvis", "data": {...}, "run": {...}}``. The named
recipe supplies every default (the official values); the file overrides only what it names. Unknown
keys are rejected, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from ovformer_core.config import (
    LVIS_NUM_CLASSES,
    LVVIS_NUM_CLASSES,
    ModelConfig,
    config_from_dict,
    r50_config,
    swinb_config,
)
from ovformer_core.errors import TrainingError
from ovformer_core.io.json_input import brief, read_json
from ovformer_core.io.paths import input_path_problem
from ovformer_core.train.augment import ImageAugmentConfig, VideoAugmentConfig
from ovformer_core.train.criterion import LossConfig
from ovformer_core.train.optim import OptimConfig, lvis_image_recipe, lvvis_video_recipe


@dataclass(frozen=True)
class DataConfig:
    """Where the training data is and how clips are drawn from it.

    Attributes:
        train_json: annotation file: LVIS/COCO image json or YouTube-VIS-style video json (DATASETS.TRAIN).
        train_root: folder the json's file names are relative to.
        val_json: ground truth for periodic evaluation ("" = none).
        val_root: frame folder of the validation videos.
        val_benchmark: evaluation rules for ``val_json`` (``ovformer evaluate --benchmark``).
        clip_features: CLIP image embeddings of the training frames, by file name: a cache written by
            ``ovformer train --build-clip-cache`` or an official ``*_clip_feature.pkl``; "" = encode on the fly.
        num_frames: frames per training clip (INPUT.SAMPLING_FRAME_NUM).
        frame_range: other frames come from within this many frames of the reference (SAMPLING_FRAME_RANGE).
        filter_empty: drop items without annotations (DATALOADER.FILTER_EMPTY_ANNOTATIONS); None = the
            official choice (True for images, False for videos).
        repeat_threshold: RepeatFactorTrainingSampler threshold (DATALOADER.REPEAT_THRESHOLD; LVIS 0.001);
            0 = every item once per epoch.
        num_workers: data-loading processes per training process (DATALOADER.NUM_WORKERS).
        video_augment: video-clip augmentation (shortest edge per clip, clip-consistent flip).
        image_augment: image augmentation (large-scale jitter).
    """

    train_json: str = ""
    train_root: str = ""
    val_json: str = ""
    val_root: str = ""
    val_benchmark: Literal["ytvis", "ovis", "lvvis", "burst"] = "lvvis"
    clip_features: str = ""
    num_frames: int = 2
    frame_range: int = 20
    filter_empty: bool | None = None
    repeat_threshold: float = 0.0
    num_workers: int = 4
    video_augment: VideoAugmentConfig = field(default_factory=VideoAugmentConfig)
    image_augment: ImageAugmentConfig = field(default_factory=ImageAugmentConfig)


@dataclass(frozen=True)
class RunConfig:
    """How the run is driven: batch, precision, checkpoints, evaluation, initial weights.

    Attributes:
        output_dir: checkpoints, TensorBoard events and metrics go here.
        batch_size: clips per iteration over all processes (SOLVER.IMS_PER_BATCH).
        micro_batch_size: clips per forward pass in one process; gradient accumulation makes up the
            rest (``batch_size / (processes * micro_batch_size)`` steps per iteration).
        amp: mixed precision (SOLVER.AMP.ENABLED); on CPU only with ``amp_dtype`` bfloat16, else float32.
        amp_dtype: autocast type; float16 (CUDA) uses a gradient scaler as the official code does.
        checkpoint_period: iterations between checkpoints (SOLVER.CHECKPOINT_PERIOD).
        keep_checkpoints: periodic checkpoints kept (older ones are deleted; the final model is kept).
        eval_period: iterations between evaluations on ``data.val_json`` (TEST.EVAL_PERIOD; 0 = only at the end
            when ``val_json`` is given).
        log_period: iterations between logged scalars.
        seed: seeds clip sampling, augmentation, point sampling and drop-path; the same seed gives the same run.
        init_weights: a whole-model checkpoint (official or ovformer) or a release name (``r50-lvis``) to
            start from (MODEL.WEIGHTS of the video recipes); "" = random init.
        backbone_weights: an ImageNet backbone state dict (timm ResNet-50 / Microsoft Swin layout, safetensors
            or a tensors-only .pth) for image-level training; "" = none.
        clip_weights: CLIP ViT-B/32 weights (for on-the-fly embeddings, the text classifier and
            evaluation); "" = the cache / OpenAI download.
        text_classifier: the training vocabulary's classifier: a ``.vocab`` file or the official
            ``fg_bg_5_10_*_ens.npy``; "" = encode the training categories with CLIP.
        device: ``cuda``, ``cpu``; "" = cuda when available (``LOCAL_RANK`` picks the GPU under torchrun).
    """

    output_dir: str = "runs/ovformer"
    batch_size: int = 8
    micro_batch_size: int = 1
    amp: bool = True
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    checkpoint_period: int = 1000
    keep_checkpoints: int = 3
    eval_period: int = 0
    log_period: int = 20
    seed: int = 0
    init_weights: str = ""
    backbone_weights: str = ""
    clip_weights: str = ""
    text_classifier: str = ""
    device: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; raises on unknown keys."""
        return config_from_dict(cls, data)


def _image_recipe(model: ModelConfig) -> TrainConfig:
    """configs/lvis/Base-COCO-InstanceSegmentation.yaml + ovformer_*_bs8.yaml (LVIS without rare classes)."""
    return TrainConfig(
        model=model,
        optim=lvis_image_recipe(),
        data=DataConfig(num_frames=1, filter_empty=True, repeat_threshold=0.001, num_workers=8),
        run=RunConfig(checkpoint_period=20000, eval_period=20000),
    )


def _video_recipe(model: ModelConfig, init_weights: str) -> TrainConfig:
    """configs/lvvis/Base-LVVIS-VideoInstanceSegmentation.yaml + video_ovformer_*_bs8.yaml (LV-VIS base)."""
    return TrainConfig(
        model=model,
        optim=lvvis_video_recipe(),
        data=DataConfig(num_frames=2, frame_range=20, filter_empty=False, num_workers=4),
        run=RunConfig(checkpoint_period=1000, eval_period=0, init_weights=init_weights),
    )


def recipe(name: str) -> TrainConfig:
    """One of the four official recipes: ``r50-lvis``, ``swinb-lvis`` (image level), ``r50-lvvis``,
    ``swinb-lvvis`` (video level, starting from the matching LVIS model)."""
    if name == "r50-lvis":
        return _image_recipe(r50_config(LVIS_NUM_CLASSES, video=False))
    if name == "swinb-lvis":
        return _image_recipe(swinb_config(LVIS_NUM_CLASSES, video=False))
    if name == "r50-lvvis":
        return _video_recipe(r50_config(LVVIS_NUM_CLASSES, video=True), "r50-lvis")
    if name == "swinb-lvvis":
        return _video_recipe(swinb_config(LVVIS_NUM_CLASSES, video=True), "swinb-lvis")
    raise TrainingError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")


RECIPES = ("r50-lvis", "swinb-lvis", "r50-lvvis", "swinb-lvvis")


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in base and isinstance(base[key], dict) and isinstance(value, dict):
            merged[key] = _merge(base[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


def config_from_overrides(overrides: dict[str, Any]) -> TrainConfig:
    """A recipe (``overrides["recipe"]``, default ``r50-lvvis``) with the given nested values replaced."""
    overrides = dict(overrides)
    name = overrides.pop("recipe", "r50-lvvis")
    if not isinstance(name, str):
        raise TrainingError(f"'recipe' must be one of {', '.join(RECIPES)}, got {brief(name)}")
    merged = _merge(recipe(name).to_dict(), overrides, "config")
    try:
        return TrainConfig.from_dict(merged)
    except TrainingError:
        raise
    except (TypeError, ValueError) as err:
        raise TrainingError(f"invalid training config: {err}") from None


def read_config_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object of a training config file (before it is merged with its recipe).

    Raises:
        OVFormerError: missing file, invalid JSON, or not a JSON object.
    """
    problem = input_path_problem(path, "file")
    if problem is not None:
        raise TrainingError(f"training config {path} {problem} (or start from a recipe's config, `recipe()`)")
    data = read_json(path, "training config", TrainingError)
    if not isinstance(data, dict):
        raise TrainingError(f"training config {path} must hold a JSON object")
    return data


def load_train_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read a JSON training config (see the module docstring) and check it.

    Raises:
        OVFormerError: missing or malformed file, unknown keys, or inconsistent values.
    """
    cfg = config_from_overrides(read_config_json(path))
    check_train_config(cfg)
    return cfg


def check_train_config(cfg: TrainConfig) -> None:
    """Reject values that cannot work, with the field to fix."""
    run, data, optim = cfg.run, cfg.data, cfg.optim
    if run.batch_size < 1 or run.micro_batch_size < 1:
        raise TrainingError("run.batch_size and run.micro_batch_size must be at least 1")
    if run.batch_size % run.micro_batch_size:
        raise TrainingError(
            f"run.batch_size {run.batch_size} is not a multiple of run.micro_batch_size {run.micro_batch_size}"
        )
    if run.checkpoint_period < 1 or run.log_period < 1 or run.eval_period < 0:
        raise TrainingError("run.checkpoint_period and run.log_period must be >= 1, run.eval_period >= 0")
    if data.num_frames < 1 or data.frame_range < 0:
        raise TrainingError("data.num_frames must be >= 1 and data.frame_range >= 0")
    if optim.max_iter < 1:
        raise TrainingError("optim.max_iter must be at least 1")
    if not data.train_json:
        raise TrainingError("data.train_json is not set; give the training annotation file in the config")
    if not data.train_root:
        raise TrainingError("data.train_root is not set; give the folder the training file names are relative to")
    if bool(data.val_json) != bool(data.val_root):
        raise TrainingError("data.val_json and data.val_root go together; set both or neither")

"""Frozen, nested model configs. Defaults are the official hyper-parameters (configs/lvvis/*.yaml).

Every field cites where its default comes from. Configs reject unknown keys (``from_dict``) so a typo
in a user's JSON cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from ovformer_core.errors import OVFormerError
from ovformer_core.io.json_input import brief, is_int

T = TypeVar("T")

#: ImageNet mean/std in RGB order, 0..255 scale (MODEL.PIXEL_MEAN / PIXEL_STD of every official config).
PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (58.395, 57.12, 57.375)
#: Training vocabularies: LV-VIS (configs/lvvis SEM_SEG_HEAD.NUM_CLASSES) and LVIS v1 (configs/lvis).
LVVIS_NUM_CLASSES = 1196
LVIS_NUM_CLASSES = 1203
#: LVIS frequency classes: rare below 10 training images, common below 100 (get_lvis_cat_info.py).
LVIS_RARE_BELOW = 10
LVIS_COMMON_BELOW = 100


@dataclass(frozen=True)
class SwinConfig:
    """Swin Transformer (D2SwinTransformer). Defaults: Swin-B of configs/lvvis/video_ovformer_SwinB_bs8.yaml."""

    patch_size: int = 4  # MODEL.SWIN.PATCH_SIZE
    embed_dim: int = 128  # MODEL.SWIN.EMBED_DIM
    depths: tuple[int, ...] = (2, 2, 18, 2)  # MODEL.SWIN.DEPTHS
    num_heads: tuple[int, ...] = (4, 8, 16, 32)  # MODEL.SWIN.NUM_HEADS
    window_size: int = 12  # MODEL.SWIN.WINDOW_SIZE
    mlp_ratio: float = 4.0  # MODEL.SWIN.MLP_RATIO
    qkv_bias: bool = True  # MODEL.SWIN.QKV_BIAS
    patch_norm: bool = True  # MODEL.SWIN.PATCH_NORM
    drop_path_rate: float = 0.3  # MODEL.SWIN.DROP_PATH_RATE (training only)
    layer_norm_eps: float = 1e-5  # nn.LayerNorm default, used by the official Swin


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone, and its settings. Outputs are res2..res5 at strides 4/8/16/32."""

    kind: Literal["resnet50", "swin"] = "resnet50"  # MODEL.BACKBONE.NAME (build_timm_backbone / D2Swin)
    swin: SwinConfig = field(default_factory=SwinConfig)
    frozen_bn_eps: float = 1e-5  # detectron2 FrozenBatchNorm2d eps (ResNet only)
    # NHWC activations for the convolutions (faster oneDNN/cuDNN kernels; same function).
    channels_last: bool = True
    # Each frozen BN applied by the convolution before it (ResNet only; same function up to float rounding,
    # the same checkpoint keys): saves two elementwise passes per convolution.
    fold_bn: bool = True


@dataclass(frozen=True)
class PixelDecoderConfig:
    """MSDeformAttnPixelDecoder (Mask2Former). Defaults: MODEL.SEM_SEG_HEAD of the official configs."""

    conv_dim: int = 256  # SEM_SEG_HEAD.CONVS_DIM
    mask_dim: int = 256  # SEM_SEG_HEAD.MASK_DIM
    num_groups: int = 32  # GroupNorm groups (SEM_SEG_HEAD.NORM "GN" = GroupNorm(32, C))
    num_encoder_layers: int = 6  # SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS
    num_heads: int = 8  # SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS
    num_points: int = 4  # SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS
    ffn_dim: int = 1024  # hard-coded in MSDeformAttnPixelDecoder
    common_stride: int = 4  # SEM_SEG_HEAD.COMMON_STRIDE
    num_deformable_levels: int = 3  # DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = res3..res5
    # Sampling implementation (same function): "reference" = official grid_sample fallback,
    # "gather" = embedding_bag fast path, "auto" = gather on CPU, reference elsewhere.
    deform_attn_impl: Literal["reference", "gather", "auto"] = "auto"
    # Tokens per step of the encoder layers on the gather path: small temporaries are reused by
    # the allocator instead of being page-faulted in anew (a large cost on CPU). Same results.
    chunk_size: int = 512


@dataclass(frozen=True)
class DecoderConfig:
    """Masked-attention transformer decoder. Defaults: MODEL.MASK_FORMER of the official configs."""

    hidden_dim: int = 256  # MASK_FORMER.HIDDEN_DIM
    num_heads: int = 8  # MASK_FORMER.NHEADS
    ffn_dim: int = 2048  # MASK_FORMER.DIM_FEEDFORWARD
    num_layers: int = 9  # MASK_FORMER.DEC_LAYERS (10) - 1
    num_queries: int = 100  # MASK_FORMER.NUM_OBJECT_QUERIES
    num_feature_levels: int = 3  # hard-coded in the official decoder
    pre_norm: bool = False  # MASK_FORMER.PRE_NORM
    enforce_input_proj: bool = False  # MASK_FORMER.ENFORCE_INPUT_PROJ
    temporal_position: bool = True  # 3-D sine encoding (VideoOVFormer); False = 2-D (image OVFormer)
    # Masks that only steer the next layer's attention: "full" predicts them at 1/4 resolution and
    # resizes (official), "level" predicts them at the attention level's size directly (same
    # function, bilinear resizing being linear; much cheaper). Deep supervision always uses "full".
    attention_masks: Literal["full", "level"] = "level"


@dataclass(frozen=True)
class ClassifierConfig:
    """Unified embedding alignment classifier (zero_shot_classifier.py)."""

    clip_dim: int = 512  # CLIP ViT-B/32 embedding size
    num_heads: int = 8  # cross-attention heads over the frames' CLIP embeddings
    temperature: float = 50.0  # norm_temperature


@dataclass(frozen=True)
class InferenceConfig:
    """Test-time behaviour (VideoOVFormer.inference / OVFormerVideo)."""

    clip_length: int = 5  # hard-coded clip length of VideoOVFormer
    top_k: int = 50  # TEST.DETECTIONS_PER_IMAGE of the LV-VIS configs
    size_divisibility: int = 32  # MASK_FORMER.SIZE_DIVISIBILITY
    min_size_test: int = 360  # INPUT.MIN_SIZE_TEST (480 for Swin-B)
    max_size_test: int = 1333  # INPUT.MAX_SIZE_TEST (detectron2 default)


@dataclass(frozen=True)
class ModelConfig:
    """A whole OVFormer. The image model is the same network with ``temporal_position=False``."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    num_classes: int = LVVIS_NUM_CLASSES  # SEM_SEG_HEAD.NUM_CLASSES of the training vocabulary
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN_RGB
    pixel_std: tuple[float, float, float] = PIXEL_STD_RGB

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; raises ``OVFormerError`` on unknown keys."""
        return config_from_dict(cls, data)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin is tuple:
        return "a list"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a JSON value fits a config field's type (bools are not numbers here)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return is_int(value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a frozen config dataclass from nested plain data (JSON), checking keys and value types.

    Raises:
        OVFormerError: an unknown key, or a value of the wrong type (one line naming the field).
    """
    if not isinstance(data, dict):
        raise OVFormerError(f"config for {cls.__name__} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise OVFormerError(f"unknown {cls.__name__} keys: {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = config_from_dict(type(current), value)
            continue
        if not _matches(value, hints[name]):
            raise OVFormerError(f"{cls.__name__}.{name} must be {_type_name(hints[name])}, got {brief(value)}")
        if isinstance(current, tuple):
            kwargs[name] = tuple(value)
        elif hints[name] is float or (isinstance(current, float) and isinstance(value, int)):
            kwargs[name] = float(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def r50_config(num_classes: int = LVVIS_NUM_CLASSES, video: bool = True) -> ModelConfig:
    """Official ResNet-50 config: video_ovformer_R50_bs8 (video) or lvis/ovformer_R50_bs8 (image)."""
    return ModelConfig(
        backbone=BackboneConfig(kind="resnet50"),
        decoder=DecoderConfig(temporal_position=video),
        inference=InferenceConfig(min_size_test=360),
        num_classes=num_classes,
    )


def swinb_config(num_classes: int = LVVIS_NUM_CLASSES, video: bool = True) -> ModelConfig:
    """Official Swin-B config: video_ovformer_SwinB_bs8 (video) or lvis/ovformer_SwinB_bs8 (image)."""
    return ModelConfig(
        backbone=BackboneConfig(kind="swin", swin=SwinConfig()),
        decoder=DecoderConfig(temporal_position=video),
        inference=InferenceConfig(min_size_test=480),
        num_classes=num_classes,
    )

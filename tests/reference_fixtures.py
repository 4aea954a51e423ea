"""Paths and configs of the reference fixtures produced by the official code (tests/fixtures/reference)."""

from __future__ import annotations

import json
from pathlib import Path

from ovformer_core.config import (
    BackboneConfig,
    DecoderConfig,
    InferenceConfig,
    ModelConfig,
    PixelDecoderConfig,
    SwinConfig,
)

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
VIDEO_TINY = REFERENCE / "video_tiny"
IMAGE_TINY = REFERENCE / "image_tiny"
ZEROSHOT_TINY = REFERENCE / "zeroshot_video_tiny"
KEYS = REFERENCE / "keys"

#: Tolerances recommended by the fixtures' documentation.
FLOAT_RTOL = 1e-3
FLOAT_ATOL = 1e-3
SCORE_ATOL = 1e-4
MASK_PIXEL_FRACTION = 1e-4


def tiny_config(video: bool = True) -> ModelConfig:
    """The tiny Swin config of video_tiny/config.json (image_tiny uses the same weights, T = 1)."""
    return ModelConfig(
        backbone=BackboneConfig(
            kind="swin",
            swin=SwinConfig(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7),
        ),
        pixel_decoder=PixelDecoderConfig(conv_dim=64, mask_dim=64, num_encoder_layers=2),
        decoder=DecoderConfig(num_layers=3, num_queries=20, ffn_dim=512, temporal_position=video),
        inference=InferenceConfig(min_size_test=480),
        num_classes=12,
    )


def read_manifest(name: str, prefix: str = "") -> dict[str, tuple[list[int], str]]:
    """Entries of ``keys/<name>.txt`` (``name<TAB>shape<TAB>dtype``) whose name starts with ``prefix``."""
    entries = {}
    for line in (KEYS / f"{name}.txt").read_text().splitlines():
        key, shape, dtype = line.split("\t")
        if key.startswith(prefix):
            entries[key] = (json.loads(shape), dtype)
    return entries


#: Accuracy guard of bfloat16 against the float32 fixtures (tests/inference/test_reduced_precision.py,
#: benchmarks/gpu_check.py). The fixtures' weights are random (nothing is confidently separated: the worst
#: case for rounding). Measured with bf16 on CPU / H200: video_tiny semi-online top-k overlap 47/50 / 48/50,
#: scores within 0.022 / 0.023, 1.5% / 1.3% of mask pixels flipped; zeroshot_video_tiny per-frame 10/10,
#: 0.015 / 0.021, 4.1% / 5.0% (its masks are upsampled from 24x32 logits, most of them near 0); raw
#: outputs within 0.20 / 0.19 x their largest magnitude. The full-size random R-50 window flips 0.6%.
BF16_TOPK_OVERLAP = 0.9
BF16_SCORE_ATOL = 0.05
BF16_MASK_PIXEL_FRACTION = 0.06
BF16_RAW_RELATIVE = 0.25

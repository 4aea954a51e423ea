"""``build_model(cfg)``: plain construction of the whole network from a ``ModelConfig``."""

from __future__ import annotations

import torch

from ovformer_core.config import ModelConfig
from ovformer_core.model.backbone import build_backbone
from ovformer_core.model.decoder import MaskedDecoder
from ovformer_core.model.ovformer import OVFormer
from ovformer_core.model.pixel_decoder import PixelDecoder


def build_model(cfg: ModelConfig) -> OVFormer:
    """Build an OVFormer (randomly initialised; load weights with ``ovformer_core.checkpoints``)."""
    backbone = build_backbone(cfg.backbone)
    if cfg.backbone.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    pixel_decoder = PixelDecoder(cfg.pixel_decoder, dict(backbone.out_channels), dict(backbone.out_strides))
    decoder = MaskedDecoder(
        cfg.decoder, cfg.classifier, in_dim=cfg.pixel_decoder.conv_dim, mask_dim=cfg.pixel_decoder.mask_dim
    )
    return OVFormer(backbone, pixel_decoder, decoder, channels_last=cfg.backbone.channels_last)

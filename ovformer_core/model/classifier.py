"""Unified embedding alignment classifier: query embeddings in CLIP space, scored against text.

Each query embedding is projected to CLIP space, cross-attends to the CLIP image embeddings of the
clip's frames, is L2-normalised, scaled by a temperature and multiplied with the text classifier
(one L2-normalised column per class, plus an all-zero background column).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ovformer_core.config import ClassifierConfig
from ovformer_core.model.layers import AttentionLayer


class AlignmentClassifier(nn.Module):
    """Query embeddings -> class logits against any text classifier."""

    def __init__(self, cfg: ClassifierConfig, query_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(query_dim, cfg.clip_dim // 2), nn.ReLU(), nn.Linear(cfg.clip_dim // 2, cfg.clip_dim)
        )
        self.cross_attn = AttentionLayer(cfg.clip_dim, cfg.num_heads)
        self.temperature = cfg.temperature

    def forward(self, query_embeds: Tensor, clip_embeds: Tensor, text_classifier: Tensor) -> Tensor:
        """Score every query against every class.

        Args:
            query_embeds: ``[B, Q, D]`` normalised decoder outputs.
            clip_embeds: ``[B, T, 512]`` CLIP image embeddings of the frames (not normalised).
            text_classifier: ``[512, C + 1]`` unit text columns, last column zero.

        Returns:
            ``[B, Q, C + 1]`` logits; the background column is exactly 0.
        """
        x = self.proj(query_embeds).transpose(0, 1)  # [Q, B, 512]
        memory = clip_embeds.to(x.dtype).transpose(0, 1)  # [T, B, 512]
        x = self.cross_attn(x, memory).transpose(0, 1)  # [B, Q, 512]
        x = self.temperature * F.normalize(x, p=2, dim=-1)
        return x @ text_classifier.to(x.dtype)

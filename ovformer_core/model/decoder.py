"""Masked-attention transformer decoder (Mask2Former / SeqFormer-style video decoder) with OVFormer heads.

Queries attend over all frames of a clip at once: memory tokens are ordered frame-major (frame,
row, column). Layer ``i`` attends to feature level ``i mod 3``, restricted by the mask predicted
before it, then self-attends, then applies an FFN. Heads run on the normalised queries before the
first layer and after every layer (deep supervision).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ovformer_core.config import ClassifierConfig, DecoderConfig
from ovformer_core.model.classifier import AlignmentClassifier
from ovformer_core.model.layers import MLP, AttentionLayer, FFNLayer, sine_position_encoding

#: Mask probability below which a key is blocked for the next layer's cross-attention.
MASK_ATTENTION_THRESHOLD = 0.5


@dataclass
class HeadOutputs:
    """Head predictions for B clips of T frames and Q queries.

    Attributes:
        class_logits: ``[B, Q, C + 1]`` (last column: background, always 0).
        object_logits: ``[B, Q, 2]`` (index 0: object, 1: no object).
        mask_logits: ``[B, Q, T, H/4, W/4]``.
    """

    class_logits: Tensor
    object_logits: Tensor
    mask_logits: Tensor


@dataclass
class DecoderOutput:
    """Final heads, the per-layer heads before them, and the queries used for association.

    Attributes:
        final: heads after the last layer.
        aux: heads on the learnable queries and after each layer but the last.
        query_embeds: ``[B, Q, D]`` decoder-normalised final queries.
    """

    final: HeadOutputs
    aux: list[HeadOutputs]
    query_embeds: Tensor


def _channels_first(features: Tensor, batch: int) -> Tensor:
    """``[B*T, C, h, w]`` -> ``[B, C, T*h*w]`` (frame-major), so mask logits are one batched matmul."""
    bt, channels, h, w = features.shape
    return features.view(batch, bt // batch, channels, h * w).transpose(1, 2).reshape(batch, channels, -1)


class DecoderLayer(nn.Module):
    """Masked cross-attention, then self-attention, then FFN."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cross_attn = AttentionLayer(cfg.hidden_dim, cfg.num_heads, cfg.pre_norm)
        self.self_attn = AttentionLayer(cfg.hidden_dim, cfg.num_heads, cfg.pre_norm)
        self.ffn = FFNLayer(cfg.hidden_dim, cfg.ffn_dim, cfg.pre_norm)

    def forward(
        self, queries: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor, attn_mask: Tensor
    ) -> Tensor:
        queries = self.cross_attn(queries, memory, query_pos=query_pos, memory_pos=memory_pos, attn_mask=attn_mask)
        queries = self.self_attn(queries, query_pos=query_pos)
        return self.ffn(queries)


class MaskedDecoder(nn.Module):
    """Learnable queries -> per-query masks, objectness, class logits and embeddings."""

    def __init__(self, cfg: DecoderConfig, classifier_cfg: ClassifierConfig, in_dim: int, mask_dim: int) -> None:
        super().__init__()
        dim = cfg.hidden_dim
        self.num_heads = cfg.num_heads
        self.temporal_position = cfg.temporal_position
        self.attention_masks = cfg.attention_masks
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_dim, dim, 1) if (in_dim != dim or cfg.enforce_input_proj) else nn.Identity()
            for _ in range(cfg.num_feature_levels)
        )
        self.level_embed = nn.Embedding(cfg.num_feature_levels, dim)
        self.query_feat = nn.Embedding(cfg.num_queries, dim)
        self.query_pos = nn.Embedding(cfg.num_queries, dim)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.query_norm = nn.LayerNorm(dim)
        self.classifier = AlignmentClassifier(classifier_cfg, dim)
        self.object_head = MLP(dim, dim, 2, 2)
        self.mask_head = MLP(dim, dim, mask_dim, 3)

    def forward(
        self,
        multi_scale: list[Tensor],
        mask_features: Tensor,
        clip_embeds: Tensor,
        text_classifier: Tensor,
        with_aux: bool = True,
    ) -> DecoderOutput:
        """Decode one batch of clips.

        Args:
            multi_scale: per level ``[B*T, C, h_l, w_l]`` (frames of a clip consecutive).
            mask_features: ``[B*T, mask_dim, H/4, W/4]``.
            clip_embeds: ``[B, T, 512]``.
            text_classifier: ``[512, C + 1]``.
            with_aux: compute every layer's heads (deep supervision). Without them, and with
                ``attention_masks="level"``, layers before the last only predict the masks their
                successor needs, directly at that layer's feature size (see ``_attention_mask``).
        """
        batch, num_frames = clip_embeds.shape[:2]
        memories, memory_pos, sizes = [], [], []
        for level, feats in enumerate(multi_scale):
            h, w = feats.shape[-2:]
            sizes.append((h, w))
            tokens = self.input_proj[level](feats).flatten(2) + self.level_embed.weight[level][None, :, None]
            # [B*T, D, hw] -> [T*hw, B, D], frame-major
            tokens = tokens.view(batch, num_frames, -1, h * w).permute(1, 3, 0, 2).flatten(0, 1)
            memories.append(tokens)
            pos = sine_position_encoding(
                num_frames, h, w, tokens.shape[-1] // 2, self.temporal_position, tokens.device
            ).to(tokens.dtype)  # [T, D, h, w]
            memory_pos.append(pos.flatten(2).permute(0, 2, 1).flatten(0, 1)[:, None, :].expand(-1, batch, -1))
        every_layer = with_aux or self.attention_masks == "full"
        level_features: list[Tensor] = []
        if not every_layer:
            # Bilinear resizing is linear, so it commutes with the (linear) mask projection:
            # resizing the mask features once per level equals resizing every layer's mask logits.
            level_features = [
                _channels_first(F.interpolate(mask_features, size=size, mode="bilinear", align_corners=False), batch)
                for size in sizes
            ]
        mask_size = (int(mask_features.shape[-2]), int(mask_features.shape[-1]))
        mask_features = _channels_first(mask_features, batch)

        query_pos = self.query_pos.weight[:, None, :].expand(-1, batch, -1)
        queries = self.query_feat.weight[:, None, :].expand(-1, batch, -1)

        outputs: list[HeadOutputs] = []
        attn_mask = torch.zeros(0, dtype=torch.bool)
        for i in range(len(self.layers) + 1):
            if i > 0:
                level = (i - 1) % len(memories)
                attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)  # unblock fully blocked queries
                queries = self.layers[i - 1](queries, query_pos, memories[level], memory_pos[level], attn_mask)
            next_size = sizes[i % len(memories)]
            if every_layer or i == len(self.layers):
                heads, attn_mask = self._heads(
                    queries, mask_features, mask_size, clip_embeds, text_classifier, next_size
                )
                outputs.append(heads)
            else:
                attn_mask = self._attention_mask(queries, level_features[i % len(memories)])
        return DecoderOutput(final=outputs[-1], aux=outputs[:-1], query_embeds=self.query_norm(queries).transpose(0, 1))

    def _attention_mask(self, queries: Tensor, level_features: Tensor) -> Tensor:
        """Blocked keys for the next layer from mask features already at its size ``[B, C, T*h*w]``."""
        normed = self.query_norm(queries).transpose(0, 1)
        mask_logits = self.mask_head(normed) @ level_features  # [B, Q, T*h*w], frame-major like the memory
        b, q = mask_logits.shape[:2]
        blocked = mask_logits.sigmoid() < MASK_ATTENTION_THRESHOLD
        return blocked[:, None].expand(b, self.num_heads, q, blocked.shape[-1]).flatten(0, 1)

    def _heads(
        self,
        queries: Tensor,
        mask_features: Tensor,
        mask_size: tuple[int, int],
        clip_embeds: Tensor,
        text_classifier: Tensor,
        attn_size: tuple[int, int],
    ) -> tuple[HeadOutputs, Tensor]:
        normed = self.query_norm(queries).transpose(0, 1)  # [B, Q, D]
        object_logits = self.object_head(normed)
        class_logits = self.classifier(normed, clip_embeds, text_classifier)
        b, q, t = normed.shape[0], normed.shape[1], clip_embeds.shape[1]
        mask_logits = (self.mask_head(normed) @ mask_features).view(b, q, t, *mask_size)
        resized = F.interpolate(mask_logits.flatten(0, 1), size=attn_size, mode="bilinear", align_corners=False)
        blocked = resized.view(b, q, -1).sigmoid() < MASK_ATTENTION_THRESHOLD  # [B, Q, T*h*w]
        attn_mask = blocked[:, None].expand(b, self.num_heads, q, blocked.shape[-1]).flatten(0, 1).detach()
        return HeadOutputs(class_logits, object_logits, mask_logits), attn_mask

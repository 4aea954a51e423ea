"""Multi-scale deformable-attention pixel decoder (Mask2Former's MSDeformAttnPixelDecoder).

A deformable-attention encoder refines res3..res5 jointly; an FPN step adds res2 (stride 4), from
which a 1x1 conv makes the per-pixel mask features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ovformer_core.config import PixelDecoderConfig
from ovformer_core.model.deform_attn import DeformAttnImpl, MSDeformAttn, resolve_impl
from ovformer_core.model.layers import Conv2dNorm, sine_position_encoding


@dataclass
class PixelDecoderOutput:
    """Outputs of the pixel decoder for ``N`` images.

    Attributes:
        mask_features: ``[N, mask_dim, H/4, W/4]``.
        multi_scale: three ``[N, conv_dim, h_l, w_l]`` maps, lowest resolution (stride 32) first.
    """

    mask_features: Tensor
    multi_scale: list[Tensor]


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention then FFN, both post-norm."""

    def __init__(
        self, dim: int, ffn_dim: int, num_levels: int, num_heads: int, num_points: int, impl: DeformAttnImpl
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(dim, num_levels, num_heads, num_points, impl)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: list[tuple[int, int]],
        chunk_size: int | None = None,
    ) -> Tensor:
        """``x [N, S, D]``; with ``chunk_size`` the row-wise steps run over that many tokens at a time."""
        attended = self.self_attn(x + pos, reference_points, x, spatial_shapes, chunk_size)
        if chunk_size is None:
            x = self.norm1(x + attended)
            return self.norm2(x + self.linear2(F.relu(self.linear1(x))))
        out = torch.empty_like(x)
        for i in range(0, x.shape[1], chunk_size):
            part = self.norm1(x[:, i : i + chunk_size] + attended[:, i : i + chunk_size])
            hidden = F.relu(self.linear1(part), inplace=True)
            out[:, i : i + chunk_size] = self.norm2(part + self.linear2(hidden))
        return out


def encoder_reference_points(spatial_shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
    """Pixel centres of every level, normalised to [0, 1]: ``[1, S, L, 2]`` (x, y).

    Every query uses its own normalised position on all levels (no padding mask, so the valid
    ratios of the official code are all 1).
    """
    points = []
    for h, w in spatial_shapes:
        ys = torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device) / h
        xs = torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
    ref = torch.cat(points, 0)  # [S, 2]
    return ref[None, :, None, :].expand(1, ref.shape[0], len(spatial_shapes), 2)


class PixelDecoder(nn.Module):
    """res2..res5 backbone features -> mask features and three multi-scale maps for the decoder."""

    def __init__(self, cfg: PixelDecoderConfig, in_channels: dict[str, int], in_strides: dict[str, int]) -> None:
        super().__init__()
        names = sorted(in_channels, key=lambda k: in_strides[k])  # high resolution first
        levels = cfg.num_deformable_levels
        self.deformable_names = names[-levels:][::-1]  # low resolution first: res5, res4, res3
        self.fpn_names = names[:-levels][::-1]  # the remaining high-resolution ones, top-down
        min_stride = min(in_strides[k] for k in self.deformable_names)
        expected_fpn = int(math.log2(min_stride) - math.log2(cfg.common_stride))
        if len(self.fpn_names) != expected_fpn:
            raise ValueError(f"pixel decoder expects {expected_fpn} FPN levels, backbone gives {self.fpn_names}")
        dim = cfg.conv_dim
        self.pos_feats = dim // 2
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[k], dim, 1), nn.GroupNorm(cfg.num_groups, dim))
            for k in self.deformable_names
        )
        self.level_embed = nn.Parameter(torch.zeros(levels, dim))
        self.encoder_layers = nn.ModuleList(
            DeformableEncoderLayer(dim, cfg.ffn_dim, levels, cfg.num_heads, cfg.num_points, cfg.deform_attn_impl)
            for _ in range(cfg.num_encoder_layers)
        )
        # stored high resolution first (official adapter_1 / layer_1 is the stride-4 level)
        self.lateral_convs = nn.ModuleList(
            Conv2dNorm(in_channels[k], dim, 1, norm=nn.GroupNorm(cfg.num_groups, dim)) for k in self.fpn_names[::-1]
        )
        self.output_convs = nn.ModuleList(
            Conv2dNorm(dim, dim, 3, norm=nn.GroupNorm(cfg.num_groups, dim), relu=True) for _ in self.fpn_names[::-1]
        )
        self.mask_features = nn.Conv2d(dim, cfg.mask_dim, 1)
        self.num_outputs = levels
        self.deform_attn_impl = cfg.deform_attn_impl
        self.chunk_size = cfg.chunk_size

    def forward(self, features: dict[str, Tensor]) -> PixelDecoderOutput:
        """Args: features: ``{name: [N, C_l, H_l, W_l]}`` from the backbone.

        Without autocast everything runs in float32. Under bfloat16 autocast the convolutions and
        linear layers run in bfloat16, while the encoder's residual stream, the sampling locations and
        the attention weights stay in float32 (see ``MSDeformAttn``). Under float16 autocast the
        decoder runs in float32 (float16's range is not checked for it).
        """
        device_type = next(iter(features.values())).device.type
        reduced = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16
        with torch.autocast(device_type=device_type, enabled=reduced):
            return self._forward(features, reduced)

    def _forward(self, features: dict[str, Tensor], reduced: bool) -> PixelDecoderOutput:
        srcs, pos, shapes = [], [], []
        for level, name in enumerate(self.deformable_names):
            x = features[name] if reduced else features[name].float()
            n, _, h, w = x.shape
            shapes.append((h, w))
            srcs.append(self.input_proj[level](x).flatten(2).transpose(1, 2))
            level_pos = sine_position_encoding(1, h, w, self.pos_feats, temporal=False, device=x.device)
            pos.append(level_pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1))
        tokens = torch.cat(srcs, 1).float()  # the residual stream stays float32 (layer norms in float32)
        pos_tokens = torch.cat(pos, 1)
        reference = encoder_reference_points(shapes, tokens.device).expand(tokens.shape[0], -1, -1, -1)
        chunk = self.chunk_size if resolve_impl(self.deform_attn_impl, tokens.device) == "gather" else None
        for layer in self.encoder_layers:
            tokens = layer(tokens, pos_tokens, reference, shapes, chunk)

        outs = [
            chunk.transpose(1, 2).reshape(n, -1, h, w)
            for chunk, (h, w) in zip(tokens.split([h * w for h, w in shapes], 1), shapes, strict=True)
        ]
        num_fpn = len(self.fpn_names)
        for i, name in enumerate(self.fpn_names):
            lateral = self.lateral_convs[num_fpn - 1 - i](features[name] if reduced else features[name].float())
            merged = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(self.output_convs[num_fpn - 1 - i](merged))
        return PixelDecoderOutput(mask_features=self.mask_features(outs[-1]), multi_scale=outs[: self.num_outputs])

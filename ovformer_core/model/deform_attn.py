"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch: no compiled op, CPU and GPU.

The sampling is bilinear ``grid_sample`` with zero padding and ``align_corners=False``: the same
function the official CUDA kernel computes, and exactly what the official code falls back to when
the kernel is not built (which is how the reference fixtures were made).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_sample(
    value: Tensor, spatial_shapes: list[tuple[int, int]], sampling_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """Weighted sum of bilinearly sampled values.

    Args:
        value: ``[N, S, M, Dh]``, S = sum of H_l * W_l over levels, M heads of Dh channels.
        spatial_shapes: ``[(H_l, W_l)]`` per level, in the order the levels are stacked in ``value``.
        sampling_locations: ``[N, Lq, M, L, P, 2]`` (x, y) in [0, 1] over each level's grid.
        attention_weights: ``[N, Lq, M, L, P]``, summing to one over (L, P).

    Returns:
        ``[N, Lq, M * Dh]``.
    """
    n, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for level, (h, w) in enumerate(spatial_shapes):
        # [N, HW, M, Dh] -> [N*M, Dh, H, W]
        level_value = per_level[level].flatten(2).transpose(1, 2).reshape(n * heads, head_dim, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # [N*M, Dh, Lq, P]
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, num_queries, num_levels * num_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # [N*M, Dh, Lq]
    return out.view(n, heads * head_dim, num_queries).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable self-attention over flattened feature levels."""

    def __init__(self, dim: int, num_levels: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    def forward(
        self,
        queries: Tensor,
        reference_points: Tensor,
        features: Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """Attend from each query to a few learned offsets around its reference point on every level.

        Args:
            queries: ``[N, Lq, D]`` (features plus position encoding).
            reference_points: ``[N, Lq, L, 2]`` normalised (x, y).
            features: ``[N, S, D]`` flattened levels (the values).
            spatial_shapes: ``[(H_l, W_l)]``.

        Returns:
            ``[N, Lq, D]``.
        """
        n, num_queries, _ = queries.shape
        value = self.value_proj(features).view(n, features.shape[1], self.num_heads, -1)
        shape = (n, num_queries, self.num_heads, self.num_levels, self.num_points)
        offsets = self.sampling_offsets(queries).view(*shape, 2)
        weights = self.attention_weights(queries).view(n, num_queries, self.num_heads, -1)
        weights = weights.softmax(-1).view(shape)
        # offsets are in pixels of each level: divide by (W_l, H_l)
        normaliser = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=queries.dtype, device=queries.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn_sample(value, spatial_shapes, locations, weights))

"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch: no compiled op, CPU and GPU.

Two implementations of the same function (bilinear sampling with zero padding,
``align_corners=False``, weighted by the attention weights):

- ``reference``: one ``grid_sample`` per level, exactly what the official code falls back to when
  its CUDA kernel is not built (how the reference fixtures were made);
- ``gather``: the four bilinear corners of every sampling point become rows of a zero-bordered
  value table and one ``embedding_bag`` sums them with bilinear x attention weights. It never
  materialises the ``[N*M, D, Lq, L*P]`` sampled tensor, which is what makes it faster on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DeformAttnImpl = Literal["reference", "gather", "auto"]


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


@dataclass
class GatherTable:
    """Values of every level with a one-pixel zero border, flattened for ``embedding_bag``.

    Attributes:
        rows: ``[N * M * total, Dh]``, ordered (image, head, padded position).
        level_starts: first padded position of each level.
        total: padded positions per (image, head).
    """

    rows: Tensor
    level_starts: list[int]
    total: int


def gather_table(value: Tensor, spatial_shapes: list[tuple[int, int]]) -> GatherTable:
    """Lay out ``value [N, S, M, Dh]`` for ``ms_deform_attn_gather`` (once per layer, shared by query chunks).

    The zero border makes corners just outside a map read zeros, so no validity mask is needed
    (the zero padding of ``grid_sample``).
    """
    n, _, heads, head_dim = value.shape
    tables, starts, total = [], [], 0
    for (h, w), level in zip(spatial_shapes, value.split([h * w for h, w in spatial_shapes], dim=1), strict=True):
        level = level.view(n, h, w, heads, head_dim).permute(0, 3, 1, 2, 4)
        tables.append(F.pad(level, (0, 0, 1, 1, 1, 1)).reshape(n, heads, (h + 2) * (w + 2), head_dim))
        starts.append(total)
        total += (h + 2) * (w + 2)
    return GatherTable(torch.cat(tables, 2).reshape(-1, head_dim), starts, total)


def ms_deform_attn_gather(
    table: GatherTable, spatial_shapes: list[tuple[int, int]], sampling_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """Same result as ``ms_deform_attn_sample``, computed with one ``embedding_bag`` over ``table``."""
    n, num_queries, heads, num_levels, num_points, _ = sampling_locations.shape
    head_dim = table.rows.shape[1]
    device, dtype = sampling_locations.device, sampling_locations.dtype
    sizes = torch.tensor(spatial_shapes, dtype=dtype, device=device)
    height, width = sizes[:, 0].view(num_levels, 1), sizes[:, 1].view(num_levels, 1)
    # pixel coordinates (align_corners=False); beyond the border they are clamped onto it, where
    # every corner that carries weight reads zero
    x = (sampling_locations[..., 0] * width - 0.5).clamp(min=-1).minimum(width)  # [N, Lq, M, L, P]
    y = (sampling_locations[..., 1] * height - 0.5).clamp(min=-1).minimum(height)
    x0, y0 = x.floor().minimum(width - 1), y.floor().minimum(height - 1)
    fx, fy = x - x0, y - y0
    row = (width + 2).to(torch.int64)
    level_start = torch.tensor(table.level_starts, dtype=torch.int64, device=device).view(num_levels, 1)
    head_start = (
        torch.arange(n, device=device).view(n, 1, 1, 1, 1) * heads
        + torch.arange(heads, device=device).view(1, 1, heads, 1, 1)
    ) * table.total
    corner = head_start + level_start + (y0.long() + 1) * row + (x0.long() + 1)
    index = torch.stack((corner, corner + 1, corner + row, corner + row + 1), -1)
    gx, gy = 1 - fx, 1 - fy
    weights = torch.stack((gy * gx, gy * fx, fy * gx, fy * fx), -1) * attention_weights[..., None]
    bags = n * num_queries * heads
    out = F.embedding_bag(
        index.view(bags, -1), table.rows, per_sample_weights=weights.view(bags, -1).to(table.rows.dtype), mode="sum"
    )
    return out.view(n, num_queries, heads * head_dim)


def resolve_impl(impl: DeformAttnImpl, device: torch.device) -> Literal["reference", "gather"]:
    """``auto`` picks ``gather`` on CPU (measured faster) and ``reference`` elsewhere."""
    if impl == "auto":
        return "gather" if device.type == "cpu" else "reference"
    return impl


class MSDeformAttn(nn.Module):
    """Multi-scale deformable self-attention over flattened feature levels."""

    def __init__(
        self, dim: int, num_levels: int, num_heads: int, num_points: int, impl: DeformAttnImpl = "auto"
    ) -> None:
        super().__init__()
        self.impl = impl
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
        chunk_size: int | None = None,
    ) -> Tensor:
        """Attend from each query to a few learned offsets around its reference point on every level.

        Args:
            queries: ``[N, Lq, D]`` (features plus position encoding).
            reference_points: ``[N, Lq, L, 2]`` normalised (x, y).
            features: ``[N, S, D]`` flattened levels (the values).
            spatial_shapes: ``[(H_l, W_l)]``.
            chunk_size: queries per step with the ``gather`` implementation (bounds the size of the
                temporaries, whose first touch otherwise dominates on CPU); None = all at once.

        Returns:
            ``[N, Lq, D]``.
        """
        n, num_queries, _ = queries.shape
        value = self.value_proj(features).view(n, features.shape[1], self.num_heads, -1)
        if resolve_impl(self.impl, value.device) == "reference":
            return self._attend(queries, reference_points, value, spatial_shapes, ms_deform_attn_sample)
        table = gather_table(value, spatial_shapes)
        step = chunk_size or num_queries
        return torch.cat(
            [
                self._attend(queries[:, i : i + step], reference_points[:, i : i + step], table, spatial_shapes,
                             ms_deform_attn_gather)
                for i in range(0, num_queries, step)
            ],
            dim=1,
        )  # fmt: skip

    def _attend(
        self,
        queries: Tensor,
        reference_points: Tensor,
        values: Tensor | GatherTable,
        spatial_shapes: list[tuple[int, int]],
        sample: Callable[..., Tensor],
    ) -> Tensor:
        n, num_queries, _ = queries.shape
        shape = (n, num_queries, self.num_heads, self.num_levels, self.num_points)
        # Sampling locations and attention weights in float32 even under autocast: a bfloat16 offset of
        # 20 pixels is off by up to 0.06 pixel, and the weights sum to one over 12 points.
        with torch.autocast(queries.device.type, enabled=False):
            queries32 = queries.float()
            offsets = self.sampling_offsets(queries32).view(*shape, 2)
            weights = self.attention_weights(queries32).view(n, num_queries, self.num_heads, -1)
        weights = weights.softmax(-1).view(shape)
        # offsets are in pixels of each level: divide by (W_l, H_l)
        normaliser = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=offsets.dtype, device=queries.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(sample(values, spatial_shapes, locations, weights))

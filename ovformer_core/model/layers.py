"""Building blocks shared by the pixel decoder, the decoder and the classifier: the only copies.

Attention layers wrap ``nn.MultiheadAttention`` (sequence-first, as the official checkpoints store
``in_proj_weight``/``out_proj``), with the residual and LayerNorm either after (post-norm, the
official setting) or before the attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Sine position encodings use this wavelength base and a 2*pi range (DETR / Mask2Former).
SINE_TEMPERATURE = 10000.0
SINE_SCALE = 2 * math.pi
#: Added to the last cumulative position before normalising (official PositionEmbeddingSine).
SINE_EPS = 1e-6


class MLP(nn.Module):
    """Linear layers with ReLU between them (not after the last)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class AttentionLayer(nn.Module):
    """Multi-head attention with residual and LayerNorm; serves as self- and cross-attention.

    Tensors are sequence-first: queries ``[Lq, B, D]``, memory ``[Lk, B, D]``.
    """

    def __init__(self, dim: int, num_heads: int, pre_norm: bool = False) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm

    def forward(
        self,
        queries: Tensor,
        memory: Tensor | None = None,
        query_pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from ``queries`` to ``memory`` (to ``queries`` themselves when ``memory`` is None).

        Args:
            queries: ``[Lq, B, D]``.
            memory: ``[Lk, B, D]`` or None for self-attention.
            query_pos: added to the attention queries (and keys, for self-attention).
            memory_pos: added to the keys for cross-attention.
            attn_mask: bool ``[B * heads, Lq, Lk]``, True = blocked.
        """
        x = self.norm(queries) if self.pre_norm else queries
        q = x if query_pos is None else x + query_pos
        if memory is None:
            k, v = q, x
        else:
            k = memory if memory_pos is None else memory + memory_pos
            v = memory
        out = queries + self.attn(q, k, v, attn_mask=attn_mask, need_weights=False)[0]
        return out if self.pre_norm else self.norm(out)


class FFNLayer(nn.Module):
    """Two-layer feed-forward block with residual and LayerNorm."""

    def __init__(self, dim: int, hidden_dim: int, pre_norm: bool = False) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x) if self.pre_norm else x
        out = x + self.linear2(F.relu(self.linear1(y)))
        return out if self.pre_norm else self.norm(out)


def _sine_features(positions: Tensor, num_feats: int) -> Tensor:
    """Interleaved sin/cos of ``positions[..., None] / 10000^(2*floor(i/2)/num_feats)``."""
    idx = torch.arange(num_feats, dtype=torch.float32, device=positions.device)
    dim_t = SINE_TEMPERATURE ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)
    angles = positions[..., None] / dim_t
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_position_encoding(
    num_frames: int, height: int, width: int, num_feats: int, temporal: bool, device: torch.device
) -> Tensor:
    """Normalised sine position encoding of a ``T x H x W`` grid with no padding mask.

    The y and x parts (``num_feats`` channels each) are concatenated; with ``temporal`` a time part
    of ``2 * num_feats`` channels, normalised over the clip's frames, is added (3-D encoding of the
    video decoder). Without it every frame gets the same 2-D encoding (image model).

    Returns:
        ``[T, 2 * num_feats, H, W]`` float32.
    """

    def normalised(n: int) -> Tensor:
        pos = torch.arange(1, n + 1, dtype=torch.float32, device=device)
        return pos / (n + SINE_EPS) * SINE_SCALE

    y = _sine_features(normalised(height), num_feats)  # [H, F]
    x = _sine_features(normalised(width), num_feats)  # [W, F]
    spatial = torch.cat(
        (y[:, None, :].expand(height, width, num_feats), x[None, :, :].expand(height, width, num_feats)),
        dim=-1,
    )  # [H, W, 2F]
    pos = spatial[None].expand(num_frames, height, width, 2 * num_feats)
    if temporal:
        z = _sine_features(normalised(num_frames), 2 * num_feats)  # [T, 2F]
        pos = pos + z[:, None, None, :]
    return pos.permute(0, 3, 1, 2).contiguous()


class Conv2dNorm(nn.Conv2d):
    """A convolution followed by an optional norm and ReLU (the conv's own weight stays top-level)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        norm: nn.Module | None = None,
        relu: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm is None)
        self.norm = norm
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x

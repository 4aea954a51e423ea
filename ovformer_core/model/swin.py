"""Swin Transformer backbone laid out like the official D2SwinTransformer (Mask2Former's detection Swin).

The module tree mirrors the official state-dict names so that an official checkpoint loads with
``strict=True`` after stripping the ``backbone.`` prefix:

- ``patch_embed.proj`` (Conv2d, kernel = stride = patch size) and ``patch_embed.norm``;
- ``layers.{i}.blocks.{j}.{norm1, attn.qkv, attn.proj, attn.relative_position_bias_table,
  attn.relative_position_index, norm2, mlp.fc1, mlp.fc2}``;
- ``layers.{i}.downsample.{norm, reduction}`` at the END of stages 0..2 (original Swin layout; timm
  puts it at the start of the next stage instead, which is why timm's Swin is not used here);
- ``norm0`` .. ``norm3``: one LayerNorm per output level.

Behaviour that matters for parity with the detection Swin (it differs from the classification Swin):

- the input is zero-padded at the right/bottom to a multiple of the patch size;
- every block zero-pads its (normalised) map at the right/bottom to a multiple of the window size,
  and the padded tokens take part in attention like any other token;
- odd blocks use a cyclic shift of ``window_size // 2`` with an additive -100 mask between regions,
  ALWAYS, even when the map is smaller than one window (no clamping of window or shift);
- patch merging zero-pads odd sizes, so a stage of size HxW yields ceil(H/2) x ceil(W/2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import Tensor, nn

from ovformer_core.config import SwinConfig
from ovformer_core.errors import OVFormerError

#: Value added to attention logits between tokens of different regions in a shifted window
#: (official BasicLayer.forward uses -100, not -inf; the softmax then gives ~e-44, not exactly 0).
SHIFTED_WINDOW_MASK_VALUE = -100.0
#: Std of the truncated-normal init of the relative position bias tables (official WindowAttention).
BIAS_TABLE_INIT_STD = 0.02
#: Number of output levels (res2..res5) and the feature names the backbone returns.
SWIN_FEATURE_NAMES = ("res2", "res3", "res4", "res5")


def relative_position_index(window_size: int) -> Tensor:
    """Index into the bias table for every pair of tokens of one window.

    Token ``i`` sits at (row_i, col_i) in the window (row-major). The pair (i, j) reads row
    ``(row_i - row_j + w - 1) * (2w - 1) + (col_i - col_j + w - 1)`` of the ``[(2w-1)^2, heads]`` table.

    Args:
        window_size: Window side ``w``.

    Returns:
        int64 tensor ``[w*w, w*w]``.
    """
    rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    row_offset = rows[:, None] - rows[None, :] + window_size - 1
    col_offset = cols[:, None] - cols[None, :] + window_size - 1
    return row_offset * (2 * window_size - 1) + col_offset


def split_windows(x: Tensor, window_size: int) -> Tensor:
    """Cut a channels-last map into non-overlapping windows.

    Args:
        x: ``[B, H, W, C]`` with H and W multiples of ``window_size``.
        window_size: Window side ``w``.

    Returns:
        ``[B * nW, w*w, C]``, windows ordered batch-major, then row-major over the window grid.
    """
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window_size, window_size, width // window_size, window_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, channels)


def merge_windows(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of ``split_windows``.

    Args:
        windows: ``[B * nW, w*w, C]``.
        window_size: Window side ``w``.
        height: Map height H (multiple of ``w``).
        width: Map width W (multiple of ``w``).

    Returns:
        ``[B, H, W, C]``.
    """
    channels = windows.shape[-1]
    grid_h, grid_w = height // window_size, width // window_size
    x = windows.view(-1, grid_h, grid_w, window_size, window_size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def shifted_window_mask(
    padded_height: int, padded_width: int, window_size: int, shift_size: int, device: torch.device
) -> Tensor:
    """Additive attention mask for the shifted (odd) blocks of a stage.

    After the cyclic shift by ``-shift_size``, each axis of the padded map splits into three bands:
    ``[0, L - w)``, ``[L - w, L - shift)`` and ``[L - shift, L)``; tokens may only attend to tokens
    of the same (row band, column band) region.

    Args:
        padded_height: Map height after padding to a multiple of the window size.
        padded_width: Map width after padding to a multiple of the window size.
        window_size: Window side ``w``.
        shift_size: Cyclic shift (``w // 2``).
        device: Where to build the mask.

    Returns:
        float32 ``[nW, w*w, w*w]``: 0 within a region, ``SHIFTED_WINDOW_MASK_VALUE`` across regions.
    """

    def band(length: int) -> Tensor:
        coords = torch.arange(length, device=device)
        return (coords >= length - window_size).long() + (coords >= length - shift_size).long()

    regions = band(padded_height)[:, None] * 3 + band(padded_width)[None, :]
    region_windows = split_windows(regions[None, :, :, None], window_size).squeeze(-1)
    crosses = region_windows[:, :, None] != region_windows[:, None, :]
    mask = torch.zeros(crosses.shape, dtype=torch.float32, device=device)
    return mask.masked_fill(crosses, SHIFTED_WINDOW_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    relative_position_index: Tensor

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent: the official checkpoints carry it, so strict loading expects it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=BIAS_TABLE_INIT_STD)

    def position_bias(self) -> Tensor:
        """Relative position bias ``[heads, w*w, w*w]``."""
        num_tokens = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(num_tokens, num_tokens, self.num_heads).permute(2, 0, 1)

    def forward(self, windows: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attend within each window.

        Args:
            windows: ``[B * nW, N, C]`` tokens, N = w*w, windows ordered batch-major.
            mask: Optional additive ``[nW, N, N]`` shifted-window mask.

        Returns:
            ``[B * nW, N, C]``.
        """
        num_windows_total, num_tokens, channels = windows.shape
        head_dim = channels // self.num_heads
        qkv = self.qkv(windows).view(num_windows_total, num_tokens, 3, self.num_heads, head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B*nW, heads, N, d]
        bias = self.position_bias()
        if mask is None:
            attn_bias = bias.unsqueeze(0).to(query.dtype)
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_bias)
        else:
            # Fold windows into the head axis so one [1, nW*heads, N, N] bias broadcasts over the
            # batch: scaled_dot_product_attention then stays 4-D (what the fused kernels accept).
            num_windows = mask.shape[0]
            batch = num_windows_total // num_windows
            attn_bias = (mask.unsqueeze(1) + bias.unsqueeze(0)).to(query.dtype)
            attn_bias = attn_bias.reshape(1, num_windows * self.num_heads, num_tokens, num_tokens)
            shape = (batch, num_windows * self.num_heads, num_tokens, head_dim)
            out = F.scaled_dot_product_attention(
                query.reshape(shape), key.reshape(shape), value.reshape(shape), attn_mask=attn_bias
            )
            # reshape, not view: CUDA's fused kernels may return a non-contiguous output
            out = out.reshape(num_windows_total, self.num_heads, num_tokens, head_dim)
        out = out.transpose(1, 2).reshape(num_windows_total, num_tokens, channels)
        return self.proj(out)


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention + MLP, both residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: float,
        layer_norm_eps: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: Tensor, shift_mask: Tensor | None) -> Tensor:
        """Args:
            x: ``[B, H, W, C]`` channels-last map.
            shift_mask: ``[nW, N, N]`` mask for the padded map; used only when this block shifts.

        Returns:
            ``[B, H, W, C]``.
        """
        _, height, width, _ = x.shape
        window = self.window_size
        shortcut = x
        x = self.norm1(x)
        # Padding comes after norm1, so padded tokens are exact zeros that still get attended to.
        pad_bottom = (window - height % window) % window
        pad_right = (window - width % window) % window
        x = F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))
        padded_height, padded_width = height + pad_bottom, width + pad_right
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = self.attn(split_windows(x, window), shift_mask if self.shift_size > 0 else None)
        x = merge_windows(windows, window, padded_height, padded_width)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :height, :width, :]
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (C -> 4C), LayerNorm, then a linear map to 2C; halves H and W."""

    def __init__(self, dim: int, layer_norm_eps: float) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``[B, H, W, C]``.

        Returns:
            ``[B, ceil(H/2), ceil(W/2), 2C]``.
        """
        _, height, width, _ = x.shape
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        # Concatenation order fixes the meaning of the reduction weight's input columns:
        # (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then an optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_paths: list[float],
        layer_norm_eps: float,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if index % 2 == 0 else self.shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=drop_paths[index],
                layer_norm_eps=layer_norm_eps,
            )
            for index in range(depth)
        )
        self.downsample = PatchMerging(dim, layer_norm_eps) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Args:
            x: ``[B, H, W, C]``.

        Returns:
            The stage output ``[B, H, W, C]`` and the merged input of the next stage
            ``[B, ceil(H/2), ceil(W/2), 2C]`` (None for the last stage).
        """
        _, height, width, _ = x.shape
        shift_mask = None
        if self.shift_size > 0 and len(self.blocks) > 1:
            window = self.window_size
            padded_height = -(-height // window) * window
            padded_width = -(-width // window) * window
            shift_mask = shifted_window_mask(padded_height, padded_width, window, self.shift_size, x.device)
        for block in self.blocks:
            x = block(x, shift_mask)
        merged = self.downsample(x) if self.downsample is not None else None
        return x, merged


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (input zero-padded to patch multiples), optional LayerNorm."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int, norm: bool, eps: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=eps) if norm else None

    def forward(self, images: Tensor) -> Tensor:
        """Args:
            images: ``[N, 3, H, W]``.

        Returns:
            ``[N, ceil(H/p), ceil(W/p), C]`` channels-last.
        """
        height, width = images.shape[-2:]
        pad_bottom = (self.patch_size - height % self.patch_size) % self.patch_size
        pad_right = (self.patch_size - width % self.patch_size) % self.patch_size
        x = self.proj(F.pad(images, (0, pad_right, 0, pad_bottom))).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


class SwinTransformer(nn.Module):
    """Swin backbone: images in, res2..res5 feature maps out (NCHW, each after its output norm).

    Frames of a video clip are simply stacked in the batch dimension.

    Attributes:
        out_channels: ``{"res2": C, "res3": 2C, "res4": 4C, "res5": 8C}``, C = ``embed_dim``.
        out_strides: ``{"res2": p, "res3": 2p, "res4": 4p, "res5": 8p}``, p = ``patch_size``.
    """

    def __init__(self, cfg: SwinConfig, in_channels: int = 3) -> None:
        super().__init__()
        _check_swin_config(cfg)
        num_levels = len(cfg.depths)
        dims = [cfg.embed_dim * 2**level for level in range(num_levels)]
        self.out_channels = {name: dims[i] for i, name in enumerate(SWIN_FEATURE_NAMES)}
        self.out_strides = {name: cfg.patch_size * 2**i for i, name in enumerate(SWIN_FEATURE_NAMES)}

        self.patch_embed = PatchEmbed(cfg.patch_size, in_channels, cfg.embed_dim, cfg.patch_norm, cfg.layer_norm_eps)
        # Stochastic depth grows linearly over all blocks of all stages (inactive in eval mode).
        drop_paths = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
        self.layers = nn.ModuleList()
        first_block = 0
        for level, depth in enumerate(cfg.depths):
            self.layers.append(
                SwinStage(
                    dim=dims[level],
                    depth=depth,
                    num_heads=cfg.num_heads[level],
                    window_size=cfg.window_size,
                    mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias,
                    drop_paths=drop_paths[first_block : first_block + depth],
                    layer_norm_eps=cfg.layer_norm_eps,
                    downsample=level < num_levels - 1,
                )
            )
            first_block += depth
        for level in range(num_levels):
            self.add_module(f"norm{level}", nn.LayerNorm(dims[level], eps=cfg.layer_norm_eps))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Args:
            images: ``[N, 3, H, W]`` normalised images (any H, W; padded internally as needed).

        Returns:
            ``{"res2": [N, C, H/4, W/4], ..., "res5": [N, 8C, H/32, W/32]}`` (sizes rounded up).
        """
        if images.dim() != 4:
            raise OVFormerError(f"Swin expects images shaped [N, 3, H, W], got {list(images.shape)}")
        x: Tensor | None = self.patch_embed(images)
        features: dict[str, Tensor] = {}
        for level, (name, stage) in enumerate(zip(SWIN_FEATURE_NAMES, self.layers, strict=True)):
            assert x is not None, "only the last stage has no patch merging"
            stage_out, x = stage(x)
            stage_out = self.get_submodule(f"norm{level}")(stage_out)
            features[name] = stage_out.permute(0, 3, 1, 2).contiguous()
        return features


def _check_swin_config(cfg: SwinConfig) -> None:
    """Reject Swin settings that cannot build a 4-level backbone (one-line ``OVFormerError``)."""
    levels = len(SWIN_FEATURE_NAMES)
    if len(cfg.depths) != levels or len(cfg.num_heads) != levels:
        raise OVFormerError(
            f"Swin needs {levels} stages: got depths {list(cfg.depths)} and num_heads "
            f"{list(cfg.num_heads)}; give {levels} values to each"
        )
    if cfg.patch_size < 1 or cfg.window_size < 1 or cfg.embed_dim < 1 or min(cfg.depths) < 1:
        raise OVFormerError("Swin patch_size, window_size, embed_dim and every depth must be positive; fix the config")
    for level, heads in enumerate(cfg.num_heads):
        dim = cfg.embed_dim * 2**level
        if heads < 1 or dim % heads:
            raise OVFormerError(
                f"Swin stage {level} has {dim} channels, not divisible by num_heads={heads}; "
                "choose num_heads that divide embed_dim * 2**stage"
            )

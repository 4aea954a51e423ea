"""Scores, top-k candidates, and masks mapped back to the original resolution (official test path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ovformer_core.model.preprocess import PreprocessInfo

#: Masks upsampled together: bounds the temporary full-resolution tensor.
UPSAMPLE_CHUNK = 64
#: Output pixels per upsampling step of ``mask_columns`` on a CPU: a few maps at a time, so each map's
#: floats are still in the cache when they are thresholded and transposed. ``benchmarks/bench_masks.py``
#: (2 threads, one clip of 500 maps) against 64 maps per step and one transposing copy: 1.86x at 360p,
#: 1.73x at 720p, 1.65x at 1080p.
CPU_CHUNK_PIXELS = 1 << 21


def pair_scores(class_logits: Tensor, object_logits: Tensor) -> Tensor:
    """``sqrt(sigmoid(class) * softmax(objectness)[object])`` for every (query, class).

    Args:
        class_logits: ``[..., Q, C + 1]`` (the background column is dropped).
        object_logits: ``[..., Q, 2]``.

    Returns:
        ``[..., Q, C]``.
    """
    cls = class_logits[..., :-1].sigmoid()
    obj = object_logits.softmax(-1)[..., :-1]
    return (cls * obj) ** 0.5


def top_k_pairs(scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Best ``k`` (query, class) pairs of a ``[Q, C]`` score grid, flattened query-major.

    Returns:
        (scores ``[k]``, labels ``[k]``, query indices ``[k]``) in ``torch.topk(sorted=False)`` order,
        like the official code (the order carries no meaning).
    """
    num_classes = scores.shape[1]
    k = min(k, scores.numel())
    values, flat = scores.flatten().topk(k, sorted=False)
    return values, flat % num_classes, torch.div(flat, num_classes, rounding_mode="floor")


def _upsample(maps: Tensor, info: PreprocessInfo) -> Tensor:
    """Float ``[N, T, h, w]`` logits -> ``[N, T, H, W]`` at the original size, as the official test path does.

    Upsample bilinearly to the padded size, crop the padding, resize to the original size.
    """
    x = F.interpolate(maps.float(), size=info.padded_size, mode="bilinear", align_corners=False)
    rh, rw = info.resized_size
    x = x[:, :, :rh, :rw]
    if (rh, rw) != info.original_size:
        x = F.interpolate(x, size=info.original_size, mode="bilinear", align_corners=False)
    return x


def masks_to_original(mask_logits: Tensor, info: PreprocessInfo) -> Tensor:
    """Low-resolution mask logits -> boolean masks at the original frame size.

    Upsampled as ``_upsample`` does, then thresholded at logit > 0; done in chunks of maps to bound memory.

    Args:
        mask_logits: ``[N, T, h, w]``.

    Returns:
        bool ``[N, T, H, W]`` on the same device.
    """
    chunk_size = max(1, UPSAMPLE_CHUNK // max(1, mask_logits.shape[1]))
    return torch.cat([_upsample(chunk, info) > 0 for chunk in mask_logits.split(chunk_size, dim=0)], 0)


def mask_columns(mask_logits: Tensor, info: PreprocessInfo) -> tuple[Tensor, Tensor]:
    """A clip's masks at the original size, transposed for RLE, skipping the maps with nothing in them.

    A map whose low-resolution logits are all <= 0 stays all background at every size (bilinear weights
    are >= 0 and sum to 1), so only the others are upsampled: exact. Unmatched queries often predict nothing.
    Each chunk of maps is thresholded straight into its transposed place in the result: one pass, no
    full-size copy; on a CPU the chunks are small enough to stay in the cache (``CPU_CHUNK_PIXELS``).

    Args:
        mask_logits: ``[Q, t, h, w]``.

    Returns:
        (columns bool ``[M, W, H]``: the non-empty masks transposed, frame by frame and query by query
        within a frame; present bool ``[t, Q]``: which (frame, query) maps they are), on the same device.
    """
    present = (mask_logits > 0).flatten(2).any(-1).T.contiguous()  # [t, Q]
    maps = mask_logits.transpose(0, 1)[present]  # [M, h, w], frame-major
    height, width = info.original_size
    columns = torch.empty((len(maps), width, height), dtype=torch.bool, device=mask_logits.device)
    if maps.device.type == "cpu":
        padded_height, padded_width = info.padded_size  # the first step's output can be the larger one
        chunk_size = max(1, CPU_CHUNK_PIXELS // max(height * width, padded_height * padded_width))
    else:
        chunk_size = UPSAMPLE_CHUNK
    for start in range(0, len(maps), chunk_size):
        upsampled = _upsample(maps[start : start + chunk_size, None], info)[:, 0]
        torch.gt(upsampled.mT, 0, out=columns[start : start + chunk_size])
    return columns, present


def run_starts(columns: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where each mask's column-major runs start, found where the masks are (for ``io.rle.rles_from_run_starts``).

    On a GPU this replaces copying whole masks to the host and scanning them there: only the boundaries
    (a few per column an object crosses) leave the device.

    Args:
        columns: bool ``[M, W, H]`` (``mask_columns``).

    Returns:
        (mask index ``[K]``, pixel index ``[K]`` where a run starts (1..H*W-1), first pixel bool ``[M]``).
    """
    flat = columns.flatten(1)  # [M, W*H]; reshape(M, -1) cannot infer W*H when M is 0
    boundaries = (flat[:, 1:] != flat[:, :-1]).nonzero()  # row-major: by mask, then position
    return boundaries[:, 0], boundaries[:, 1] + 1, flat[:, 0]

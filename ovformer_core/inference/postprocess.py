"""Scores, top-k candidates, and masks mapped back to the original resolution (official test path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ovformer_core.model.preprocess import PreprocessInfo

#: Queries whose masks are upsampled together: bounds the temporary full-resolution tensor.
UPSAMPLE_CHUNK = 16


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


def masks_to_original(mask_logits: Tensor, info: PreprocessInfo) -> Tensor:
    """Low-resolution mask logits -> boolean masks at the original frame size.

    Upsample bilinearly to the padded size, crop the padding, resize to the original size, then
    threshold at logit > 0; done in chunks of queries to bound memory.

    Args:
        mask_logits: ``[N, T, h, w]``.

    Returns:
        bool ``[N, T, H, W]`` on the same device.
    """
    out = []
    rh, rw = info.resized_size
    for chunk in mask_logits.split(UPSAMPLE_CHUNK, dim=0):
        x = F.interpolate(chunk.float(), size=info.padded_size, mode="bilinear", align_corners=False)
        x = x[:, :, :rh, :rw]
        if (rh, rw) != info.original_size:
            x = F.interpolate(x, size=info.original_size, mode="bilinear", align_corners=False)
        out.append(x > 0)
    return torch.cat(out, 0)

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


def image_instances(
    class_logits: Tensor, object_logits: Tensor, mask_logits: Tensor, info: PreprocessInfo, top_k: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The image model's instance rule (one image, LVIS checkpoints).

    Top-k (query, class) pairs by class score; masks at the original size; final score = class
    score x mask score, the mean sigmoid over the mask's pixels at the original size.

    Args:
        class_logits: ``[Q, C + 1]``; object_logits ``[Q, 2]``; mask_logits ``[Q, h, w]``.

    Returns:
        (scores ``[k]``, labels ``[k]``, query indices ``[k]``, bool masks ``[k, H, W]``, class scores ``[k]``).
    """
    class_scores, labels, slots = top_k_pairs(pair_scores(class_logits, object_logits), top_k)
    rh, rw = info.resized_size
    logits = F.interpolate(mask_logits[None].float(), size=info.padded_size, mode="bilinear", align_corners=False)
    logits = logits[:, :, :rh, :rw]
    if (rh, rw) != info.original_size:
        logits = F.interpolate(logits, size=info.original_size, mode="bilinear", align_corners=False)
    logits = logits[0][slots]
    masks = logits > 0
    mask_scores = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    return class_scores * mask_scores, labels, slots, masks, class_scores

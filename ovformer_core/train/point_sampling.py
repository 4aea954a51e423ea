"""Point sampling of mask maps (PointRend style) used by the matcher and the mask losses.

Point coordinates are normalised to ``[0, 1]`` in ``(x, y)`` order, so the same points address maps of
any resolution (predictions at a quarter of the input, targets at full size).
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(maps: Tensor, point_coords: Tensor) -> Tensor:
    """Bilinearly read ``maps`` at normalised points.

    Args:
        maps: ``[N, C, H, W]`` maps (logits or 0/1 masks).
        point_coords: ``[N, P, 2]`` points in ``[0, 1]``, ``(x, y)`` order; pixel ``(i, j)`` has its centre at
            ``((j + 0.5) / W, (i + 0.5) / H)``.

    Returns:
        ``[N, C, P]`` values at the points (zero padding outside the map).
    """
    # grid_sample wants [-1, 1]; align_corners=False makes pixel centres land on (k + 0.5) / size.
    grid = (2.0 * point_coords - 1.0).unsqueeze(2)
    return F.grid_sample(maps, grid.to(maps.dtype), mode="bilinear", align_corners=False).squeeze(3)


def mask_uncertainty(mask_logits: Tensor) -> Tensor:
    """Uncertainty of a mask logit: ``-|logit|``, highest where the prediction is closest to 0.5.

    Args:
        mask_logits: any shape.

    Returns:
        Same shape as the input.
    """
    return -mask_logits.abs()


def sample_uncertain_points(
    mask_logits: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick points biased toward uncertain mask logits (Mask2Former training recipe).

    ``int(num_points * oversample_ratio)`` random candidates are drawn; the
    ``int(num_points * importance_sample_ratio)`` most uncertain of them are kept and the rest of the
    ``num_points`` are fresh uniform points.

    Args:
        mask_logits: ``[N, 1, H, W]`` predicted mask logits.
        num_points: points per map, P.
        oversample_ratio: candidates drawn per kept point (>= 1).
        importance_sample_ratio: share of the points chosen by uncertainty, in ``[0, 1]``.
        generator: source of randomness (deterministic tests).

    Returns:
        ``[N, P, 2]`` normalised ``(x, y)`` points.
    """
    num_maps = mask_logits.shape[0]
    device = mask_logits.device
    num_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(num_maps, num_candidates, 2, device=device, generator=generator)
    uncertainty = mask_uncertainty(point_sample(mask_logits, candidates))[:, 0, :]  # [N, P']
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    top_idx = uncertainty.topk(num_uncertain, dim=1).indices  # [N, k]
    chosen = torch.gather(candidates, 1, top_idx[:, :, None].expand(-1, -1, 2))
    if num_random > 0:
        uniform = torch.rand(num_maps, num_random, 2, device=device, generator=generator)
        chosen = torch.cat([chosen, uniform], dim=1)
    return chosen

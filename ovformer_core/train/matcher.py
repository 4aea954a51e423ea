"""Hungarian matching of predicted queries to ground-truth video instances (official OVFormer costs).

The cost of pairing query ``q`` with instance ``n`` (label ``c``, mask ``m``) is

    class_weight * -sqrt(sigmoid(class_logit[q, c]) * softmax(object_logits[q])[0])
    + mask_weight * BCE(mask_logits[q], m)   (mean over T x P sampled points)
    + dice_weight * (1 - (2 * sum(p * m) + 1) / (sum(p) + sum(m) + 1))

where the mask terms use ``num_points`` uniform random points shared by every frame, query and target.
The official matcher stores an objectness weight but never adds a separate objectness term: objectness
enters only through the geometric mean in the class cost, and so it does here.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ovformer_core.inference.postprocess import pair_scores
from ovformer_core.train.point_sampling import point_sample

#: The cost a NaN or infinite entry of the cost matrix is replaced with (real costs are a few units).
_UNMATCHABLE = 1e8


class HeadPredictions(Protocol):
    """What the matcher and criterion read from a head output (``HeadOutputs`` or ``WindowOutput``)."""

    class_logits: Tensor  # [B, Q, C + 1], last column background
    object_logits: Tensor  # [B, Q, 2], index 0 object
    mask_logits: Tensor  # [B, Q, T, h, w]


@dataclass(frozen=True)
class VideoTarget:
    """Ground truth of one clip.

    Attributes:
        labels: ``[N]`` int64 category indices in ``0..C-1``.
        masks: ``[N, T, H, W]`` 0/1 masks (bool or float), any resolution.
    """

    labels: Tensor
    masks: Tensor


def as_video_target(target: "VideoTarget | Mapping[str, Tensor]") -> VideoTarget:
    """Accept a ``VideoTarget`` or a dict with ``labels`` and ``masks`` keys."""
    if isinstance(target, VideoTarget):
        return target
    return VideoTarget(labels=target["labels"], masks=target["masks"])


@dataclass(frozen=True)
class MatchIndices:
    """One clip's matching: ``query_idx[k]`` is paired with ``target_idx[k]``; both ``[min(Q, N)]`` int64."""

    query_idx: Tensor
    target_idx: Tensor


def class_cost(class_logits: Tensor, object_logits: Tensor, labels: Tensor) -> Tensor:
    """Negative joint class-and-objectness probability.

    Args:
        class_logits: ``[Q, C + 1]``.
        object_logits: ``[Q, 2]``.
        labels: ``[N]``.

    Returns:
        ``[Q, N]`` cost ``-sqrt(sigmoid(class) * p_object)`` at each target's label.
    """
    return -pair_scores(class_logits, object_logits)[:, labels]


def pairwise_sigmoid_ce(point_logits: Tensor, point_labels: Tensor) -> Tensor:
    """Mean binary cross-entropy between every prediction and every target.

    Args:
        point_logits: ``[Q, P]`` logits.
        point_labels: ``[N, P]`` labels in ``[0, 1]``.

    Returns:
        ``[Q, N]`` mean over the P points.
    """
    num_points = point_logits.shape[1]
    # BCE(x, y) = y * softplus(-x) + (1 - y) * softplus(x), which splits into two matrix products.
    loss_if_positive = torch.nn.functional.softplus(-point_logits)
    loss_if_negative = torch.nn.functional.softplus(point_logits)
    cost = loss_if_positive @ point_labels.T + loss_if_negative @ (1 - point_labels).T
    return cost / num_points


def pairwise_dice(point_logits: Tensor, point_labels: Tensor) -> Tensor:
    """Dice loss (smoothed by 1) between every prediction and every target.

    Args:
        point_logits: ``[Q, P]`` logits.
        point_labels: ``[N, P]`` labels in ``[0, 1]``.

    Returns:
        ``[Q, N]`` ``1 - (2 |p m| + 1) / (|p| + |m| + 1)``.
    """
    prob = point_logits.sigmoid()
    numerator = 2 * prob @ point_labels.T
    denominator = prob.sum(-1)[:, None] + point_labels.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher:
    """One-to-one assignment of queries to targets minimising the weighted cost (per clip).

    Args:
        class_weight: weight of the class cost (official CLASS_WEIGHT 2.0).
        mask_weight: weight of the mask BCE cost (official MASK_WEIGHT 5.0).
        dice_weight: weight of the dice cost (official DICE_WEIGHT 5.0).
        num_points: uniform points per frame for the mask costs (official TRAIN_NUM_POINTS 12544).
    """

    def __init__(
        self, class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0, num_points: int = 12544
    ) -> None:
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self,
        class_logits: Tensor,
        object_logits: Tensor,
        mask_logits: Tensor,
        target: VideoTarget,
        point_coords: Tensor,
    ) -> Tensor:
        """Weighted matching cost of one clip.

        Args:
            class_logits: ``[Q, C + 1]``.
            object_logits: ``[Q, 2]``.
            mask_logits: ``[Q, T, h, w]``.
            target: labels ``[N]``, masks ``[N, T, H, W]``.
            point_coords: ``[P, 2]`` normalised ``(x, y)`` points shared by all frames and masks.

        Returns:
            ``[Q, N]`` float32 cost.
        """
        num_queries = mask_logits.shape[0]
        num_targets = target.masks.shape[0]
        # The frames ride in the channel dimension, so every frame is read at the same points.
        pred_points = point_sample(mask_logits.float(), point_coords[None].expand(num_queries, -1, -1)).flatten(1)
        target_masks = target.masks.to(torch.float32)
        target_points = point_sample(target_masks, point_coords[None].expand(num_targets, -1, -1)).flatten(1)
        return (
            self.class_weight * class_cost(class_logits.float(), object_logits.float(), target.labels)
            + self.mask_weight * pairwise_sigmoid_ce(pred_points, target_points)
            + self.dice_weight * pairwise_dice(pred_points, target_points)
        )

    @torch.no_grad()
    def __call__(
        self,
        outputs: HeadPredictions,
        targets: Sequence["VideoTarget | Mapping[str, Tensor]"],
        generator: torch.Generator | None = None,
    ) -> list[MatchIndices]:
        """Match every clip of the batch.

        Args:
            outputs: class_logits ``[B, Q, C + 1]``, object_logits ``[B, Q, 2]``, mask_logits ``[B, Q, T, h, w]``.
            targets: B targets (``VideoTarget`` or dicts with ``labels`` ``[N]`` and ``masks`` ``[N, T, H, W]``).
            generator: source of the random points.

        Returns:
            B ``MatchIndices`` with ``min(Q, N)`` pairs each, query indices in increasing order.
        """
        matches = []
        for batch_idx, raw_target in enumerate(targets):
            target = as_video_target(raw_target)
            device = outputs.mask_logits.device
            point_coords = torch.rand(self.num_points, 2, device=device, generator=generator)
            cost = self.cost_matrix(
                outputs.class_logits[batch_idx],
                outputs.object_logits[batch_idx],
                outputs.mask_logits[batch_idx],
                target,
                point_coords,
            )
            # An overflowed forward (fp16) gives NaN/inf costs, which scipy refuses on this rank alone while
            # the others wait in a collective; kept finite, the NaN loss check stops every rank together.
            finite_cost = torch.nan_to_num(cost, nan=_UNMATCHABLE, posinf=_UNMATCHABLE, neginf=_UNMATCHABLE)
            query_idx, target_idx = linear_sum_assignment(finite_cost.cpu().numpy())
            matches.append(
                MatchIndices(
                    query_idx=torch.as_tensor(query_idx, dtype=torch.int64, device=device),
                    target_idx=torch.as_tensor(target_idx, dtype=torch.int64, device=device),
                )
            )
        return matches

"""OVFormer set criterion: federated sigmoid class loss, objectness CE, point-sampled mask BCE and dice.

Facts from the official ``ovformer_video/modeling/criterion.py`` and ``configs/lvvis/video_ovformer_R50_bs8.yaml``:

- Queries are matched to targets with the Hungarian matcher, separately for the final heads and for every
  auxiliary (deep supervision) head.
- Class loss: sigmoid BCE of ``class_logits[..., :C]`` against one-hot labels, only on matched queries and
  only on a federated subset of categories (the GT categories plus categories drawn by frequency^0.5),
  summed, times 1.7, divided by ``B * Q``.
- Objectness loss: 2-way cross-entropy (object / no object) over all queries, the no-object class weighted
  by 0.4. The config's NO_OBJECT_WEIGHT (0.1) reaches the official criterion as ``eos_coef`` but is never
  used; the 0.4 is hard-coded there, so 0.4 is the default here.
- Mask losses: every frame of every matched mask is a separate map; points are picked by uncertainty
  (12544 points, oversample 3.0, importance 0.75); BCE is averaged over points, dice taken per frame; both
  are summed over frames and masks and divided by the number of GT masks in the batch (at least 1).
- Weights: objectness 2, class 2, mask 5, dice 5, the same for every auxiliary head.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ovformer_core.train.matcher import HeadPredictions, HungarianMatcher, MatchIndices, VideoTarget, as_video_target
from ovformer_core.train.point_sampling import point_sample, sample_uncertain_points


@dataclass(frozen=True)
class LossConfig:
    """Loss hyper-parameters; defaults are the official LV-VIS video R50 values.

    Attributes:
        object_weight: objectness CE weight (OBJECT_WEIGHT).
        class_weight: class loss weight and matcher class cost (CLASS_WEIGHT).
        mask_weight: mask BCE weight and matcher cost (MASK_WEIGHT).
        dice_weight: dice weight and matcher cost (DICE_WEIGHT).
        no_object_weight: CE weight of the no-object class (hard-coded 0.4 in the official criterion).
        class_loss_scale: constant factor on the class loss (1.7 in the official criterion).
        num_sample_categories: size of the federated category subset (``num_sample_cats=50``).
        frequency_power: exponent on category image counts for sampling (``load_class_freq(..., 0.5)``).
        num_points: points per mask frame (TRAIN_NUM_POINTS).
        oversample_ratio: candidate points per kept point (OVERSAMPLE_RATIO).
        importance_sample_ratio: share of points chosen by uncertainty (IMPORTANCE_SAMPLE_RATIO).
        deep_supervision: also supervise every auxiliary head (DEEP_SUPERVISION).
    """

    object_weight: float = 2.0
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.4
    class_loss_scale: float = 1.7
    num_sample_categories: int = 50
    frequency_power: float = 0.5
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True


def category_sampling_weights(image_counts: Tensor, power: float = 0.5) -> Tensor:
    """Federated sampling weights ``count ** power``.

    The official code zeroes the counts of categories held out of training (LVIS rare, LV-VIS novel)
    before this; pass zeros for those.

    Args:
        image_counts: ``[C]`` training images per category.
        power: exponent (official 0.5).

    Returns:
        ``[C]`` float weights.
    """
    return image_counts.float() ** power


def federated_categories(
    target_classes: Tensor,
    num_classes: int,
    num_sample_categories: int,
    category_weights: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Categories that the class loss sees: every GT category plus sampled negatives.

    As in the official ``get_fed_loss_inds``, the distinct values of ``target_classes`` (the background
    index C included, when some query is unmatched) count toward ``num_sample_categories``; the rest are
    drawn without replacement with probability proportional to ``category_weights`` (uniform when None).
    Fewer are drawn when fewer categories have non-zero weight.

    Args:
        target_classes: ``[B, Q]`` matched label per query, ``num_classes`` for unmatched queries.
        num_classes: C.
        num_sample_categories: subset size (official 50).
        category_weights: ``[C]`` non-negative sampling weights, or None for uniform.
        generator: source of randomness.

    Returns:
        ``[C]`` bool, True for categories in the subset.
    """
    appeared = torch.unique(target_classes)
    selected = torch.zeros(num_classes + 1, dtype=torch.bool, device=target_classes.device)
    selected[appeared] = True
    num_missing = num_sample_categories - len(appeared)
    if num_missing > 0:
        prob = torch.ones(num_classes + 1, device=target_classes.device)
        if category_weights is not None:
            prob[:num_classes] = category_weights.to(prob)
        prob[num_classes] = 0
        prob[appeared] = 0
        num_missing = min(num_missing, int((prob > 0).sum()))
        if num_missing > 0:
            drawn = torch.multinomial(prob, num_missing, replacement=False, generator=generator)
            selected[drawn] = True
    return selected[:num_classes]


def federated_class_loss(class_logits: Tensor, target_classes: Tensor, category_mask: Tensor, scale: float) -> Tensor:
    """Sigmoid BCE on matched queries over the federated categories.

    Args:
        class_logits: ``[B, Q, C + 1]`` (the background column is ignored).
        target_classes: ``[B, Q]`` label per query, C for unmatched.
        category_mask: ``[C]`` bool, categories that contribute.
        scale: constant factor (official 1.7).

    Returns:
        Scalar ``scale * sum(BCE * category_mask * matched) / (B * Q)``.
    """
    num_batch, num_queries, num_columns = class_logits.shape
    num_classes = num_columns - 1
    one_hot = F.one_hot(target_classes, num_classes + 1)[..., :num_classes].to(class_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(class_logits[..., :num_classes], one_hot, reduction="none")
    matched = (target_classes != num_classes).to(bce.dtype)[..., None]
    weight = category_mask.to(bce.dtype)[None, None, :] * matched
    return scale * (bce * weight).sum() / (num_batch * num_queries)


def objectness_loss(object_logits: Tensor, target_classes: Tensor, num_classes: int, no_object_weight: float) -> Tensor:
    """Weighted 2-way cross-entropy: matched queries are objects (index 0), the others not (index 1).

    Args:
        object_logits: ``[B, Q, 2]``.
        target_classes: ``[B, Q]``, ``num_classes`` for unmatched queries.
        num_classes: C.
        no_object_weight: class weight of index 1 (official 0.4).

    Returns:
        Scalar weighted mean ``sum(w_i * CE_i) / sum(w_i)`` (PyTorch's weighted-mean convention).
    """
    is_no_object = (target_classes == num_classes).long()
    class_weights = torch.tensor([1.0, no_object_weight], dtype=object_logits.dtype, device=object_logits.device)
    return F.cross_entropy(object_logits.transpose(1, 2), is_no_object, weight=class_weights)


def mask_bce_loss(point_logits: Tensor, point_labels: Tensor, num_masks: float) -> Tensor:
    """Sigmoid BCE averaged over points, summed over maps, divided by the number of masks.

    Args:
        point_logits: ``[M, P]`` (M = matched masks x T frames).
        point_labels: ``[M, P]`` in ``[0, 1]``.
        num_masks: normaliser (GT masks in the batch, at least 1).

    Returns:
        Scalar.
    """
    bce = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none")
    return bce.mean(1).sum() / num_masks


def mask_dice_loss(point_logits: Tensor, point_labels: Tensor, num_masks: float) -> Tensor:
    """Dice loss ``1 - (2 |p m| + 1) / (|p| + |m| + 1)`` per map, summed, divided by the number of masks.

    Args:
        point_logits: ``[M, P]``.
        point_labels: ``[M, P]`` in ``[0, 1]``.
        num_masks: normaliser.

    Returns:
        Scalar.
    """
    prob = point_logits.sigmoid()
    numerator = 2 * (prob * point_labels).sum(-1)
    denominator = prob.sum(-1) + point_labels.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def _loss_weights(config: LossConfig) -> dict[str, float]:
    return {
        "loss_ce": config.class_weight,
        "loss_object_ce": config.object_weight,
        "loss_mask": config.mask_weight,
        "loss_dice": config.dice_weight,
    }


def weighted_total(losses: Mapping[str, Tensor], config: LossConfig) -> Tensor:
    """Sum of every loss term times its weight; auxiliary terms (``loss_mask_3``) use their base weight.

    Args:
        losses: terms from ``SetCriterion.__call__``.
        config: loss weights.

    Returns:
        Scalar total loss.
    """
    weights = _loss_weights(config)
    weighted = []
    for name, value in losses.items():
        base_name = name if name in weights else name.rsplit("_", 1)[0]
        weighted.append(weights[base_name] * value)
    return torch.stack(weighted).sum()


class SetCriterion:
    """Matches predictions to targets and computes the OVFormer loss terms for every head.

    Args:
        num_classes: C, the number of training categories.
        config: loss hyper-parameters.
        category_weights: ``[C]`` federated sampling weights (see ``category_sampling_weights``); None for
            uniform sampling.
    """

    def __init__(self, num_classes: int, config: LossConfig, category_weights: Tensor | None = None) -> None:
        self.num_classes = num_classes
        self.config = config
        self.category_weights = category_weights
        self.matcher = HungarianMatcher(
            class_weight=config.class_weight,
            mask_weight=config.mask_weight,
            dice_weight=config.dice_weight,
            num_points=config.num_points,
        )

    def target_classes(
        self, outputs: HeadPredictions, targets: Sequence[VideoTarget], matches: list[MatchIndices]
    ) -> Tensor:
        """``[B, Q]`` matched label per query, C where the query is unmatched."""
        classes = torch.full(
            outputs.class_logits.shape[:2], self.num_classes, dtype=torch.int64, device=outputs.class_logits.device
        )
        for batch_idx, (target, match) in enumerate(zip(targets, matches, strict=True)):
            classes[batch_idx, match.query_idx] = target.labels[match.target_idx].to(classes.device)
        return classes

    def label_losses(
        self,
        outputs: HeadPredictions,
        targets: Sequence[VideoTarget],
        matches: list[MatchIndices],
        generator: torch.Generator | None,
    ) -> dict[str, Tensor]:
        """``loss_ce`` (federated sigmoid) and ``loss_object_ce`` of one head."""
        target_classes = self.target_classes(outputs, targets, matches)
        category_mask = federated_categories(
            target_classes, self.num_classes, self.config.num_sample_categories, self.category_weights, generator
        )
        return {
            "loss_ce": federated_class_loss(
                outputs.class_logits.float(), target_classes, category_mask, self.config.class_loss_scale
            ),
            "loss_object_ce": objectness_loss(
                outputs.object_logits.float(), target_classes, self.num_classes, self.config.no_object_weight
            ),
        }

    def mask_losses(
        self,
        outputs: HeadPredictions,
        targets: Sequence[VideoTarget],
        matches: list[MatchIndices],
        num_masks: float,
        generator: torch.Generator | None,
    ) -> dict[str, Tensor]:
        """``loss_mask`` (BCE) and ``loss_dice`` of one head on uncertainty-sampled points."""
        pred_masks = torch.cat([outputs.mask_logits[b, m.query_idx] for b, m in enumerate(matches)])  # [M, T, h, w]
        if pred_masks.shape[0] == 0:
            # No GT in the batch: zero, but still attached to the graph so backward works. An empty slice,
            # not ``sum() * 0``: an fp16 sum of millions of negative logits overflows to -inf, and -inf * 0
            # is NaN (fp16 autocast on a GPU).
            zero = outputs.mask_logits[:, :0].float().sum()
            return {"loss_mask": zero, "loss_dice": zero}
        target_masks = torch.cat([t.masks[m.target_idx] for t, m in zip(targets, matches, strict=True)])
        # Each frame is its own map: [M * T, 1, h, w].
        pred_maps = pred_masks.float().flatten(0, 1)[:, None]
        target_maps = target_masks.to(pred_maps).flatten(0, 1)[:, None]
        with torch.no_grad():
            point_coords = sample_uncertain_points(
                pred_maps,
                self.config.num_points,
                self.config.oversample_ratio,
                self.config.importance_sample_ratio,
                generator,
            )
            point_labels = point_sample(target_maps, point_coords)[:, 0]
        point_logits = point_sample(pred_maps, point_coords)[:, 0]
        return {
            "loss_mask": mask_bce_loss(point_logits, point_labels, num_masks),
            "loss_dice": mask_dice_loss(point_logits, point_labels, num_masks),
        }

    def head_losses(
        self,
        outputs: HeadPredictions,
        targets: Sequence[VideoTarget],
        num_masks: float,
        generator: torch.Generator | None,
    ) -> dict[str, Tensor]:
        """Match one head to the targets and return its four unweighted terms."""
        matches = self.matcher(outputs, targets, generator)
        return {
            **self.label_losses(outputs, targets, matches, generator),
            **self.mask_losses(outputs, targets, matches, num_masks, generator),
        }

    def __call__(
        self,
        outputs: HeadPredictions,
        targets: Sequence["VideoTarget | Mapping[str, Tensor]"],
        aux_outputs: Sequence[HeadPredictions] = (),
        generator: torch.Generator | None = None,
        num_masks: float | None = None,
    ) -> dict[str, Tensor]:
        """Unweighted loss terms of the final head and of every auxiliary head.

        Args:
            outputs: final heads: class_logits ``[B, Q, C + 1]``, object_logits ``[B, Q, 2]``,
                mask_logits ``[B, Q, T, h, w]``.
            targets: B targets with labels ``[N]`` and masks ``[N, T, H, W]``.
            aux_outputs: auxiliary heads, same shapes (e.g. ``WindowOutput.aux``); ignored unless
                ``config.deep_supervision``.
            generator: source of randomness (points and sampled categories).
            num_masks: normaliser of the mask losses; default the GT count of ``targets`` (at least 1).
                Training passes the count over the whole iteration divided by the number of
                micro-batches, as the official code does with its all-reduced count over processes.

        Returns:
            ``loss_ce``, ``loss_object_ce``, ``loss_mask``, ``loss_dice`` for the final head and the same
            names suffixed ``_i`` for auxiliary head i. Combine them with ``weighted_total``.
        """
        video_targets = [as_video_target(t) for t in targets]
        # Normalise by the GT count (at least 1 so a batch without objects does not divide by zero).
        if num_masks is None:
            num_masks = float(max(sum(len(t.labels) for t in video_targets), 1))
        losses = self.head_losses(outputs, video_targets, num_masks, generator)
        if self.config.deep_supervision:
            for aux_idx, aux in enumerate(aux_outputs):
                aux_losses = self.head_losses(aux, video_targets, num_masks, generator)
                losses.update({f"{name}_{aux_idx}": value for name, value in aux_losses.items()})
        return losses

"""Each OVFormer loss term equals a hand-computed value; deep supervision and gradients work."""

import math

import pytest
import torch

from ovformer_core.model.decoder import HeadOutputs
from ovformer_core.train.criterion import (
    LossConfig,
    SetCriterion,
    category_sampling_weights,
    federated_categories,
    federated_class_loss,
    mask_bce_loss,
    mask_dice_loss,
    objectness_loss,
    weighted_total,
)
from ovformer_core.train.matcher import VideoTarget
from ovformer_core.train.point_sampling import point_sample, sample_uncertain_points


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _bce(x: float, y: float) -> float:
    p = _sigmoid(x)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_defaults_are_the_official_values() -> None:
    config = LossConfig()
    assert (config.object_weight, config.class_weight, config.mask_weight, config.dice_weight) == (2, 2, 5, 5)
    # The official criterion hard-codes 0.4 for no-object (the config's 0.1 is never read).
    assert config.no_object_weight == 0.4
    assert (config.num_points, config.oversample_ratio, config.importance_sample_ratio) == (12544, 3.0, 0.75)
    assert (config.num_sample_categories, config.frequency_power, config.class_loss_scale) == (50, 0.5, 1.7)


def test_federated_class_loss_equals_hand_computation() -> None:
    # B=1, Q=3, C=3: query 0 matched to class 1, query 1 unmatched, query 2 matched to class 0.
    class_logits = torch.tensor([[[0.5, 2.0, -1.0, 0.0], [3.0, -2.0, 1.0, 0.0], [-0.5, 0.2, 1.5, 0.0]]])
    target_classes = torch.tensor([[1, 3, 0]])
    category_mask = torch.tensor([True, False, True])
    loss = federated_class_loss(class_logits, target_classes, category_mask, scale=1.7)
    logits = class_logits[0].tolist()
    expected = 0.0
    for q, label in ((0, 1), (2, 0)):
        for c in (0, 2):  # category 1 is outside the federated subset
            expected += _bce(logits[q][c], 1.0 if c == label else 0.0)
    assert float(loss) == pytest.approx(1.7 * expected / 3, rel=1e-6)


def test_objectness_loss_weights_no_object_queries() -> None:
    object_logits = torch.tensor([[[1.0, -0.5], [0.2, 0.7], [-1.0, 2.0]]])
    target_classes = torch.tensor([[1, 3, 0]])  # C=3: query 1 is a no-object query
    loss = objectness_loss(object_logits, target_classes, num_classes=3, no_object_weight=0.4)
    rows = object_logits[0].tolist()

    def nll(row: list[float], index: int) -> float:
        return -(row[index] - math.log(math.exp(row[0]) + math.exp(row[1])))

    expected = (nll(rows[0], 0) + 0.4 * nll(rows[1], 1) + nll(rows[2], 0)) / (1 + 0.4 + 1)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_mask_losses_on_pixel_centres_equal_dense_formulas() -> None:
    # Two frames of a 2x3 map; reading at every pixel centre must give the dense per-frame losses.
    logits = torch.tensor([[[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], [[-0.5, 0.25, 2.0], [1.5, -3.0, 0.75]]])
    labels = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]])
    rows, cols = torch.meshgrid(torch.arange(2), torch.arange(3), indexing="ij")
    centres = torch.stack([(cols.flatten() + 0.5) / 3, (rows.flatten() + 0.5) / 2], dim=-1)[None].expand(2, -1, -1)
    point_logits = point_sample(logits[:, None], centres)[:, 0]
    point_labels = point_sample(labels[:, None], centres)[:, 0]
    num_masks = 3.0
    expected_bce, expected_dice = 0.0, 0.0
    for frame in range(2):
        xs, ys = logits[frame].flatten().tolist(), labels[frame].flatten().tolist()
        expected_bce += sum(_bce(x, y) for x, y in zip(xs, ys, strict=True)) / 6
        probs = [_sigmoid(x) for x in xs]
        overlap = sum(p * y for p, y in zip(probs, ys, strict=True))
        expected_dice += 1 - (2 * overlap + 1) / (sum(probs) + sum(ys) + 1)
    assert float(mask_bce_loss(point_logits, point_labels, num_masks)) == pytest.approx(expected_bce / 3, rel=1e-5)
    assert float(mask_dice_loss(point_logits, point_labels, num_masks)) == pytest.approx(expected_dice / 3, rel=1e-5)


def test_uncertain_points_keep_the_most_uncertain_candidates() -> None:
    gen = torch.Generator().manual_seed(0)
    mask_logits = torch.randn(3, 1, 8, 8, generator=gen) * 4
    points = sample_uncertain_points(mask_logits, 10, 3.0, 1.0, torch.Generator().manual_seed(7))
    assert points.shape == (3, 10, 2)
    candidates = torch.rand(3, 30, 2, generator=torch.Generator().manual_seed(7))
    candidate_uncertainty = -point_sample(mask_logits, candidates)[:, 0].abs()
    chosen_uncertainty = -point_sample(mask_logits, points)[:, 0].abs()
    expected = candidate_uncertainty.topk(10, dim=1).values
    torch.testing.assert_close(chosen_uncertainty.sort(dim=1).values, expected.sort(dim=1).values)
    mixed = sample_uncertain_points(mask_logits, 12, 3.0, 0.75, torch.Generator().manual_seed(7))
    assert mixed.shape == (3, 12, 2) and bool(((mixed >= 0) & (mixed < 1)).all())


def test_federated_categories_keep_gt_and_sample_by_weight() -> None:
    num_classes = 10
    weights = category_sampling_weights(torch.tensor([4, 9, 0, 1, 16, 0, 25, 36, 49, 0]), power=0.5)
    torch.testing.assert_close(weights, torch.tensor([2.0, 3, 0, 1, 4, 0, 5, 6, 7, 0]))
    # GT category 2 has zero weight (still kept); GT category 8 has a large one (must not be drawn twice).
    target_classes = torch.tensor([[2, 10, 8], [10, 10, 2]])
    for seed in range(20):
        selected = federated_categories(target_classes, num_classes, 5, weights, torch.Generator().manual_seed(seed))
        # The background index counts toward the 5 slots, as in the official code: 3 distinct + 2 drawn.
        assert bool(selected[2]) and bool(selected[8])
        assert int(selected.sum()) == 4
        assert not bool(selected[5]) and not bool(selected[9])
    # Asking for more than exist takes every category with a non-zero weight, plus the GT ones.
    everything = federated_categories(target_classes, num_classes, 50, weights, torch.Generator().manual_seed(0))
    assert everything.tolist() == [True, True, True, True, True, False, True, True, True, False]


def _hand_case(num_aux: int) -> tuple[HeadOutputs, list[HeadOutputs], list[VideoTarget]]:
    """One clip, Q=3, C=2, T=2; all mask logits 0 and all target masks empty, so mask terms are exact."""
    class_logits = torch.tensor([[[2.0, -1.0, 0.0], [-3.0, 0.5, 0.0], [0.0, 0.0, 0.0]]])
    object_logits = torch.tensor([[[2.0, -2.0], [1.0, 0.0], [-3.0, 3.0]]])
    outputs = HeadOutputs(class_logits, object_logits, torch.zeros(1, 3, 2, 4, 4))
    aux = [HeadOutputs(class_logits.clone(), object_logits.clone(), torch.zeros(1, 3, 2, 4, 4)) for _ in range(num_aux)]
    targets = [VideoTarget(labels=torch.tensor([0, 1]), masks=torch.zeros(2, 2, 8, 8))]
    return outputs, aux, targets


def test_criterion_terms_on_hand_built_case() -> None:
    config = LossConfig(num_points=20)
    outputs, _, targets = _hand_case(num_aux=0)
    losses = SetCriterion(num_classes=2, config=config)(outputs, targets, generator=torch.Generator().manual_seed(0))
    # Masks carry no information, so the class cost decides: query 0 -> class 0, query 1 -> class 1.
    expected_ce = (_bce(2.0, 1) + _bce(-1.0, 0) + _bce(-3.0, 0) + _bce(0.5, 1)) * 1.7 / 3
    p_obj = [math.exp(a) / (math.exp(a) + math.exp(b)) for a, b in ([2.0, -2.0], [1.0, 0.0], [-3.0, 3.0])]
    expected_obj = -(math.log(p_obj[0]) + math.log(p_obj[1]) + 0.4 * math.log(1 - p_obj[2])) / 2.4
    # Logit 0 gives BCE log 2 at every point; empty targets give dice 1 - 1 / (P / 2 + 1) per frame.
    # Each of the 2 masks has 2 frames, summed and divided by the 2 masks.
    expected_mask = 2 * math.log(2)
    expected_dice = 2 * (1 - 1 / (20 / 2 + 1))
    assert set(losses) == {"loss_ce", "loss_object_ce", "loss_mask", "loss_dice"}
    assert float(losses["loss_ce"]) == pytest.approx(expected_ce, rel=1e-5)
    assert float(losses["loss_object_ce"]) == pytest.approx(expected_obj, rel=1e-5)
    assert float(losses["loss_mask"]) == pytest.approx(expected_mask, rel=1e-5)
    assert float(losses["loss_dice"]) == pytest.approx(expected_dice, rel=1e-5)
    expected_total = 2 * expected_ce + 2 * expected_obj + 5 * expected_mask + 5 * expected_dice
    assert float(weighted_total(losses, config)) == pytest.approx(expected_total, rel=1e-5)


def test_deep_supervision_sums_final_and_aux_heads() -> None:
    config = LossConfig(num_points=20)
    outputs, aux, targets = _hand_case(num_aux=3)
    criterion = SetCriterion(num_classes=2, config=config)
    final_only = criterion(outputs, targets, generator=torch.Generator().manual_seed(0))
    losses = criterion(outputs, targets, aux_outputs=aux, generator=torch.Generator().manual_seed(0))
    assert len(losses) == 4 * 4
    for aux_idx in range(3):
        for name in final_only:
            assert float(losses[f"{name}_{aux_idx}"]) == pytest.approx(float(final_only[name]), rel=1e-5)
    total = float(weighted_total(losses, config))
    assert total == pytest.approx(4 * float(weighted_total(final_only, config)), rel=1e-5)
    no_deep = SetCriterion(2, LossConfig(num_points=20, deep_supervision=False))
    assert set(no_deep(outputs, targets, aux_outputs=aux)) == set(final_only)


@pytest.mark.parametrize("num_targets", [3, 0])
def test_gradients_flow_and_are_finite(num_targets: int) -> None:
    gen = torch.Generator().manual_seed(0)
    batch, queries, classes, frames = 2, 5, 6, 2

    def head() -> HeadOutputs:
        class_logits = torch.randn(batch, queries, classes + 1, generator=gen)
        class_logits[..., -1] = 0
        return HeadOutputs(
            class_logits.requires_grad_(),
            torch.randn(batch, queries, 2, generator=gen).requires_grad_(),
            torch.randn(batch, queries, frames, 6, 6, generator=gen).requires_grad_(),
        )

    outputs, aux = head(), [head(), head()]
    targets = [
        {
            "labels": torch.randint(0, classes, (num_targets,), generator=gen),
            "masks": torch.rand(num_targets, frames, 12, 12, generator=gen) > 0.5,
        }
        for _ in range(batch)
    ]
    config = LossConfig(num_points=30, num_sample_categories=4)
    criterion = SetCriterion(classes, config, category_weights=torch.ones(classes))
    losses = criterion(outputs, targets, aux_outputs=aux, generator=torch.Generator().manual_seed(1))
    total = weighted_total(losses, config)
    total.backward()
    assert torch.isfinite(total)
    for head_outputs in [outputs, *aux]:
        for tensor in (head_outputs.class_logits, head_outputs.object_logits, head_outputs.mask_logits):
            assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all())
        assert float(head_outputs.object_logits.grad.abs().sum()) > 0
        if num_targets:
            assert float(head_outputs.class_logits.grad.abs().sum()) > 0
            assert float(head_outputs.mask_logits.grad.abs().sum()) > 0


def test_no_targets_with_fp16_mask_logits_is_a_finite_zero() -> None:
    """Under fp16 autocast on a GPU the mask logits are fp16: summing millions of negative ones overflows."""
    mask_logits = torch.full((1, 100, 2, 160, 288), -0.05, dtype=torch.float16, requires_grad=True)
    assert torch.isinf(mask_logits.detach().sum())  # the overflow the zero loss must not touch
    class_logits = torch.zeros(1, 100, 4, requires_grad=True)
    outputs = HeadOutputs(class_logits, torch.zeros(1, 100, 2), mask_logits)
    targets = [VideoTarget(labels=torch.zeros(0, dtype=torch.int64), masks=torch.zeros(0, 2, 160, 288))]
    losses = SetCriterion(num_classes=3, config=LossConfig(num_points=20))(outputs, targets)
    assert float(losses["loss_mask"].detach()) == 0.0 and float(losses["loss_dice"].detach()) == 0.0
    weighted_total(losses, LossConfig()).backward()
    assert mask_logits.grad is not None and not bool(mask_logits.grad.any())  # attached, all-zero gradient

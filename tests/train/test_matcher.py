"""The Hungarian matcher equals brute force, and its cost terms equal plain formulas."""

import itertools
import math

import pytest
import torch

from ovformer_core.model.decoder import HeadOutputs
from ovformer_core.train.matcher import (
    HungarianMatcher,
    VideoTarget,
    class_cost,
    pairwise_dice,
    pairwise_sigmoid_ce,
)
from ovformer_core.train.point_sampling import point_sample


def _random_case(
    gen: torch.Generator, batch: int, queries: int, num_targets: int, classes: int = 4
) -> tuple[HeadOutputs, list[VideoTarget]]:
    frames, size = 2, 6
    class_logits = torch.randn(batch, queries, classes + 1, generator=gen)
    class_logits[..., -1] = 0
    outputs = HeadOutputs(
        class_logits=class_logits,
        object_logits=torch.randn(batch, queries, 2, generator=gen),
        mask_logits=torch.randn(batch, queries, frames, size, size, generator=gen) * 3,
    )
    targets = [
        VideoTarget(
            labels=torch.randint(0, classes, (num_targets,), generator=gen),
            masks=torch.rand(num_targets, frames, 2 * size, 2 * size, generator=gen) > 0.5,
        )
        for _ in range(batch)
    ]
    return outputs, targets


def _brute_force_best(cost: torch.Tensor) -> float:
    """Lowest total cost over every injective assignment of targets to queries."""
    num_queries, num_targets = cost.shape
    if num_targets == 0:
        return 0.0
    return min(
        sum(float(cost[q, n]) for n, q in enumerate(queries))
        for queries in itertools.permutations(range(num_queries), num_targets)
    )


@pytest.mark.parametrize(("queries", "num_targets"), [(5, 3), (5, 0), (4, 4), (5, 1)])
def test_matcher_equals_brute_force(queries: int, num_targets: int) -> None:
    matcher = HungarianMatcher(class_weight=2.0, mask_weight=5.0, dice_weight=5.0, num_points=64)
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        outputs, targets = _random_case(gen, batch=2, queries=queries, num_targets=num_targets)
        matches = matcher(outputs, targets, generator=torch.Generator().manual_seed(100 + seed))
        # Replay the matcher's random points: one [P, 2] draw per clip, in batch order.
        replay = torch.Generator().manual_seed(100 + seed)
        for b, (target, match) in enumerate(zip(targets, matches, strict=True)):
            points = torch.rand(64, 2, generator=replay)
            cost = matcher.cost_matrix(
                outputs.class_logits[b], outputs.object_logits[b], outputs.mask_logits[b], target, points
            )
            assert cost.shape == (queries, num_targets)
            assert len(match.query_idx) == len(match.target_idx) == min(queries, num_targets)
            assert len(set(match.query_idx.tolist())) == len(match.query_idx)
            assert sorted(match.target_idx.tolist()) == list(range(num_targets))
            matched_cost = float(cost[match.query_idx, match.target_idx].sum())
            assert matched_cost == pytest.approx(_brute_force_best(cost), abs=1e-5)


def test_matcher_accepts_dict_targets_and_recovers_planted_assignment() -> None:
    # Queries 3, 0, 1 predict targets 0, 1, 2 exactly (confident logits, right class); the rest are empty.
    num_queries, classes = 5, 3
    masks = torch.zeros(3, 1, 4, 4)
    masks[0, 0, :2] = 1
    masks[1, 0, 2:] = 1
    masks[2, 0, :, :2] = 1
    labels = torch.tensor([2, 0, 1])
    plan = {3: 0, 0: 1, 1: 2}
    mask_logits = torch.full((1, num_queries, 1, 4, 4), -8.0)
    class_logits = torch.full((1, num_queries, classes + 1), -5.0)
    class_logits[..., -1] = 0
    for query, target in plan.items():
        mask_logits[0, query, 0] = masks[target, 0] * 16 - 8
        class_logits[0, query, labels[target]] = 5.0
    outputs = HeadOutputs(
        class_logits=class_logits, object_logits=torch.zeros(1, num_queries, 2), mask_logits=mask_logits
    )
    matcher = HungarianMatcher(num_points=200)
    (match,) = matcher(outputs, [{"labels": labels, "masks": masks}], generator=torch.Generator().manual_seed(0))
    assert dict(zip(match.query_idx.tolist(), match.target_idx.tolist(), strict=True)) == plan


def test_class_cost_is_negative_geometric_mean_of_class_and_object_probability() -> None:
    class_logits = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.3, 0.0]])
    object_logits = torch.tensor([[1.0, -1.0], [0.0, 0.5]])
    labels = torch.tensor([1, 0, 1])
    cost = class_cost(class_logits, object_logits, labels)

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    for q in range(2):
        p_object = math.exp(object_logits[q, 0]) / (math.exp(object_logits[q, 0]) + math.exp(object_logits[q, 1]))
        for n, label in enumerate(labels.tolist()):
            expected = -math.sqrt(sigmoid(float(class_logits[q, label])) * p_object)
            assert float(cost[q, n]) == pytest.approx(expected, rel=1e-6)


def test_pairwise_mask_costs_equal_plain_formulas() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.0, 4.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    ce = pairwise_sigmoid_ce(logits, labels)
    dice = pairwise_dice(logits, labels)
    for q in range(2):
        probs = [1 / (1 + math.exp(-float(x))) for x in logits[q]]
        for n in range(3):
            ys = labels[n].tolist()
            bce = [-(y * math.log(p) + (1 - y) * math.log(1 - p)) for p, y in zip(probs, ys, strict=True)]
            assert float(ce[q, n]) == pytest.approx(sum(bce) / 3, rel=1e-5)
            overlap = sum(p * y for p, y in zip(probs, ys, strict=True))
            expected_dice = 1 - (2 * overlap + 1) / (sum(probs) + sum(ys) + 1)
            assert float(dice[q, n]) == pytest.approx(expected_dice, rel=1e-5)


def test_point_sample_at_pixel_centres_reads_the_pixels() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, 4, 5, generator=gen)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
    points = torch.stack([(cols.flatten() + 0.5) / 5, (rows.flatten() + 0.5) / 4], dim=-1)
    sampled = point_sample(maps, points[None].expand(2, -1, -1))
    torch.testing.assert_close(sampled, maps.flatten(2))


def test_non_finite_costs_still_match_every_target() -> None:
    """An overflowed fp16 forward gives NaN/inf logits: scipy would raise on this rank alone."""
    gen = torch.Generator().manual_seed(0)
    class_logits = torch.randn(1, 4, 3, generator=gen)
    class_logits[0, 0] = float("nan")
    mask_logits = torch.randn(1, 4, 1, 4, 4, generator=gen)
    mask_logits[0, 1] = float("inf")
    outputs = HeadOutputs(class_logits=class_logits, object_logits=torch.zeros(1, 4, 2), mask_logits=mask_logits)
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.ones(2, 1, 4, 4)}]
    (match,) = HungarianMatcher(num_points=16)(outputs, targets, generator=torch.Generator().manual_seed(0))
    assert sorted(match.target_idx.tolist()) == [0, 1]
    assert not {0, 1} & set(match.query_idx.tolist())  # the broken queries are the last choice

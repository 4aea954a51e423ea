"""Query association: equals brute force, recovers shuffled queries, averages logits per track."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ovformer_core.inference.tracker import QueryTracks, match_queries


def test_matching_equals_brute_force():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        ref, cur = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
        perm = match_queries(ref, cur)
        cos = torch.nn.functional.normalize(ref, dim=1) @ torch.nn.functional.normalize(cur, dim=1).T
        cost = (1 - cos).numpy()
        best = min(itertools.permutations(range(6)), key=lambda p: sum(cost[q, p[q]] for q in range(6)))
        np.testing.assert_array_equal(perm, np.array(best))


def test_tracker_recovers_shuffled_queries_and_averages_logits():
    gen = torch.Generator().manual_seed(1)
    embeds = torch.randn(10, 16, generator=gen)
    logits = torch.randn(10, 4, generator=gen)
    tracks = QueryTracks()
    tracks.update(embeds, logits, torch.zeros(10, 2))
    shuffle = torch.randperm(10, generator=gen)
    noisy = embeds[shuffle] + 0.01 * torch.randn(10, 16, generator=gen)
    perm = tracks.update(noisy, 3 * logits[shuffle], torch.ones(10, 2)[shuffle])
    np.testing.assert_array_equal(shuffle[perm].numpy(), np.arange(10))
    mean_cls, mean_obj = tracks.mean_logits()
    torch.testing.assert_close(mean_cls, 2 * logits)
    torch.testing.assert_close(mean_obj, torch.full((10, 2), 0.5))


def test_momentum_reference_update():
    tracks = QueryTracks(reference_update="momentum")
    first = torch.eye(3)
    tracks.update(first, torch.zeros(3, 2), torch.zeros(3, 2))
    second = torch.eye(3) * 2
    tracks.update(second, torch.zeros(3, 2), torch.zeros(3, 2))
    torch.testing.assert_close(tracks.reference, 0.7 * second + 0.3 * first)

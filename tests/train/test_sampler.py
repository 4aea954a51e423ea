"""Training sampler: LVIS repeat factors and the stateless, seeded stream of item indices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ovformer_core.errors import TrainingError
from ovformer_core.train.sampler import SampleStream, repeat_factors


def test_repeat_factors_follow_the_lvis_rule() -> None:
    # 5 items; category 7 is in 4 of them (f = 0.8), category 3 in 1 (f = 0.2), category 9 in 2 (f = 0.4).
    category_sets = [[7], [7, 3, 3], [7, 9], [7, 9], []]
    threshold = 0.5
    factors = repeat_factors(category_sets, threshold)
    r7 = 1.0  # sqrt(0.5 / 0.8) < 1
    r3 = math.sqrt(0.5 / 0.2)
    r9 = math.sqrt(0.5 / 0.4)
    np.testing.assert_allclose(factors, [r7, max(r7, r3), max(r7, r9), max(r7, r9), 1.0])
    assert factors.dtype == np.float64
    # The LVIS threshold leaves frequent categories alone.
    assert np.all(repeat_factors(category_sets, 0.001) == 1.0)


def test_repeat_factors_reject_bad_threshold() -> None:
    with pytest.raises(TrainingError, match="threshold"):
        repeat_factors([[1]], 0.0)


def _walk(stream: SampleStream, count: int) -> list[int]:
    return [stream[position] for position in range(count)]


def test_stream_is_deterministic_per_seed() -> None:
    first = _walk(SampleStream(50, seed=3), 200)
    assert first == _walk(SampleStream(50, seed=3), 200)
    assert first != _walk(SampleStream(50, seed=4), 200)
    repeat = np.linspace(1.0, 3.0, 50)
    with_repeat = _walk(SampleStream(50, seed=3, repeat=repeat), 300)
    assert with_repeat == _walk(SampleStream(50, seed=3, repeat=repeat), 300)
    assert with_repeat != _walk(SampleStream(50, seed=4, repeat=repeat), 300)


def test_every_item_once_per_epoch_without_repeat() -> None:
    num_items = 37
    stream = SampleStream(num_items, seed=0)
    walked = _walk(stream, num_items * 4)
    epochs = [walked[e * num_items : (e + 1) * num_items] for e in range(4)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(num_items))
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    assert epochs[0] != list(range(num_items))


def test_repeat_counts_are_stochastically_rounded() -> None:
    repeat = np.array([1.0, 2.5, 1.0, 3.0, 1.2])
    stream = SampleStream(len(repeat), seed=1, repeat=repeat)
    num_epochs = 400
    counts = np.stack([np.bincount(stream.epoch_order(e), minlength=len(repeat)) for e in range(num_epochs)])
    assert set(counts[:, 0]) == {1} and set(counts[:, 2]) == {1}
    assert set(counts[:, 3]) == {3}
    assert set(counts[:, 1]) == {2, 3}
    assert set(counts[:, 4]) == {1, 2}
    # Binomial means: standard errors ~0.025 and ~0.02.
    assert counts[:, 1].mean() == pytest.approx(2.5, abs=0.1)
    assert counts[:, 4].mean() == pytest.approx(1.2, abs=0.08)


def test_positions_run_through_epochs_back_to_back() -> None:
    repeat = np.array([1.0, 2.5, 1.7, 3.0])
    stream = SampleStream(len(repeat), seed=2, repeat=repeat)
    concatenated = np.concatenate([stream.epoch_order(e) for e in range(20)])
    fresh = SampleStream(len(repeat), seed=2, repeat=repeat)
    assert _walk(fresh, len(concatenated)) == concatenated.tolist()


def test_batch_equals_positions_and_resumes_anywhere() -> None:
    repeat = np.linspace(1.0, 4.0, 30)
    walked = _walk(SampleStream(30, seed=5, repeat=repeat), 1000)
    batch_size = 7
    for step in (0, 3, 11, 100, 141):
        # A fresh stream per step: resuming at a deep step needs no history.
        batch = SampleStream(30, seed=5, repeat=repeat).batch(step, batch_size)
        assert batch == walked[step * batch_size : (step + 1) * batch_size]
    plain = SampleStream(9, seed=5)
    assert plain.batch(2, 4) == [plain[p] for p in range(8, 12)]  # straddles epochs 0 and 1


def test_stream_keeps_only_recent_epochs() -> None:
    stream = SampleStream(10, seed=0, cached_epochs=2)
    _walk(stream, 10 * 6)
    assert len(stream._orders) == 2
    # A forgotten epoch comes back identical.
    assert stream[3] == SampleStream(10, seed=0)[3]


def test_stream_rejects_bad_input() -> None:
    with pytest.raises(TrainingError, match="no items"):
        SampleStream(0, seed=0)
    with pytest.raises(TrainingError, match="3 repeat factors for 4 items"):
        SampleStream(4, seed=0, repeat=np.ones(3))
    with pytest.raises(TrainingError, match="finite"):
        SampleStream(2, seed=0, repeat=np.array([1.0, np.nan]))
    with pytest.raises(IndexError):
        SampleStream(2, seed=0)[-1]

"""The vectorised pieces of accumulation against their one-at-a-time definitions."""

from __future__ import annotations

import numpy as np

from ovformer_core.eval.accumulate import _envelope_at, _tp_count_for_recall
from ovformer_core.eval.protocols import EvalParams


def test_tp_count_for_recall_equals_searchsorted() -> None:
    """n such that recall = n / num_gt first reaches each recall point, exactly as searchsorted sees it."""
    thresholds = np.asarray(EvalParams().recall_thresholds)
    num_gt = np.arange(1, 3001)
    need = _tp_count_for_recall(thresholds, num_gt)
    for g in num_gt:
        recall = np.arange(g + 2) / g  # every TP count 0..g+1
        assert np.array_equal(need[g - 1], np.searchsorted(recall, thresholds, side="left")), g


def test_envelope_equals_running_maximum_per_segment() -> None:
    rng = np.random.default_rng(0)
    num_thr, num_cols, num_points = 3, 200, 7
    pr = rng.choice([0.0, 0.25, 0.5, 1 / 3, 0.8, 1.0], size=(num_thr, num_cols))
    bounds = np.sort(rng.choice(np.arange(1, num_cols), size=5, replace=False))
    start = np.concatenate([[0], bounds])
    end = np.concatenate([bounds, [num_cols]])
    col = np.sort(rng.integers(start[None, :, None], end[None, :, None], size=(num_thr, len(start), num_points)), -1)
    found = rng.random(col.shape) < 0.8
    found = np.cumprod(found, axis=-1).astype(bool)  # reached points form a prefix, as recall only grows
    got = _envelope_at(pr, col, found, end)
    for t in range(num_thr):
        for k in range(len(start)):
            for r in range(num_points):
                expected = pr[t, col[t, k, r] : end[k]].max() if found[t, k, r] else 0.0
                assert got[t, k, r] == expected


def test_full_arrays_are_built_only_when_asked_and_agree_with_the_slices() -> None:
    import warnings

    from ovformer_core.eval import evaluate
    from tests.eval.eval_cases import EVAL_CASES

    case = EVAL_CASES / "case4_area_ranges"  # every area range has ground truth; some categories do not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(case / "gt.json", case / "results.json", "lvvis")
    acc = result.accumulated
    assert not {"precision", "recall", "scores"} & set(vars(acc))  # the summary did not need them
    precision, recall = result.precision, result.recall
    assert precision.shape == (10, 101, len(result.category_ids), 4, 3) and recall.shape[1:] == (
        precision.shape[2],
        4,
        3,
    )
    for a in range(4):
        for m in range(3):
            assert np.array_equal(acc.precision_at(a, m), precision[:, :, :, a, m])
            assert np.array_equal(acc.recall_at(a, m), recall[:, :, a, m])
            missing = np.setdiff1d(np.arange(precision.shape[2]), acc.valid[a])
            assert np.all(precision[:, :, missing, a, m] == -1) and np.all(result.scores[:, :, missing, a, m] == -1)
    assert result.precision is precision  # built once

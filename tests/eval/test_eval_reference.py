"""Parity with the numbers the official LV-VIS, YouTube-VIS and BURST evaluators gave on the fixture cases."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from ovformer_core.eval import STAT_NAMES, EvaluationWarning, evaluate
from tests.eval.eval_cases import EVAL_CASES, SCORED_CASES

STAT_TOL = 1e-9
ARRAY_ATOL = 1e-12


def _expected(case: str) -> tuple[dict, np.lib.npyio.NpzFile]:
    expected = json.loads((EVAL_CASES / case / "expected.json").read_text())
    return expected, np.load(EVAL_CASES / case / "expected_arrays.npz")


@pytest.mark.parametrize("benchmark", ["lvvis", "ytvis", "burst"])
@pytest.mark.parametrize("case", SCORED_CASES)
def test_matches_official_evaluator(case: str, benchmark: str) -> None:
    expected, arrays = _expected(case)
    official = expected[benchmark]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)  # case2 has a result of an unknown category
        result = evaluate(EVAL_CASES / case / "gt.json", EVAL_CASES / case / "results.json", benchmark)

    assert list(result.stats) == official["stats_names"] == list(STAT_NAMES)
    for name, value in zip(official["stats_names"], official["stats"], strict=True):
        assert abs(result.stats[name] - value) <= STAT_TOL, name
    assert set(result.group_stats) == set(official.get("group_stats", {}))
    for group, values in official.get("group_stats", {}).items():
        assert list(result.group_categories[group]) == official["group_categories"][group]
        for name, value in zip(STAT_NAMES, values, strict=True):
            assert abs(result.group_stats[group][name] - value) <= STAT_TOL, (group, name)

    assert list(result.category_ids) == official["catIds"]
    assert list(result.video_ids) == official["vidIds"]
    t, r, k, a, m = official["counts_TRKAM"]
    shapes = {"precision": (t, r, k, a, m), "recall": (t, k, a, m), "scores": (t, r, k, a, m)}
    for key, shape in shapes.items():
        ours, theirs = getattr(result, key), arrays[f"{benchmark}_{key}"]
        assert ours.shape == theirs.shape == shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=ARRAY_ATOL, err_msg=key)


def test_burst_recall_above_one_is_reproduced() -> None:
    """BURST lets several results match one track: the official recall reaches 1.5 on case1."""
    result = evaluate(EVAL_CASES / "case1_small" / "gt.json", EVAL_CASES / "case1_small" / "results.json", "burst")
    assert result.recall.max() == pytest.approx(1.5)
    lvvis = evaluate(EVAL_CASES / "case1_small" / "gt.json", EVAL_CASES / "case1_small" / "results.json", "lvvis")
    assert lvvis.recall.max() <= 1.0


def test_ovis_uses_youtube_vis_rules() -> None:
    expected, _ = _expected("case3_large")
    result = evaluate(EVAL_CASES / "case3_large" / "gt.json", EVAL_CASES / "case3_large" / "results.json", "ovis")
    assert result.benchmark == "ovis"
    assert result.group_stats == {}
    np.testing.assert_allclose(list(result.stats.values()), expected["ytvis"]["stats"], rtol=0, atol=STAT_TOL)


def test_unknown_category_results_are_ignored_with_a_warning() -> None:
    case = EVAL_CASES / "case2_medium"
    with pytest.warns(EvaluationWarning, match="1 of 40 results have a category id"):
        result = evaluate(case / "gt.json", case / "results.json", "ytvis")
    assert result.num_results == 40
    assert result.num_results_evaluated == 39


@pytest.mark.parametrize("benchmark", ["lvvis", "ytvis", "burst"])
def test_empty_results_give_zero_where_there_is_ground_truth(benchmark: str) -> None:
    """The official evaluators raise IndexError on []; ours: 0 with ground truth, -1 without, a warning."""
    case = EVAL_CASES / "case5_empty_results"
    expected = json.loads((case / "expected.json").read_text())
    assert "IndexError" in expected[benchmark]["error"]
    with pytest.warns(EvaluationWarning, match="results are empty"):
        result = evaluate(case / "gt.json", case / "results.json", benchmark)
    assert any("empty" in w for w in result.warnings)
    gt = json.loads((case / "gt.json").read_text())
    assert gt["annotations"], "the case must have ground truth for 0 to be the answer"
    # Ground truth exists for 'all' (and for 'small' in these 24x32 videos); medium/large have none.
    for name in ("AP", "AP50", "AP75", "AP_small", "AR1", "AR10", "AR100", "AR_small"):
        assert result.stats[name] == 0.0, name
    for name in ("AP_medium", "AP_large", "AR_medium", "AR_large"):
        assert result.stats[name] == -1.0, name
    annotated = {ann["category_id"] for ann in gt["annotations"]}
    has_gt = np.array([c in annotated for c in result.category_ids])
    assert has_gt.any() and not has_gt.all()
    assert np.all(result.recall[:, has_gt, 0, :] == 0) and np.all(result.recall[:, ~has_gt] == -1)
    assert np.all(result.precision[:, :, has_gt, 0, :] == 0) and np.all(result.scores[:, :, has_gt, 0, :] == 0)

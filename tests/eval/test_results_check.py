"""The bulk results check gives exactly what the entry-by-entry check gives, and leaves every doubt to it."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from ovformer_core.eval.ground_truth import load_ground_truth
from ovformer_core.eval.results_check import Detections, _check_entry_by_entry, _check_in_bulk
from tests.eval.eval_cases import EVAL_CASES, random_case


def _assert_same(bulk: Detections, by_entry: Detections) -> None:
    for name in ("video", "category", "score", "file_index"):
        ours, theirs = getattr(bulk, name), getattr(by_entry, name)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), name
    for name in ("frame", "area", "track_start"):
        ours, theirs = getattr(bulk.masks, name), getattr(by_entry.masks, name)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), name
    assert len(bulk.masks.rles) == len(by_entry.masks.rles)
    assert all(a is b for a, b in zip(bulk.masks.rles, by_entry.masks.rles, strict=True))
    assert (bulk.num_results, bulk.num_unknown_category) == (by_entry.num_results, by_entry.num_unknown_category)


@pytest.mark.parametrize("case", ["case0_tiny", "case1_small", "case2_medium", "case3_large", "case5_empty_results"])
def test_bulk_check_equals_entry_by_entry_on_the_reference_cases(case: str) -> None:
    gt = load_ground_truth(EVAL_CASES / case / "gt.json")
    results = json.loads((EVAL_CASES / case / "results.json").read_text())
    bulk = _check_in_bulk(results, gt)
    assert bulk is not None  # plain results take the bulk path
    _assert_same(bulk, _check_entry_by_entry(results, gt))


def test_bulk_check_on_random_cases_with_unknown_categories_and_absent_frames() -> None:
    for seed in range(3):
        dataset, results = random_case(seed)
        results = copy.deepcopy(results)
        results[0]["category_id"] = 10**6  # ignored, still checked
        results[-1]["segmentations"] = [None] * len(results[-1]["segmentations"])
        gt = load_ground_truth(dataset)
        bulk = _check_in_bulk(results, gt)
        assert bulk is not None and bulk.num_unknown_category >= 1
        _assert_same(bulk, _check_entry_by_entry(results, gt))


def _first_frame(entry: dict[str, Any]) -> dict[str, Any]:
    return next(seg for seg in entry["segmentations"] if seg)


DOUBTS = {
    "not an object": lambda results: results.__setitem__(1, [results[1]]),
    "missing key": lambda results: results[1].pop("score"),
    "bool video id": lambda results: results[1].__setitem__("video_id", True),
    "float category id": lambda results: results[1].__setitem__("category_id", 1.0),
    "huge category id": lambda results: results[1].__setitem__("category_id", 2**64),
    "string score": lambda results: results[1].__setitem__("score", "0.5"),
    "infinite score": lambda results: results[1].__setitem__("score", float("inf")),
    "score too large for a float": lambda results: results[1].__setitem__("score", 10**400),
    "one frame short": lambda results: results[1]["segmentations"].pop(),
    "segmentations not a list": lambda results: results[1].__setitem__("segmentations", {}),
    "mask of another size": lambda results: _first_frame(results[1]).__setitem__("size", [1, 1]),
    "uncompressed RLE": lambda results: _first_frame(results[1]).__setitem__("counts", [1, 2]),
    "empty counts": lambda results: _first_frame(results[1]).__setitem__("counts", ""),
    "corrupt counts": lambda results: _first_frame(results[1]).__setitem__("counts", "~~~~"),
    "polygon": lambda results: results[1]["segmentations"].__setitem__(0, [[0, 0, 1, 1, 2, 0]]),
}


@pytest.mark.parametrize("case", sorted(DOUBTS))
def test_anything_unusual_goes_entry_by_entry(case: str) -> None:
    gt = load_ground_truth(EVAL_CASES / "case1_small" / "gt.json")
    results = json.loads((EVAL_CASES / "case1_small" / "results.json").read_text())
    DOUBTS[case](results)
    assert _check_in_bulk(results, gt) is None

"""Malformed results and ground truth: one-line errors naming the first bad entry."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ovformer_core.errors import OVFormerError, ResultsError
from ovformer_core.eval import EvaluationWarning, evaluate
from tests.eval.eval_cases import results_from_ground_truth, tiny_dataset


def _error(gt: Any, results: Any, benchmark: str = "ytvis") -> str:
    with pytest.raises(ResultsError) as info:
        evaluate(gt, results, benchmark)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def _set(index: int, key: str, value: Any) -> Callable[[list[dict]], None]:
    def edit(results: list[dict]) -> None:
        results[index][key] = value

    return edit


def _drop(index: int, key: str) -> Callable[[list[dict]], None]:
    def edit(results: list[dict]) -> None:
        del results[index][key]

    return edit


def _frame(index: int, frame: int, seg: Any) -> Callable[[list[dict]], None]:
    def edit(results: list[dict]) -> None:
        results[index]["segmentations"][frame] = seg

    return edit


BAD_RESULTS = {
    "missing key": (_drop(1, "score"), ["results entry 1", "no 'score'"]),
    "unknown video id": (_set(0, "video_id", 99), ["results entry 0", "video_id 99", "not in the ground truth"]),
    "NaN score": (_set(1, "score", float("nan")), ["results entry 1", "score nan", "finite"]),
    "infinite score": (_set(0, "score", float("inf")), ["results entry 0", "finite"]),
    "string score": (_set(0, "score", "0.5"), ["results entry 0", "score '0.5'"]),
    "too few frames": (_set(1, "segmentations", [None, None]), ["results entry 1", "2 segmentations", "3 frames"]),
    "segmentations not a list": (_set(0, "segmentations", "abc"), ["results entry 0", "a str", "3 frames"]),
    "wrong mask size": (
        _frame(1, 0, {"size": [10, 10], "counts": "PP3"}),
        ["results entry 1", "frame 0", "mask size 10x10", "differs from the frame size 20x30"],
    ),
    "bad RLE characters": (
        _frame(0, 2, {"size": [20, 30], "counts": "12~~ab"}),
        ["results entry 0", "frame 2", "bad RLE"],
    ),
    "RLE cut inside a number": (
        _frame(1, 1, {"size": [20, 30], "counts": "2n"}),  # 'n' carries the continuation bit
        ["results entry 1", "frame 1", "bad RLE"],
    ),
    "RLE counts of the wrong type": (
        _frame(0, 0, {"size": [20, 30], "counts": 17}),
        ["results entry 0", "frame 0", "bad RLE", "int"],
    ),
    "RLE without size": (_frame(0, 1, {"counts": "PP3"}), ["results entry 0", "frame 1", "not an RLE"]),
    "RLE with more pixels than the frame": (
        # runs 0, 1000: a 1000-pixel foreground run in a 600-pixel frame
        _frame(1, 0, {"size": [20, 30], "counts": "0Xo0"}),
        ["results entry 1", "frame 0", "bad RLE", "run of 1000 pixels, more than the mask's 600"],
    ),
    "polygon": (_frame(0, 0, [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]), ["results entry 0", "frame 0", "polygon"]),
    "entry not an object": (lambda results: results.__setitem__(1, [1, 2]), ["results entry 1", "not an object"]),
}


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_malformed_results_name_the_entry(case: str) -> None:
    dataset = tiny_dataset()
    results = copy.deepcopy(results_from_ground_truth(dataset))
    edit, expected = BAD_RESULTS[case]
    edit(results)
    message = _error(dataset, results)
    for part in expected:
        assert part in message, (case, message)


def test_the_first_bad_entry_is_reported() -> None:
    dataset = tiny_dataset()
    results = results_from_ground_truth(dataset) * 2
    results = copy.deepcopy(results)
    results[1]["segmentations"][0] = {"size": [20, 30], "counts": "~~~"}  # found by the bulk check
    del results[3]["score"]  # found while reading entries
    assert "results entry 1" in _error(dataset, results)


def test_bad_rle_of_an_ignored_category_is_still_reported() -> None:
    dataset = tiny_dataset()
    results = copy.deepcopy(results_from_ground_truth(dataset))
    results[0]["category_id"] = 77
    results[0]["segmentations"][0] = {"size": [20, 30], "counts": "~~~"}
    assert "results entry 0" in _error(dataset, results)


def test_results_file_errors(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    assert "does not exist" in _error(dataset, tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"video_id": 1,')
    assert "not valid JSON" in _error(dataset, broken)
    not_list = tmp_path / "dict.json"
    not_list.write_text('{"video_id": 1}')
    assert "must be a list" in _error(dataset, not_list)


def _gt_without(path: tuple[Any, ...]) -> dict:
    dataset = tiny_dataset()
    target: Any = dataset
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return dataset


def _gt_with(path: tuple[Any, ...], value: Any) -> dict:
    dataset = tiny_dataset()
    target: Any = dataset
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return dataset


BAD_GT = {
    "no annotations": (_gt_without(("annotations",)), ["'annotations' is missing"]),
    "no videos": (_gt_without(("videos",)), ["'videos' is missing"]),
    "video without height": (_gt_without(("videos", 0, "height")), ["videos[0]", "'height'"]),
    "video without length": (_gt_without(("videos", 1, "length")), ["videos[1]", "'length'"]),
    "annotation without segmentations": (
        _gt_without(("annotations", 1, "segmentations")),
        ["annotations[1]", "'segmentations'"],
    ),
    "annotation without id": (_gt_without(("annotations", 0, "id")), ["annotations[0]", "'id'"]),
    "category without id": (_gt_without(("categories", 2, "id")), ["categories[2]", "'id'"]),
    "polygon far outside the frame": (
        _gt_with(("annotations", 0, "segmentations", 1), [[0, 0, 1e300, 0, 5, 5]]),
        ["annotations[0] (id 1) frame 1 has a polygon point far outside the 30x20 frame"],
    ),
    "polygon coordinate as text": (
        _gt_with(("annotations", 0, "segmentations", 0), [[0, 0, "9", 0, 5, 5]]),
        ["annotations[0] (id 1) frame 0 has a polygon coordinate that is not a number"],
    ),
    "area beyond a float": (
        _gt_with(("annotations", 1, "areas"), [10**400, 1, None]),
        ["annotations[1] (id 2) 'areas' must be a list of numbers or nulls"],
    ),
    "RLE runs short of the frame": (
        _gt_with(("annotations", 1, "segmentations", 0), {"size": [20, 30], "counts": "0m0"}),
        ["annotation id 2 frame 0 has a bad RLE: its runs cover 29 pixels, but the mask has 600"],
    ),
    "duplicate annotation id": (
        _gt_with(("annotations", 1, "id"), 1),
        ["annotation id 1 appears twice in 'annotations' (annotations[0] and annotations[1])"],
    ),
    "video height zero": (_gt_with(("videos", 0, "height"), 0), ["videos[0] (id 1) frame size (30 x 0)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_GT))
def test_malformed_ground_truth(case: str) -> None:
    dataset, expected = BAD_GT[case]
    message = _error(dataset, [])
    assert message.startswith("ground truth")
    for part in expected:
        assert part in message, (case, message)


def test_ground_truth_track_with_wrong_frame_count() -> None:
    dataset = tiny_dataset()
    dataset["annotations"][0]["segmentations"].append(None)
    assert "annotations[0] (id 1) has 4 segmentations but video 1 has 3 frames" in _error(dataset, [])


def test_ground_truth_files(tmp_path: Path) -> None:
    broken = tmp_path / "gt.json"
    broken.write_text("not json")
    assert "ground truth file" in _error(broken, []) and "not valid JSON" in _error(broken, [])
    top_list = tmp_path / "list.json"
    top_list.write_text(json.dumps([1, 2]))
    assert "top level must be an object" in _error(top_list, [])


def test_group_fields_are_required_by_their_benchmark() -> None:
    dataset = tiny_dataset()
    del dataset["categories"][1]["partition"]
    assert "category id 2 has no 'partition'" in _error(dataset, [], "lvvis")
    with pytest.warns(EvaluationWarning, match="empty"):
        evaluate(dataset, [], "ytvis")  # YouTube-VIS has no groups, so it does not care


def test_unknown_benchmark() -> None:
    with pytest.raises(OVFormerError, match="unknown benchmark 'coco'"):
        evaluate(tiny_dataset(), [], "coco")

"""Behaviour the fixtures do not pin down: crowd rules, duplicates, mask formats, inputs left untouched,
and equality with a plain loop of the official algorithm on random cases."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovformer_core.eval import EvaluationWarning, evaluate, load_ground_truth
from tests.eval.eval_cases import box_masks, plain_loop, random_case, results_from_ground_truth, tiny_dataset


@pytest.mark.parametrize("benchmark", ["ytvis", "lvvis", "burst"])
def test_ground_truth_as_results_scores_one(benchmark: str) -> None:
    dataset = tiny_dataset()
    result = evaluate(dataset, results_from_ground_truth(dataset), benchmark)
    for name in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100", "AP_small", "AR_small"):
        assert result.stats[name] == pytest.approx(1.0), name
    assert result.stats["AP_medium"] == -1.0


def test_lvvis_groups_split_by_partition() -> None:
    dataset = tiny_dataset()
    results = results_from_ground_truth(dataset)
    results[1]["category_id"] = 3  # the novel track (category 2) predicted as a base class: a miss
    result = evaluate(dataset, results, "lvvis")
    assert result.group_categories == {"base": (1, 3), "novel": (2,)}
    assert result.group_stats["base"]["AP"] == pytest.approx(1.0)
    assert result.group_stats["novel"]["AP"] == 0.0
    assert result.stats["AP"] == pytest.approx(0.5)


def _crowd_dataset() -> dict:
    dataset = tiny_dataset()
    dataset["annotations"] = dataset["annotations"][:1]
    dataset["annotations"][0]["iscrowd"] = 1
    return dataset


def test_crowd_ground_truth_is_ignored_by_youtube_vis_only() -> None:
    dataset = _crowd_dataset()
    results = results_from_ground_truth(dataset) * 2  # two results on the one crowd track
    ytvis = evaluate(dataset, results, "ytvis")
    assert ytvis.stats["AP"] == -1.0 and ytvis.stats["AR100"] == -1.0  # nothing left to find
    lvvis = evaluate(dataset, results, "lvvis")
    # LV-VIS keeps the crowd track, and a crowd can be matched again: both results are true positives.
    assert lvvis.stats["AP"] == pytest.approx(1.0)
    assert lvvis.recall[0, 0, 0, 2] == 2.0


def test_burst_counts_duplicates_as_true_positives() -> None:
    dataset = tiny_dataset()
    dataset["annotations"] = dataset["annotations"][:1]
    duplicated = results_from_ground_truth(dataset, 0.9) + results_from_ground_truth(dataset, 0.8)
    burst = evaluate(dataset, duplicated, "burst")
    ytvis = evaluate(dataset, duplicated, "ytvis")
    assert burst.recall[0, 0, 0, 2] == 2.0
    assert ytvis.recall[0, 0, 0, 2] == 1.0
    assert ytvis.precision[0, 100, 0, 0, 2] == pytest.approx(1.0)  # envelope: precision 1 at recall 1


def test_only_the_top_100_results_per_video_and_category_count() -> None:
    dataset = tiny_dataset()
    perfect = results_from_ground_truth(dataset)[0]
    wrong = dict(perfect, segmentations=[None] * 3)
    results = [dict(wrong, score=0.9)] * 100 + [dict(perfect, score=0.1)]
    result = evaluate(dataset, results, "ytvis")
    assert result.recall[0, 0, 0, 2] == 0.0  # the perfect result is number 101


def test_equal_scores_keep_file_order() -> None:
    dataset = tiny_dataset()
    perfect = results_from_ground_truth(dataset)[0]
    miss = dict(perfect, segmentations=[None] * 3)
    first_hit = evaluate(dataset, [perfect, miss], "ytvis")
    first_miss = evaluate(dataset, [miss, perfect], "ytvis")
    # recall of category 1, area "all", max 1 detection per video
    assert np.all(first_hit.recall[:, 0, 0, 0] == 1.0)
    assert np.all(first_miss.recall[:, 0, 0, 0] == 0.0)


def _uncompressed(rle: dict) -> dict:
    """The same mask as an uncompressed RLE (counts = run lengths, column-major, starting with 0s)."""
    flat = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [len(flat)]])).tolist()
    return {"size": rle["size"], "counts": ([0] if flat[0] else []) + runs}


def test_polygon_and_uncompressed_ground_truth_equal_compressed() -> None:
    polygon = [[2.0, 2.0, 12.0, 2.0, 12.0, 10.0, 2.0, 10.0]]
    rasterised = mask_utils.merge(mask_utils.frPyObjects(polygon, 20, 30))
    compressed = tiny_dataset()
    compressed["annotations"][0]["segmentations"] = [{"size": [20, 30], "counts": rasterised["counts"].decode()}] * 3
    other = copy.deepcopy(compressed)
    other["annotations"][0]["segmentations"] = [polygon, polygon, polygon]
    other["annotations"][1]["segmentations"] = [
        _uncompressed(s) if s else None for s in compressed["annotations"][1]["segmentations"]
    ]
    results = results_from_ground_truth(tiny_dataset())  # boxes: close to, not equal to, the polygon
    results[1]["segmentations"] = [None, *results[1]["segmentations"][1:]]
    expected = evaluate(compressed, results, "lvvis")
    result = evaluate(other, results, "lvvis")
    assert 0 < expected.stats["AP"] < 1
    assert result.stats == expected.stats
    np.testing.assert_array_equal(result.precision, expected.precision)


def test_ground_truth_id_zero_counts_as_unmatched_like_the_official_code() -> None:
    """The official code stores the matched ground-truth id and tests it for truth, so id 0 never matches."""
    dataset = tiny_dataset()
    dataset["annotations"] = dataset["annotations"][:1]
    results = results_from_ground_truth(dataset)
    assert evaluate(dataset, results, "ytvis").stats["AP"] == pytest.approx(1.0)
    dataset["annotations"][0]["id"] = 0
    assert evaluate(dataset, results, "ytvis").stats["AP"] == 0.0


def test_inputs_are_not_modified_and_ground_truth_is_reusable() -> None:
    dataset = tiny_dataset()
    results = results_from_ground_truth(dataset)
    dataset_before, results_before = copy.deepcopy(dataset), copy.deepcopy(results)
    gt = load_ground_truth(dataset)
    first = evaluate(gt, results, "lvvis")
    second = evaluate(gt, results, "lvvis")
    assert dataset == dataset_before and results == results_before
    assert first.stats == second.stats


@pytest.mark.parametrize("seed", range(6))
def test_equals_plain_official_loop_on_random_cases(seed: int) -> None:
    plain_evaluate = plain_loop()
    dataset, results = random_case(seed)
    for benchmark in ("lvvis", "ytvis", "burst"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EvaluationWarning)
            ours = evaluate(dataset, results, benchmark)
        plain = plain_evaluate(dataset, results, benchmark)
        assert ours.stats == plain["stats"], benchmark
        assert {g: dict(v) for g, v in ours.group_stats.items()} == plain["group_stats"], benchmark
        for key in ("precision", "recall", "scores"):
            np.testing.assert_array_equal(getattr(ours, key), plain[key], err_msg=f"{benchmark} {key}")


def test_random_cases_exercise_crowds_ids_zero_and_truncation() -> None:
    """Guard for the test above: its cases really contain what they are meant to."""
    crowd = zero_id = truncated = 0
    for seed in range(6):
        dataset, results = random_case(seed)
        crowd += sum(a["iscrowd"] for a in dataset["annotations"])
        zero_id += sum(a["id"] == 0 for a in dataset["annotations"])
        pairs: dict[tuple[int, int], int] = {}
        for r in results:
            pairs[r["video_id"], r["category_id"]] = pairs.get((r["video_id"], r["category_id"]), 0) + 1
        truncated += any(n > 100 for n in pairs.values())
    assert crowd > 0 and truncated > 0 and zero_id > 0


def _two_track_video(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> dict:
    """One video of one frame, one category, one ground-truth track per box."""
    return {
        "videos": [{"id": 1, "height": height, "width": width, "length": 1}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": n + 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": box_masks([b], height, width)}
            for n, b in enumerate(boxes)
        ],
    }


def _result(box: tuple[int, int, int, int], score: float, height: int, width: int) -> dict:
    return {"video_id": 1, "category_id": 1, "score": score, "segmentations": box_masks([box], height, width)}


def test_equal_iou_goes_to_the_later_ground_truth() -> None:
    """A result covering tracks A and B has IoU exactly 0.5 with each; the official scan takes B (the
    later one), which leaves A for the second result: both are true positives at IoU 0.5."""
    dataset = _two_track_video(10, 40, [(0, 0, 10, 10), (0, 20, 10, 30)])
    tracks = [ann["segmentations"][0] for ann in dataset["annotations"]]
    both = mask_utils.merge([{"size": t["size"], "counts": t["counts"].encode()} for t in tracks])
    union_of_both = {
        "video_id": 1,
        "category_id": 1,
        "score": 0.9,
        "segmentations": [{"size": list(both["size"]), "counts": both["counts"].decode()}],
    }
    results = [union_of_both, _result((0, 0, 10, 10), 0.8, 10, 40)]
    result = evaluate(dataset, results, "ytvis")
    assert result.recall[0, 0, 0, 2] == 1.0  # t = 0.5: both tracks found
    assert result.recall[1, 0, 0, 2] == 0.5  # t = 0.55: only the exact copy of A matches


def test_a_regular_ground_truth_beats_an_ignored_one_with_higher_iou() -> None:
    """Track A (small) lies inside track B (medium, so ignored in the 'small' range). A result equal to B
    has IoU 1 with B and 0.852 with A; in the 'small' range the official rule still takes A."""
    dataset = _two_track_video(200, 200, [(0, 0, 120, 120), (0, 0, 130, 130)])
    results = [_result((0, 0, 130, 130), 0.9, 200, 200)]
    result = evaluate(dataset, results, "ytvis")
    small = result.recall[:, 0, 1, 2]
    assert small.tolist() == [1.0] * 8 + [0.0] * 2  # A reaches IoU 0.85 but not 0.9
    assert result.stats["AR_small"] == pytest.approx(0.8)


def test_area_rules_differ_per_benchmark() -> None:
    """A track whose 'areas' average 16384.5: YouTube-VIS keeps the float (medium only), LV-VIS truncates
    each area to int (16384: small and medium, both ends inclusive), BURST uses 0 (small)."""
    dataset = tiny_dataset()
    dataset["annotations"] = dataset["annotations"][:1]
    dataset["annotations"][0]["areas"] = [16384.5, 16384.5, None]
    results = results_from_ground_truth(dataset)
    ar = {b: evaluate(dataset, results, b).stats for b in ("ytvis", "lvvis", "burst")}
    assert (ar["ytvis"]["AR_small"], ar["ytvis"]["AR_medium"]) == (-1.0, pytest.approx(1.0))
    assert (ar["lvvis"]["AR_small"], ar["lvvis"]["AR_medium"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert (ar["burst"]["AR_small"], ar["burst"]["AR_medium"]) == (pytest.approx(1.0), -1.0)

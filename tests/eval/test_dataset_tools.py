"""Dataset tools: rare/novel removal, category-frequency info, base/novel results split."""

from __future__ import annotations

import copy

import pytest

from ovformer_core.errors import ResultsError
from ovformer_core.eval.dataset_tools import (
    category_info,
    drop_novel_categories,
    drop_rare_categories,
    split_results_by_partition,
)


def _lvis() -> dict:
    return {
        "images": [{"id": i} for i in range(1, 13)],
        "categories": [
            {"id": 1, "name": "a", "frequency": "r"},
            {"id": 2, "name": "b", "frequency": "c"},
            {"id": 3, "name": "c", "frequency": "f"},
        ],
        # category 1: 2 images / 3 annotations; 2: 10 images; 3: none
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 1, "category_id": 1}]
        + [{"id": 3, "image_id": 2, "category_id": 1}]
        + [{"id": 10 + i, "image_id": i, "category_id": 2} for i in range(1, 11)],
    }


def _lvvis() -> dict:
    return {
        "videos": [{"id": 1, "length": 5}, {"id": 2, "length": 7}, {"id": 3, "file_names": ["a", "b"]}],
        "categories": [
            {"id": 1, "name": "a", "partition": 0},
            {"id": 2, "name": "b", "partition": 2},
            {"id": 3, "name": "c", "partition": 3},
            {"id": 4, "name": "d", "partition": 1},
        ],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "length": 1},
            {"id": 2, "video_id": 2, "category_id": 1, "length": 1},
            {"id": 3, "video_id": 2, "category_id": 1, "length": 1},
            {"id": 4, "video_id": 3, "category_id": 2, "length": 1},
            {"id": 5, "video_id": 1, "category_id": 3},
        ],
    }


def test_drop_rare_keeps_categories_and_other_annotations() -> None:
    dataset = _lvis()
    before = copy.deepcopy(dataset)
    out = drop_rare_categories(dataset)
    assert dataset == before
    assert out["categories"] == dataset["categories"]
    assert {a["category_id"] for a in out["annotations"]} == {2}
    assert len(out["annotations"]) == 10


def test_drop_novel_removes_partitions_2_and_3() -> None:
    out = drop_novel_categories(_lvvis())
    assert [a["id"] for a in out["annotations"]] == [1, 2, 3]
    assert len(out["categories"]) == 4


def test_drop_needs_the_field() -> None:
    dataset = _lvis()
    del dataset["categories"][1]["frequency"]
    with pytest.raises(ResultsError, match="categories\\[1\\] has no 'frequency'"):
        drop_rare_categories(dataset)


def test_image_category_info_and_lvis_frequency() -> None:
    info = category_info(_lvis(), add_frequency=True, rare_below=3, common_below=10)
    assert [(c["image_count"], c["instance_count"], c["frequency"]) for c in info] == [
        (2, 3, "r"),
        (10, 10, "f"),
        (0, 0, "r"),
    ]
    assert "image_count" not in _lvis()["categories"][0]


def test_video_category_info_counts_frames_by_video_id() -> None:
    info = category_info(_lvvis(), add_frequency=True)
    # category 1 is in videos 1 and 2: 5 + 7 frames; 3 annotations of length 1
    assert [(c["image_count"], c["instance_count"], c["frequency"]) for c in info] == [
        (12, 3, "b"),
        (2, 1, "b"),
        (5, 1, "b"),
        (0, 0, "n"),
    ]


def test_split_results_by_partition() -> None:
    results = [{"category_id": c, "score": 0.1 * c} for c in (1, 2, 3, 4, 1)]
    base, novel = split_results_by_partition(results, _lvvis())
    assert [r["category_id"] for r in base] == [1, 4, 1]
    assert [r["category_id"] for r in novel] == [2, 3]
    with pytest.raises(ResultsError, match="results entry 1: category_id 9"):
        split_results_by_partition([results[0], {"category_id": 9}], _lvvis())

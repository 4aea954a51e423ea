"""Dataset preparation: open-vocabulary training splits, category-frequency info, base/novel results.

Replaces the official one-off scripts (``tools/remove_lvis_rare.py``, ``tools/remove_lvvis_novel.py``,
``tools/get_lvis_cat_info.py``, ``tools/get_lvvis_cat_info.py``) with plain functions on parsed JSON;
the CLI (``ovformer dataset ...``) reads and writes the files. Inputs are never modified.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ovformer_core.config import LVIS_COMMON_BELOW, LVIS_RARE_BELOW
from ovformer_core.errors import ResultsError
from ovformer_core.io.dataset_json import check_categories, check_ids, is_id
from ovformer_core.io.json_input import brief, read_json

#: LV-VIS partitions 0/1 are base categories, 2/3 novel (evaluate/lvvis.py).
LVVIS_BASE_PARTITIONS = (0, 1)
LVVIS_NOVEL_PARTITIONS = (2, 3)


def load_dataset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A COCO / LVIS / YouTube-VIS style dataset file with 'categories' and 'annotations'."""
    dataset = read_json(path, "dataset file", ResultsError)
    where = f"dataset file {path}"
    check_categories(dataset, where, ResultsError, need_names=False)
    if not isinstance(dataset.get("annotations"), list):
        raise ResultsError(f"{where} has no 'annotations' list; is it a COCO-style annotation file?")
    check_ids(dataset["annotations"], "annotations", ResultsError, where, required=False)
    for section in ("videos", "images"):
        if isinstance(dataset.get(section), list):
            check_ids(dataset[section], section, ResultsError, where, required=True)
    return dataset


def _category_field(dataset: Mapping[str, Any], field: str, purpose: str) -> dict[int, Any]:
    values: dict[int, Any] = {}
    for i, category in enumerate(dataset["categories"]):
        if not isinstance(category, dict) or not is_id(category.get("id")):
            raise ResultsError(f"categories[{i}] has no integer 'id'")
        if field not in category:
            raise ResultsError(f"categories[{i}] has no '{field}' (needed to {purpose})")
        values[category["id"]] = category[field]
    return values


def _drop_annotations(dataset: Mapping[str, Any], drop: set[Any]) -> dict[str, Any]:
    """A shallow copy of ``dataset`` without annotations of categories in ``drop`` (categories kept)."""
    known = {c["id"] for c in dataset["categories"]}
    for i, ann in enumerate(dataset["annotations"]):
        if not isinstance(ann, dict) or not is_id(ann.get("category_id")) or ann["category_id"] not in known:
            raise ResultsError(f"annotations[{i}] has no category_id listed in 'categories'")
    out = dict(dataset)
    out["annotations"] = [ann for ann in dataset["annotations"] if ann["category_id"] not in drop]
    return out


def drop_rare_categories(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """LVIS without annotations of rare (frequency ``r``) categories: the open-vocabulary training set.

    The category list is kept whole, so category ids and the classifier layout do not change.
    """
    frequency = _category_field(dataset, "frequency", "find rare categories")
    return _drop_annotations(dataset, {cid for cid, freq in frequency.items() if freq == "r"})


def drop_novel_categories(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """LV-VIS without annotations of novel categories (partition 2 or 3); categories kept."""
    partition = _category_field(dataset, "partition", "find novel categories")
    return _drop_annotations(dataset, {cid for cid, part in partition.items() if part in LVVIS_NOVEL_PARTITIONS})


def category_info(
    dataset: Mapping[str, Any],
    add_frequency: bool = False,
    rare_below: int = LVIS_RARE_BELOW,
    common_below: int = LVIS_COMMON_BELOW,
) -> list[dict[str, Any]]:
    """The categories with ``image_count`` and ``instance_count`` (the loss's frequency file).

    Image datasets (annotations have ``image_id``, LVIS): ``image_count`` = distinct images showing the
    category, ``instance_count`` = its annotations; ``add_frequency`` sets LVIS ``frequency``
    r / c / f from ``image_count`` (below ``rare_below`` / below ``common_below`` / otherwise).

    Video datasets (annotations have ``video_id``, LV-VIS): ``image_count`` = total frames of the
    distinct videos showing the category, ``instance_count`` = sum of the annotations' ``length``
    (1 when absent); ``add_frequency`` sets ``frequency`` ``b`` (seen in training) or ``n`` (unseen).
    The official script looks videos up by list position (``videos[video_id]``), off by one for 1-based
    ids; here they are looked up by id.
    """
    annotations = dataset["annotations"]
    is_video = bool(annotations) and "video_id" in annotations[0]
    frames_of: dict[Any, int] = {}
    if is_video:
        for i, video in enumerate(dataset.get("videos", [])):
            length = video.get("length", len(video.get("file_names", [])))
            if not is_id(length) or length < 0:
                raise ResultsError(f"videos[{i}] has 'length' {brief(length)}; it must be a frame count")
            frames_of[video["id"]] = int(length)
    owners: dict[Any, set[Any]] = {c["id"]: set() for c in dataset["categories"]}
    instances: dict[Any, int] = {c["id"]: 0 for c in dataset["categories"]}
    owner_key = "video_id" if is_video else "image_id"
    for i, ann in enumerate(annotations):
        if (
            not isinstance(ann, dict)
            or not is_id(ann.get("category_id"))
            or ann["category_id"] not in owners
            or not is_id(ann.get(owner_key))
        ):
            raise ResultsError(f"annotations[{i}] needs a known 'category_id' and an integer '{owner_key}'")
        length = ann.get("length", 1) if is_video else 1
        if not is_id(length) or length < 0:
            raise ResultsError(f"annotations[{i}] has 'length' {brief(length)}; it must be a frame count")
        owners[ann["category_id"]].add(ann[owner_key])
        instances[ann["category_id"]] += int(length)
    info: list[dict[str, Any]] = []
    for category in dataset["categories"]:
        entry = dict(category)
        seen = owners[category["id"]]
        if is_video:
            missing = [v for v in seen if v not in frames_of]
            if missing:
                raise ResultsError(f"video id {missing[0]} is used by an annotation but not listed in 'videos'")
            entry["image_count"] = sum(frames_of[v] for v in seen)
        else:
            entry["image_count"] = len(seen)
        entry["instance_count"] = instances[category["id"]]
        if add_frequency:
            if is_video:
                entry["frequency"] = "b" if entry["image_count"] > 0 else "n"
            else:
                count = entry["image_count"]
                entry["frequency"] = "r" if count < rare_below else "c" if count < common_below else "f"
        info.append(entry)
    return info


def split_results_by_partition(
    results: list[Any], gt: Mapping[str, Any] | str | os.PathLike[str]
) -> tuple[list[Any], list[Any]]:
    """Split YouTube-VIS results into (base, novel) by the LV-VIS ``partition`` of their category.

    Raises:
        ResultsError: a category lacks ``partition``, or a result's category is not in ``gt``.
    """
    if isinstance(gt, (str, os.PathLike, Path)):
        dataset = read_json(gt, "ground truth file", ResultsError)
    else:
        dataset = gt
    check_categories(dataset, "ground truth", ResultsError, need_names=False)
    partition = _category_field(dataset, "partition", "split results into base and novel")
    base: list[Any] = []
    novel: list[Any] = []
    for i, entry in enumerate(results):
        category = entry.get("category_id") if isinstance(entry, dict) else None
        if not is_id(category) or category not in partition:
            raise ResultsError(f"results entry {i}: category_id {brief(category)} is not in the ground truth")
        if partition[category] in LVVIS_BASE_PARTITIONS:
            base.append(entry)
        elif partition[category] in LVVIS_NOVEL_PARTITIONS:
            novel.append(entry)
        else:
            raise ResultsError(f"category {category} has partition {brief(partition[category])}; expected 0 to 3")
    return base, novel

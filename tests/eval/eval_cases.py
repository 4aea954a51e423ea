"""Small YouTube-VIS-style ground truth / results built in memory, and the plain reference loop."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from tests.reference_fixtures import REFERENCE

EVAL_CASES = REFERENCE / "eval"
SCORED_CASES = ("case0_tiny", "case1_small", "case2_medium", "case3_large", "case4_area_ranges")
BENCH_EVAL = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_eval.py"


def encode_frames(masks: np.ndarray) -> list[dict[str, Any]]:
    """Compressed RLEs (str counts) of bool masks ``[T, H, W]``."""
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": list(r["size"]), "counts": r["counts"].decode("ascii")} for r in encoded]


def box_masks(boxes: Sequence[tuple[int, int, int, int] | None], height: int, width: int) -> list[Any]:
    """One RLE per frame of the boxes (top, left, bottom, right), ``None`` frames stay null."""
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for f, box in enumerate(boxes):
        if box is not None:
            top, left, bottom, right = box
            masks[f, top:bottom, left:right] = True
    rles = encode_frames(masks)
    return [None if box is None else rle for box, rle in zip(boxes, rles, strict=True)]


def tiny_dataset(num_frames: int = 3, height: int = 20, width: int = 30) -> dict[str, Any]:
    """Two videos, three categories (LV-VIS partitions and BURST fields), one track per video."""
    boxes_a = [(2, 2, 10, 12)] * num_frames
    boxes_b = [(5, 10, 15, 25)] * (num_frames - 1) + [None]
    return {
        "videos": [
            {"id": 1, "height": height, "width": width, "length": num_frames},
            {"id": 2, "height": height, "width": width, "length": num_frames},
        ],
        "categories": [
            {"id": 1, "name": "cat", "partition": 0, "frequency": "f", "split": "common"},
            {"id": 2, "name": "dog", "partition": 2, "frequency": "r", "split": "uncommon"},
            {"id": 3, "name": "cow", "partition": 1, "frequency": "c", "split": "common"},
        ],
        "annotations": [
            {
                "id": 1,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": box_masks(boxes_a, height, width),
            },
            {
                "id": 2,
                "video_id": 2,
                "category_id": 2,
                "iscrowd": 0,
                "segmentations": box_masks(boxes_b, height, width),
            },
        ],
    }


def results_from_ground_truth(dataset: dict[str, Any], score: float = 0.9) -> list[dict[str, Any]]:
    """Every ground-truth track returned as a result (perfect predictions)."""
    return [
        {
            "video_id": ann["video_id"],
            "category_id": ann["category_id"],
            "score": score,
            "segmentations": ann["segmentations"],
        }
        for ann in dataset["annotations"]
    ]


def _moving_box_rles(
    rng: np.random.Generator, num_frames: int, height: int, width: int, base: np.ndarray | None
) -> tuple[list[Any], np.ndarray]:
    if base is None:
        size = rng.uniform([4, 4], [height * 0.9, width * 0.9])
        start = rng.uniform([0, 0], [height - size[0], width - size[1]])
        pos = start[None] + rng.normal(0, 2, 2)[None] * np.arange(num_frames)[:, None]
        boxes = np.concatenate([pos, pos + size[None]], axis=1)
    else:
        boxes = base + rng.normal(0, rng.choice([0.0, 1.0, 4.0]), base.shape)
    boxes = np.clip(np.round(boxes), 0, [height, width, height, width]).astype(np.int64)
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    masks = (
        (rows >= boxes[:, 0, None, None])
        & (rows < boxes[:, 2, None, None])
        & (cols >= boxes[:, 1, None, None])
        & (cols < boxes[:, 3, None, None])
    )
    if rng.random() < 0.3:
        masks[rng.random(num_frames) < 0.1] = False  # present but empty frames
    absent = rng.random(num_frames) < 0.15
    rles = encode_frames(masks)
    return [None if absent[f] else rle for f, rle in enumerate(rles)], boxes


def random_case(seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A random case with what the fixtures lack: crowd tracks, a ground-truth id 0, float areas,
    missing ``areas``, non-contiguous video ids, 130 results for one pair, frames of all area ranges."""
    rng = np.random.default_rng(seed)
    num_categories = int(rng.integers(2, 7))
    categories = [
        {
            "id": k + 1,
            "name": f"c{k + 1}",
            "partition": int(rng.integers(0, 4)),
            "frequency": str(rng.choice(["r", "c", "f"])),
            "split": str(rng.choice(["common", "uncommon"])),
        }
        for k in range(num_categories)
    ]
    ann_ids = [int(i) for i in rng.permutation(200)[:100]]
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for v in range(1, int(rng.integers(2, 8)) + 1):
        num_frames = int(rng.integers(1, 6))
        height, width = [(30, 40), (200, 300), (400, 600)][int(rng.integers(0, 3))]
        videos.append({"id": 3 * v, "height": height, "width": width, "length": num_frames})
        tracks = []
        for _ in range(int(rng.integers(0, 6))):
            category = int(rng.integers(1, num_categories + 1))
            segs, boxes = _moving_box_rles(rng, num_frames, height, width, None)
            ann: dict[str, Any] = {
                "id": ann_ids.pop(),
                "video_id": 3 * v,
                "category_id": category,
                "iscrowd": int(rng.random() < 0.25),
                "segmentations": segs,
            }
            if rng.random() < 0.8:
                areas = [int(mask_utils.area(s)) if s else None for s in segs]
                ann["areas"] = [a + 0.6 if a and rng.random() < 0.3 else a for a in areas]
            annotations.append(ann)
            tracks.append((category, boxes))
        crowded = rng.random() < 0.25  # 130 results of one category: the top-100 cut applies
        for _ in range(130 if crowded else int(rng.integers(0, 15))):
            if tracks and (crowded or rng.random() < 0.7):
                category, boxes = tracks[0 if crowded else int(rng.integers(len(tracks)))]
                if rng.random() < 0.2 and not crowded:
                    category = int(rng.integers(1, num_categories + 2))
                segs, _ = _moving_box_rles(rng, num_frames, height, width, boxes)
            else:
                category = int(rng.integers(1, num_categories + 2))
                segs, _ = _moving_box_rles(rng, num_frames, height, width, None)
            tied = rng.random() < 0.3
            score = float(rng.choice([0.25, 0.5, 0.75])) if tied else round(float(rng.random()), 2)
            results.append({"video_id": 3 * v, "category_id": category, "score": score, "segmentations": segs})
    if seed % 2 == 0 and annotations and all(a["id"] != 0 for a in annotations):
        annotations[0]["id"] = 0
    return {"videos": videos, "categories": categories, "annotations": annotations}, results


def plain_loop() -> Callable[[dict[str, Any], list[dict[str, Any]], str], dict[str, Any]]:
    """``plain_evaluate`` of benchmarks/bench_eval.py: the official algorithm as straightforward loops."""
    spec = importlib.util.spec_from_file_location("bench_eval", BENCH_EVAL)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.plain_evaluate

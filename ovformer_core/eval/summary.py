"""The 12 summary numbers (overall and per category group) and the evaluation result object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ovformer_core.eval.accumulate import Accumulated
from ovformer_core.eval.protocols import STAT_NAMES, EvalParams


@dataclass(frozen=True)
class EvalResult:
    """What ``evaluate`` returns.

    Attributes:
        benchmark: ``ytvis``, ``ovis``, ``lvvis`` or ``burst``.
        stats: the 12 numbers by name (``STAT_NAMES`` order); -1 = no ground truth in that setting.
        group_stats: per category group (LV-VIS: base, novel; BURST: base, novel, common, uncommon),
            the same 12 numbers.
        group_categories: category ids of each group.
        precision: float64 ``[T=10, R=101, K, A=4, M=3]`` (-1 where category k has no ground truth).
        recall: float64 ``[T, K, A, M]``.
        scores: float64 ``[T, R, K, A, M]``.
        category_ids: the K category ids, ascending (the K axis).
        video_ids: the evaluated video ids, ascending.
        num_results: entries in the results list.
        num_results_evaluated: entries whose category exists in the ground truth.
        warnings: what the caller should be told (empty results, ignored entries, ...).
    """

    benchmark: str
    stats: Mapping[str, float]
    group_stats: Mapping[str, Mapping[str, float]]
    group_categories: Mapping[str, tuple[int, ...]]
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    category_ids: tuple[int, ...]
    video_ids: tuple[int, ...]
    num_results: int
    num_results_evaluated: int
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metrics (no arrays)."""
        return {
            "benchmark": self.benchmark,
            "stats": dict(self.stats),
            "groups": {name: dict(values) for name, values in self.group_stats.items()},
            "num_videos": len(self.video_ids),
            "num_categories": len(self.category_ids),
            "num_results": self.num_results,
            "num_results_evaluated": self.num_results_evaluated,
            "warnings": list(self.warnings),
        }


def _mean_of_valid(values: np.ndarray) -> float:
    kept = values[values > -1]
    return float(np.mean(kept)) if kept.size else -1.0


def summary_stats(acc: Accumulated, params: EvalParams, categories: np.ndarray | None = None) -> dict[str, float]:
    """The official ``summarize()`` numbers, optionally restricted to category positions ``categories``.

    Slices and means are taken exactly as the official code takes them (same element order), so the
    values are bit-identical, not merely close.
    """
    iou_thresholds = np.asarray(params.iou_thresholds)
    top = params.max_dets[-1]

    def one(is_ap: bool, iou: float | None = None, area: str = "all", max_dets: int = top) -> float:
        area_idx = [i for i, label in enumerate(params.area_labels) if label == area]
        det_idx = [i for i, m in enumerate(params.max_dets) if m == max_dets]
        values = acc.precision if is_ap else acc.recall
        if iou is not None:
            values = values[np.where(iou == iou_thresholds)[0]]
        if is_ap:
            values = values[:, :, :, area_idx, det_idx]
            if categories is not None:
                values = values[:, :, categories]
        else:
            values = values[:, :, area_idx, det_idx]
            if categories is not None:
                values = values[:, categories]
        return _mean_of_valid(values)

    numbers = (
        one(True),
        one(True, iou=0.5),
        one(True, iou=0.75),
        one(True, area="small"),
        one(True, area="medium"),
        one(True, area="large"),
        one(False, max_dets=params.max_dets[0]),
        one(False, max_dets=params.max_dets[1]),
        one(False),
        one(False, area="small"),
        one(False, area="medium"),
        one(False, area="large"),
    )
    return dict(zip(STAT_NAMES, numbers, strict=True))

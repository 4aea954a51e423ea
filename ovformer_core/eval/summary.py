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
        accumulated: the accumulated arrays (``precision``, ``recall``, ``scores`` below are built from
            it on first use).
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
    accumulated: Accumulated
    category_ids: tuple[int, ...]
    video_ids: tuple[int, ...]
    num_results: int
    num_results_evaluated: int
    warnings: tuple[str, ...] = field(default=())

    @property
    def precision(self) -> np.ndarray:
        """float64 ``[T=10, R=101, K, A=4, M=3]`` (-1 where category k has no ground truth)."""
        return self.accumulated.precision

    @property
    def recall(self) -> np.ndarray:
        """float64 ``[T, K, A, M]``."""
        return self.accumulated.recall

    @property
    def scores(self) -> np.ndarray:
        """float64 ``[T, R, K, A, M]``."""
        return self.accumulated.scores

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
    values are bit-identical, not merely close. Only the (area range, max detections) slices used are
    built (``Accumulated.precision_at``), never the full arrays.
    """
    iou_thresholds = np.asarray(params.iou_thresholds)
    top = params.max_dets[-1]

    def one(is_ap: bool, iou: float | None = None, area: str = "all", max_dets: int = top) -> float:
        if area not in params.area_labels or max_dets not in params.max_dets:
            return -1.0
        area_idx, det_idx = params.area_labels.index(area), params.max_dets.index(max_dets)
        # [T, R, K] or [T, K]: the official values[..., area_idx, det_idx] slice.
        values = acc.precision_at(area_idx, det_idx) if is_ap else acc.recall_at(area_idx, det_idx)
        if iou is not None:
            values = values[np.where(iou == iou_thresholds)[0]]
        if categories is not None:
            values = values[:, :, categories] if is_ap else values[:, categories]
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

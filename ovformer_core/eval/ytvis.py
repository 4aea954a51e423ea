"""``evaluate``: the YouTube-VIS / OVIS / LV-VIS / BURST video instance segmentation metrics.

One vectorised implementation of the official evaluators (``ytvoseval.py``, ``lvviseval.py``,
``bursteval.py``), giving the same numbers: spatio-temporal mask IoU, 10 IoU thresholds, 101 recall
points, area ranges on a track's mean area, max detections 1/10/100, COCO greedy matching per
(video, category) and interpolated precision pooled over videos per category. The differences between
benchmarks are the switches of ``BenchmarkRules``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ovformer_core.errors import ResultsError
from ovformer_core.eval.accumulate import MatchedDetections, accumulate
from ovformer_core.eval.ground_truth import GroundTruth, load_ground_truth
from ovformer_core.eval.matching import greedy_match
from ovformer_core.eval.protocols import BenchmarkRules, EvalParams, rules_for
from ovformer_core.eval.results_check import Detections, read_checked_results
from ovformer_core.eval.summary import EvalResult, summary_stats
from ovformer_core.eval.video_iou import block_ious
from ovformer_core.io.json_input import collector_paused


class EvaluationWarning(UserWarning):
    """Something about the inputs the user should know; the metrics are still computed."""


def _gt_avg_areas(gt: GroundTruth, mode: str) -> np.ndarray:
    """Each ground-truth track's ``avg_area`` (float64 ``[G]``) under the benchmark's area rule."""
    num_tracks = len(gt.track_ids)
    if mode == "zero":
        return np.zeros(num_tracks)
    avg = np.zeros(num_tracks)
    for g, area_list in enumerate(gt.track_area_lists):
        if area_list is None:  # no 'areas' field: the per-frame mask areas stand in
            start, end = gt.masks.track_start[g], gt.masks.track_start[g + 1]
            area_list = [int(a) for a in gt.masks.area[start:end]]
        # Falsy areas (null, 0) are skipped; LV-VIS truncates to int first. np.mean as the official code.
        kept = [int(a) if mode == "int_mean" else a for a in area_list if a]
        avg[g] = np.array(kept).mean() if kept else 0.0
    return avg


def _det_avg_areas(dets: Detections, mode: str) -> np.ndarray:
    """Each result's ``avg_area`` (float64 ``[D]``): mean of its non-zero per-frame mask areas."""
    num_dets = len(dets.score)
    if mode == "zero" or num_dets == 0:
        return np.zeros(num_dets)
    owner = np.repeat(np.arange(num_dets), np.diff(dets.masks.track_start))
    positive = dets.masks.area > 0
    # Integer areas: the sum is exact, so sum / count equals numpy's mean bit for bit.
    total = np.bincount(owner[positive], weights=dets.masks.area[positive], minlength=num_dets)
    count = np.bincount(owner[positive], minlength=num_dets)
    return np.divide(total, count, out=np.zeros(num_dets), where=count > 0)


def _outside(avg_area: np.ndarray, params: EvalParams) -> np.ndarray:
    """bool ``[A, N]``: the mean area falls outside each area range (both ends inclusive)."""
    lo = np.array([r[0] for r in params.area_ranges])[:, None]
    hi = np.array([r[1] for r in params.area_ranges])[:, None]
    return (avg_area[None, :] < lo) | (avg_area[None, :] > hi)


def _group_positions(gt: GroundTruth, rules: BenchmarkRules) -> dict[str, np.ndarray]:
    """Category positions (K axis) of each group, in the ground truth's category order.

    The official code indexes the K axis with ``id - 1``, which assumes ids 1..K; looking ids up gives
    the same answer for such files and the right one for others.
    """
    position = gt.category_index()
    groups: dict[str, np.ndarray] = {}
    for group in rules.groups:
        members: list[int] = []
        for category in gt.categories:
            if group.field not in category:
                raise ResultsError(
                    f"ground truth: category id {category['id']} has no '{group.field}', which the "
                    f"{rules.name} benchmark needs for its {group.name} group; use `benchmark`='ytvis' "
                    "to evaluate without groups"
                )
            if category[group.field] in group.values:
                members.append(position[int(category["id"])])
        groups[group.name] = np.array(members, dtype=np.int64)
    return groups


def _rank_within_pairs(dets: Detections) -> tuple[np.ndarray, np.ndarray]:
    """Results ordered by (video, category, descending score, file order) and each one's rank."""
    order = np.lexsort((dets.file_index, -dets.score, dets.category, dets.video))
    video, category = dets.video[order], dets.category[order]
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (video[1:] != video[:-1]) | (category[1:] != category[:-1])
    position = np.arange(len(order))
    group_start = np.maximum.accumulate(np.where(new_group, position, 0)) if len(order) else position
    return order, position - group_start


def evaluate(
    gt: str | os.PathLike[str] | Mapping[str, Any] | GroundTruth,
    results: str | os.PathLike[str] | list[Any],
    benchmark: str = "ytvis",
    params: EvalParams | None = None,
) -> EvalResult:
    """Evaluate video instance segmentation results against ground truth, as the official code does.

    Args:
        gt: ground-truth file path, parsed dataset dict, or a ``GroundTruth`` from
            ``load_ground_truth`` (reuse it to evaluate several result sets).
        results: results file path or the list of result dicts itself (never modified): one
            ``{"video_id", "category_id", "score", "segmentations"}`` per predicted track.
        benchmark: ``ytvis`` / ``ovis`` (YouTube-VIS rules), ``lvvis`` (adds base/novel groups) or
            ``burst`` (adds base/novel/common/uncommon; see ``BenchmarkRules`` for its differences).
        params: thresholds and ranges; the official ones by default.

    Returns:
        The summary numbers, group numbers and the precision/recall/scores arrays.

    Empty results (where the official evaluators crash with ``IndexError``) give 0 for every number
    that has ground truth and -1 for those without, plus an ``EvaluationWarning``. Results whose
    category id is absent from the ground truth are ignored, with a warning.

    Raises:
        ResultsError: malformed ground truth or results (one line naming the first bad entry).
        OVFormerError: unknown benchmark.
    """
    with collector_paused():  # many acyclic containers are built; see collector_paused
        return _evaluate(gt, results, benchmark, params)


def _evaluate(
    gt: str | os.PathLike[str] | Mapping[str, Any] | GroundTruth,
    results: str | os.PathLike[str] | list[Any],
    benchmark: str,
    params: EvalParams | None,
) -> EvalResult:
    rules = rules_for(benchmark)
    params = params or EvalParams()
    ground_truth = gt if isinstance(gt, GroundTruth) else load_ground_truth(gt)
    groups = _group_positions(ground_truth, rules)
    dets = read_checked_results(results, ground_truth)
    notes = _input_warnings(ground_truth, dets)

    num_categories = len(ground_truth.category_ids)
    num_areas = len(params.area_ranges)
    num_thr = len(params.iou_thresholds)
    gt_ignore = _outside(_gt_avg_areas(ground_truth, rules.area_mode), params)  # [A, G]
    if rules.crowd_is_ignored:
        gt_ignore |= ground_truth.track_crowd[None, :]
    det_outside = _outside(_det_avg_areas(dets, rules.area_mode), params)  # [A, D]

    order, rank = _rank_within_pairs(dets)
    kept = order[rank < params.max_dets[-1]]
    kept_rank = rank[rank < params.max_dets[-1]]
    matched = np.zeros((num_areas, num_thr, len(kept)), dtype=bool)
    ignored = np.broadcast_to(det_outside[:, None, kept], matched.shape).copy()
    _match_into(ground_truth, dets, kept, gt_ignore, params, rules, matched, ignored)

    num_regular_gt = np.zeros((num_categories, num_areas), dtype=np.int64)
    for a in range(num_areas):
        num_regular_gt[:, a] = np.bincount(ground_truth.track_category[~gt_ignore[a]], minlength=num_categories)
    acc = accumulate(
        MatchedDetections(
            category=dets.category[kept],
            video=dets.video[kept],
            rank=kept_rank,
            score=dets.score[kept],
            matched=matched,
            ignored=ignored,
        ),
        num_regular_gt,
        num_categories,
        params,
    )
    for note in notes:
        warnings.warn(note, EvaluationWarning, stacklevel=3)
    return EvalResult(
        benchmark=rules.name,
        stats=summary_stats(acc, params),
        group_stats={name: summary_stats(acc, params, positions) for name, positions in groups.items()},
        group_categories={
            name: tuple(int(ground_truth.category_ids[p]) for p in positions) for name, positions in groups.items()
        },
        accumulated=acc,
        category_ids=tuple(int(c) for c in ground_truth.category_ids),
        video_ids=tuple(int(v) for v in ground_truth.video_ids),
        num_results=dets.num_results,
        num_results_evaluated=len(dets.score),
        warnings=tuple(notes),
    )


def _input_warnings(gt: GroundTruth, dets: Detections) -> list[str]:
    notes: list[str] = []
    if dets.num_results == 0:
        notes.append("the results are empty: every metric is 0, or -1 where there is no ground truth")
    if dets.num_unknown_category:
        notes.append(
            f"{dets.num_unknown_category} of {dets.num_results} results have a category id that is not in "
            "the ground truth and were ignored; category ids must be the dataset's ids"
        )
    if len(gt.track_ids) == 0:
        notes.append("the ground truth has no annotations: every metric is -1")
    if gt.num_skipped:
        notes.append(
            f"{gt.num_skipped} ground-truth annotations refer to a video or category that is not listed "
            "and were skipped"
        )
    return notes


def _match_into(
    gt: GroundTruth,
    dets: Detections,
    kept: np.ndarray,
    gt_ignore: np.ndarray,
    params: EvalParams,
    rules: BenchmarkRules,
    matched: np.ndarray,
    ignored: np.ndarray,
) -> None:
    """Match kept results to ground truth of the same (video, category); fill ``matched``/``ignored``.

    Args:
        kept: int ``[N]`` result indices in (video, category, rank) order.
        gt_ignore: bool ``[A, G]``.
        matched, ignored: bool ``[A, T, N]``, updated in place for the results of pairs that have ground
            truth (``ignored`` arrives holding the "outside the area range" flags).
    """
    num_categories = len(gt.category_ids)
    gt_order = np.lexsort((np.arange(len(gt.track_ids)), gt.track_category, gt.track_video))
    gt_key = gt.track_video[gt_order] * num_categories + gt.track_category[gt_order]
    det_key = dets.video[kept] * num_categories + dets.category[kept]
    pair_keys = np.intersect1d(gt_key, det_key)
    if pair_keys.size == 0:
        return
    gt_lo = np.searchsorted(gt_key, pair_keys, side="left")
    gt_hi = np.searchsorted(gt_key, pair_keys, side="right")
    det_lo = np.searchsorted(det_key, pair_keys, side="left")
    det_hi = np.searchsorted(det_key, pair_keys, side="right")
    pair_video = pair_keys // num_categories

    # One IoU matrix per video holding pairs (all its pairs together), then each pair's block of it.
    videos, pair_block = np.unique(pair_video, return_inverse=True)
    det_cols = np.concatenate([np.arange(det_lo[p], det_hi[p]) for p in range(len(pair_keys))])
    gt_cols = np.concatenate([np.arange(gt_lo[p], gt_hi[p]) for p in range(len(pair_keys))])
    det_pair = np.repeat(np.arange(len(pair_keys)), det_hi - det_lo)
    gt_pair = np.repeat(np.arange(len(pair_keys)), gt_hi - gt_lo)
    blocks = block_ious(
        dets.masks,
        kept[det_cols],
        pair_block[det_pair],
        gt.masks,
        gt_order[gt_cols],
        pair_block[gt_pair],
        len(videos),
    )
    pair_ious: list[np.ndarray] = []
    row_in_block = np.zeros(len(videos), dtype=np.int64)
    col_in_block = np.zeros(len(videos), dtype=np.int64)
    for p in range(len(pair_keys)):
        b = pair_block[p]
        d_n, g_n = det_hi[p] - det_lo[p], gt_hi[p] - gt_lo[p]
        r0, c0 = row_in_block[b], col_in_block[b]
        pair_ious.append(blocks[b][r0 : r0 + d_n, c0 : c0 + g_n])
        row_in_block[b] += d_n
        col_in_block[b] += g_n

    pair_gts = [gt_order[gt_lo[p] : gt_hi[p]] for p in range(len(pair_keys))]
    matches = greedy_match(
        pair_ious,
        [gt_ignore[:, g] for g in pair_gts],
        [gt.track_crowd[g] for g in pair_gts],
        np.asarray(params.iou_thresholds),
        unique=rules.unique_matching,
    )
    for p, match in enumerate(matches):
        cols = np.arange(det_lo[p], det_hi[p])
        gts = pair_gts[p]
        found = match >= 0  # [A, T, D_p]
        local = np.where(found, match, 0)
        # The official code stores the matched ground-truth id and tests it for truth: an id of 0 counts
        # as "unmatched" there, so it does here.
        matched_id = np.where(found, gt.track_ids[gts][local], 0)
        areas = np.arange(local.shape[0])[:, None, None]
        gt_ig = gt_ignore[:, gts][areas, local] & found
        is_matched = matched_id != 0
        matched[:, :, cols] = is_matched
        ignored[:, :, cols] = gt_ig | (~is_matched & ignored[:, :, cols])

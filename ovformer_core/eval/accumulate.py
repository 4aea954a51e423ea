"""Precision / recall / score arrays from matched results, every category at once.

The official ``accumulate`` loops over categories, area ranges and max-detection limits, pooling each
category's results over videos. Here results are sorted once into per-category segments and every
per-category step (cumulative sums, the precision envelope, the recall-threshold look-up) is done for
all segments together, with integer arithmetic wherever the official code is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ovformer_core.eval.benchmarks import EvalParams

# Added to the precision denominator by the official code (np.spacing(1)).
_EPS = np.spacing(1)


@dataclass(frozen=True)
class MatchedDetections:
    """Results after matching, one column per result kept (rank < the largest max-detection limit).

    Attributes:
        category, video, rank: int64 ``[N]`` category index, video index, rank within its
            (video, category) by descending score (ties: file order).
        score: float64 ``[N]``.
        matched: bool ``[A, T, N]`` matched to a ground truth (the official ``dtMatches != 0``).
        ignored: bool ``[A, T, N]`` the official ``dtIgnore``.
    """

    category: np.ndarray
    video: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray


@dataclass(frozen=True)
class Accumulated:
    """The official ``eval`` arrays (-1 where a category has no non-ignored ground truth).

    Attributes:
        precision: float64 ``[T, R, K, A, M]``.
        recall: float64 ``[T, K, A, M]``.
        scores: float64 ``[T, R, K, A, M]``.
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


def _reverse_cummax_by_segment(values: np.ndarray, segment: np.ndarray, num_segments: int) -> np.ndarray:
    """Running maximum from the right within each segment of columns, exactly.

    Args:
        values: float ``[T, N]``.
        segment: int ``[N]`` non-decreasing segment id of each column.

    Values are replaced by their ranks and each segment is lifted above every later one, so a single
    ``maximum.accumulate`` never carries a value across segments and no float is ever altered.
    """
    if values.size == 0:
        return values.copy()
    distinct, rank = np.unique(values, return_inverse=True)
    rank = rank.reshape(values.shape)
    lift = (num_segments - 1 - segment) * len(distinct)
    lifted = rank + lift[None, :]
    envelope = np.maximum.accumulate(lifted[:, ::-1], axis=1)[:, ::-1] - lift[None, :]
    return distinct[envelope]


def _tp_count_for_recall(recall_thresholds: np.ndarray, num_gt: np.ndarray) -> np.ndarray:
    """Smallest integer n with ``n / num_gt >= threshold`` in float64, int64 ``[K, R]``.

    ``searchsorted(recall, threshold)`` on recall = cumulative TP / num_gt therefore lands on the first
    result at which the TP count reaches n. The candidates around floor(threshold * num_gt) cover the
    rounding of both products.
    """
    num_gt_f = num_gt.astype(np.float64)[:, None, None]
    thr = recall_thresholds[None, :, None]
    base = np.floor(recall_thresholds[None, :] * num_gt.astype(np.float64)[:, None])[:, :, None]
    candidates = np.maximum(base + np.arange(-1, 3)[None, None, :], 0.0)
    reaches = candidates / num_gt_f >= thr
    first = np.argmax(reaches, axis=-1)
    return np.take_along_axis(candidates, first[..., None], axis=-1)[..., 0].astype(np.int64)


def accumulate(
    dets: MatchedDetections, num_regular_gt: np.ndarray, num_categories: int, params: EvalParams
) -> Accumulated:
    """Interpolated precision, recall and scores per (threshold, category, area range, max dets).

    Args:
        dets: matched results.
        num_regular_gt: int ``[K, A]`` non-ignored ground-truth tracks per category and area range.
        num_categories: K.
        params: thresholds, recall points and max-detection limits.
    """
    num_thr = len(params.iou_thresholds)
    num_rec = len(params.recall_thresholds)
    num_areas = len(params.area_ranges)
    num_max = len(params.max_dets)
    k_all = np.arange(num_categories)
    recall_thr = np.asarray(params.recall_thresholds, dtype=np.float64)
    precision = -np.ones((num_thr, num_rec, num_categories, num_areas, num_max))
    recall = -np.ones((num_thr, num_categories, num_areas, num_max))
    scores = -np.ones((num_thr, num_rec, num_categories, num_areas, num_max))
    t_idx = np.arange(num_thr)

    for m, max_det in enumerate(params.max_dets):
        kept = np.flatnonzero(dets.rank < max_det)
        # Official pooling: per category, results of all videos by descending score with a stable sort
        # over the concatenation in ascending video id, each video's results in rank order.
        order = kept[np.lexsort((dets.rank[kept], dets.video[kept], -dets.score[kept], dets.category[kept]))]
        category = dets.category[order]
        score = dets.score[order]
        num_cols = len(order)
        seg_start = np.searchsorted(category, k_all, side="left")
        seg_end = np.searchsorted(category, k_all, side="right")
        seg_len = seg_end - seg_start
        for a in range(num_areas):
            num_gt = num_regular_gt[:, a]
            valid = num_gt > 0
            if not valid.any():
                continue
            matched = dets.matched[a][:, order]
            ignored = dets.ignored[a][:, order]
            tps = matched & ~ignored
            fps = ~matched & ~ignored
            tp_cum = np.cumsum(tps, axis=1, dtype=np.int64)
            fp_cum = np.cumsum(fps, axis=1, dtype=np.int64)
            padded_tp = np.concatenate([np.zeros((num_thr, 1), dtype=np.int64), tp_cum], axis=1)
            padded_fp = np.concatenate([np.zeros((num_thr, 1), dtype=np.int64), fp_cum], axis=1)
            tp_before = padded_tp[:, seg_start]  # [T, K]
            tp_in_seg = padded_tp[:, seg_end] - tp_before
            tp = (tp_cum - tp_before[:, category]).astype(np.float64)
            fp = (fp_cum - padded_fp[:, seg_start][:, category]).astype(np.float64)
            safe_gt = np.where(valid, num_gt, 1)
            rc = tp / safe_gt[category][None, :]
            pr = tp / (fp + tp + _EPS)
            envelope = _reverse_cummax_by_segment(pr, category, num_categories)

            last = np.where(seg_len > 0, seg_end - 1, 0)
            rec = np.where(seg_len[None, :] > 0, rc[:, last] if num_cols else 0.0, 0.0)
            recall[:, valid, a, m] = rec[:, valid]

            # Precision at recall point r = envelope at the first result whose recall reaches r.
            need = _tp_count_for_recall(recall_thr, safe_gt)[None, :, :]  # [1, K, R]
            tp_positions = np.flatnonzero(tps.ravel())  # row-major: row t then column
            row_offset = np.concatenate([[0], np.cumsum(tps.sum(axis=1))])[:num_thr]
            flat = row_offset[:, None, None] + tp_before[:, :, None] + need - 1  # [T, K, R]
            by_count = (need >= 1) & (need <= tp_in_seg[:, :, None])
            at_start = (need == 0) & (seg_len[None, :, None] > 0)
            found = by_count | at_start
            safe_flat = np.clip(flat, 0, max(len(tp_positions) - 1, 0))
            col_from_tp = tp_positions[safe_flat] - t_idx[:, None, None] * num_cols if len(tp_positions) else safe_flat
            col = np.where(at_start, seg_start[None, :, None], col_from_tp)
            col = np.clip(col, 0, max(num_cols - 1, 0))
            if num_cols:
                prec_k = np.where(found, envelope[t_idx[:, None, None], col], 0.0)  # [T, K, R]
                score_k = np.where(found, score[col], 0.0)
            else:
                prec_k = np.zeros(found.shape)
                score_k = np.zeros(found.shape)
            precision[:, :, valid, a, m] = prec_k.transpose(0, 2, 1)[:, :, valid]
            scores[:, :, valid, a, m] = score_k.transpose(0, 2, 1)[:, :, valid]
    return Accumulated(precision=precision, recall=recall, scores=scores)

"""Precision / recall / score arrays from matched results, every category at once.

The official ``accumulate`` loops over categories, area ranges and max-detection limits, pooling each
category's results over videos. Here results are sorted once into per-category segments and every
per-category step (cumulative sums, the precision envelope, the recall-threshold look-up) is done for
all segments together, with integer arithmetic wherever the official code is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ovformer_core.eval.protocols import EvalParams

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
    """The official ``eval`` arrays, stored for the categories that have non-ignored ground truth only.

    The full arrays hold -1 for every other category: 116 MB each for precision and scores at LV-VIS
    size, mostly -1. They are built on first use; the summary numbers read one (area range, max
    detections) slice at a time (``precision_at``, ``recall_at``).

    Attributes:
        valid: per area range a, int64 ``[K_a]`` ascending positions of the categories with non-ignored
            ground truth.
        precision_blocks, scores_blocks: per area range, per max-detection limit: float64 ``[T, K_a, R]``.
        recall_blocks: per area range, per max-detection limit: float64 ``[T, K_a]``.
        num_categories: K.
        num_recall_thresholds: R.
    """

    valid: tuple[np.ndarray, ...]
    precision_blocks: tuple[tuple[np.ndarray, ...], ...]
    scores_blocks: tuple[tuple[np.ndarray, ...], ...]
    recall_blocks: tuple[tuple[np.ndarray, ...], ...]
    num_categories: int
    num_recall_thresholds: int

    @cached_property
    def _widened_slices(self) -> dict[tuple[bool, int, int], np.ndarray]:
        return {}

    def _widened(self, is_precision: bool, area: int, max_det: int) -> np.ndarray:
        """Block ``[T, K_a, (R)]`` of (area, max_det) widened to all K categories, -1 elsewhere (cached)."""
        key = (is_precision, area, max_det)
        if key not in self._widened_slices:
            block = (self.precision_blocks if is_precision else self.recall_blocks)[area][max_det]
            out = np.full((block.shape[0], self.num_categories, *block.shape[2:]), -1.0)
            out[:, self.valid[area]] = block
            self._widened_slices[key] = out
        return self._widened_slices[key]

    def precision_at(self, area: int, max_det: int) -> np.ndarray:
        """float64 ``[T, R, K]``: ``precision[:, :, :, area, max_det]`` (a transposed view of ``[T, K, R]``)."""
        return self._widened(True, area, max_det).transpose(0, 2, 1)

    def recall_at(self, area: int, max_det: int) -> np.ndarray:
        """float64 ``[T, K]``: ``recall[:, :, area, max_det]``."""
        return self._widened(False, area, max_det)

    def _full(self, blocks: tuple[tuple[np.ndarray, ...], ...], per_recall: bool) -> np.ndarray:
        num_areas, num_max_dets = len(blocks), len(blocks[0])
        num_thr = blocks[0][0].shape[0]
        tail = (self.num_recall_thresholds,) if per_recall else ()
        # Filled as [A, M, T, K, (R)] (contiguous writes), handed out as the official [T, (R), K, A, M] view.
        full = np.full((num_areas, num_max_dets, num_thr, self.num_categories, *tail), -1.0)
        for a in range(num_areas):
            for m in range(num_max_dets):
                full[a, m][:, self.valid[a]] = blocks[a][m]
        return full.transpose(2, 4, 3, 0, 1) if per_recall else full.transpose(2, 3, 0, 1)

    @cached_property
    def precision(self) -> np.ndarray:
        """float64 ``[T, R, K, A, M]``."""
        return self._full(self.precision_blocks, per_recall=True)

    @cached_property
    def scores(self) -> np.ndarray:
        """float64 ``[T, R, K, A, M]``."""
        return self._full(self.scores_blocks, per_recall=True)

    @cached_property
    def recall(self) -> np.ndarray:
        """float64 ``[T, K, A, M]``."""
        return self._full(self.recall_blocks, per_recall=False)


def _envelope_at(pr: np.ndarray, col: np.ndarray, found: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Interpolated precision: ``max(pr[t, col[t, k, r] : end[k]])`` where ``found``, else 0.

    ``col`` is non-decreasing along r, so the maximum from each position to the segment end is the
    running maximum (from the right) of the maxima of the chunks between consecutive positions; one
    ``maximum.reduceat`` gives every chunk. Exact: floats are only compared.

    Args:
        pr: float ``[T, N]`` precision of each pooled result.
        col: int ``[T, K, R]`` first result reaching each recall point.
        found: bool ``[T, K, R]``; False where the recall point is never reached.
        end: int ``[K]`` end (exclusive) of each category's results.
    """
    num_thr, num_cols = pr.shape
    row_start = (np.arange(num_thr) * num_cols)[:, None, None]
    ends = np.broadcast_to(end[None, :, None], (num_thr, len(end), 1))
    # Unreached points start their (discarded) chunk at the segment end, so reached chunks stop there.
    bounds = row_start + np.concatenate([np.where(found, col, ends), ends], axis=2)  # [T, K, R + 1]
    values = np.concatenate([pr.ravel(), [-np.inf]])  # the sentinel makes index T * N valid
    chunk_max = np.maximum.reduceat(values, bounds.ravel()).reshape(bounds.shape)[:, :, :-1]
    chunk_max = np.where(found, chunk_max, -np.inf)
    envelope = np.maximum.accumulate(chunk_max[:, :, ::-1], axis=2)[:, :, ::-1]
    return np.where(found, envelope, 0.0)


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

    Per category k (results of all videos pooled by descending score): cumulative TP/FP counts over
    non-ignored results, precision = TP / (TP + FP + eps) made non-increasing from the right, and for
    each recall point the precision and score at the first result whose recall reaches it (0 past the
    last); recall = final TP / number of non-ignored ground-truth tracks. Categories without such
    ground truth stay -1.

    Args:
        dets: matched results.
        num_regular_gt: int ``[K, A]`` non-ignored ground-truth tracks per category and area range.
        num_categories: K.
        params: thresholds, recall points and max-detection limits.
    """
    num_thr = len(params.iou_thresholds)
    num_rec = len(params.recall_thresholds)
    num_areas = len(params.area_ranges)
    k_all = np.arange(num_categories)
    recall_thr = np.asarray(params.recall_thresholds, dtype=np.float64)
    valid_by_area = tuple(np.flatnonzero(num_regular_gt[:, a] > 0) for a in range(num_areas))
    # [a][m] blocks over the valid categories; areas without any keep empty ones.
    precision: list[list[np.ndarray]] = [[] for _ in range(num_areas)]
    scores: list[list[np.ndarray]] = [[] for _ in range(num_areas)]
    recall: list[list[np.ndarray]] = [[] for _ in range(num_areas)]
    t_idx = np.arange(num_thr)[:, None, None]
    need_by_area = [
        _tp_count_for_recall(recall_thr, num_regular_gt[num_regular_gt[:, a] > 0, a]) for a in range(num_areas)
    ]

    for max_det in params.max_dets:  # blocks are appended in max-detection order
        kept = np.flatnonzero(dets.rank < max_det)
        # Official pooling: per category, results of all videos by descending score with a stable sort
        # over the concatenation in ascending video id, each video's results in rank order.
        order = kept[np.lexsort((dets.rank[kept], dets.video[kept], -dets.score[kept], dets.category[kept]))]
        category = dets.category[order]
        score = dets.score[order]
        seg_start = np.searchsorted(category, k_all, side="left")
        seg_end = np.searchsorted(category, k_all, side="right")
        for a in range(num_areas):
            valid = valid_by_area[a]
            if valid.size == 0:
                precision[a].append(np.zeros((num_thr, 0, num_rec)))
                scores[a].append(np.zeros((num_thr, 0, num_rec)))
                recall[a].append(np.zeros((num_thr, 0)))
                continue
            num_gt = num_regular_gt[valid, a]
            ignored = dets.ignored[a][:, order]
            tps = dets.matched[a][:, order] & ~ignored
            fps = ~dets.matched[a][:, order] & ~ignored
            padded_tp = np.zeros((num_thr, len(order) + 1), dtype=np.int64)
            padded_fp = np.zeros((num_thr, len(order) + 1), dtype=np.int64)
            np.cumsum(tps, axis=1, out=padded_tp[:, 1:])
            np.cumsum(fps, axis=1, out=padded_fp[:, 1:])
            # Counts restart at each category: subtract what precedes the category's segment.
            tp = (padded_tp[:, 1:] - padded_tp[:, seg_start][:, category]).astype(np.float64)
            fp = (padded_fp[:, 1:] - padded_fp[:, seg_start][:, category]).astype(np.float64)
            pr = tp / (fp + tp + _EPS)

            start, end = seg_start[valid], seg_end[valid]
            tp_before = padded_tp[:, start]  # [T, Kv]
            tp_in_seg = padded_tp[:, end] - tp_before
            recall[a].append(np.where(end > start, tp_in_seg.astype(np.float64) / num_gt, 0.0))

            # First result whose recall reaches each recall point: where the TP count reaches `need`.
            need = need_by_area[a][None, :, :]  # [1, Kv, R]
            tp_positions = np.flatnonzero(tps.ravel())  # row-major: row t, then column
            row_offset = np.concatenate([[0], np.cumsum(tps.sum(axis=1))])[:num_thr, None, None]
            nth_tp = row_offset + tp_before[:, :, None] + need - 1
            by_count = (need >= 1) & (need <= tp_in_seg[:, :, None])
            at_start = (need == 0) & (end > start)[None, :, None]
            found = by_count | at_start
            if tp_positions.size:
                tp_col = tp_positions[np.clip(nth_tp, 0, tp_positions.size - 1)] - t_idx * len(order)
            else:
                tp_col = np.zeros(nth_tp.shape, dtype=np.int64)
            col = np.where(at_start, start[None, :, None], tp_col)
            precision[a].append(_envelope_at(pr, col, found, end))
            scores[a].append(np.where(found, score[np.where(found, col, 0)] if len(order) else 0.0, 0.0))
    return Accumulated(
        valid=valid_by_area,
        precision_blocks=tuple(map(tuple, precision)),
        scores_blocks=tuple(map(tuple, scores)),
        recall_blocks=tuple(map(tuple, recall)),
        num_categories=num_categories,
        num_recall_thresholds=num_rec,
    )

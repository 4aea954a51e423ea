"""Greedy COCO matching of results to ground truth, batched over (video, category) pairs.

The official ``evaluateVid`` loops over area ranges, IoU thresholds, results and ground truth in Python
for each (video, category). Here one step handles the result of rank r of every pair at once, for all
area ranges and thresholds: ``[pairs, A, T, G]`` boolean arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The official loop caps the threshold at 1 - 1e-10 (``min([t, 1 - 1e-10])``) so that IoU 1 matches.
_MAX_IOU_THRESHOLD = 1 - 1e-10


def greedy_match(
    ious: Sequence[np.ndarray],
    gt_ignore: Sequence[np.ndarray],
    gt_crowd: Sequence[np.ndarray],
    thresholds: np.ndarray,
    unique: bool,
) -> list[np.ndarray]:
    """Match each pair's results (in rank order) to its ground truth, per area range and threshold.

    Rule (official): a result takes, among the ground truth it may still take (not yet matched at this
    threshold unless crowd, when ``unique``), with IoU >= threshold, the non-ignored one of highest IoU
    and, only when there is none, the ignored one of highest IoU; ties go to the later track in file
    order (the official scan replaces its best on ``>=``, over ground truth sorted ignored-last with a
    stable sort).

    Args:
        ious: per pair float ``[D_p, G_p]``, rows in rank order, ``D_p, G_p >= 1``.
        gt_ignore: per pair bool ``[A, G_p]`` (area range / crowd ignore).
        gt_crowd: per pair bool ``[G_p]``.
        thresholds: float ``[T]`` IoU thresholds.
        unique: False for BURST, where a matched ground truth stays available.

    Returns:
        per pair int64 ``[A, T, D_p]``: index of the matched ground truth in the pair, -1 if none.
    """
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(ious)
    thr = np.minimum(np.asarray(thresholds, dtype=np.float64), _MAX_IOU_THRESHOLD)
    num_gt = np.array([m.shape[1] for m in ious], dtype=np.int64)
    # Pairs are padded to the largest ground-truth count of their bucket; power-of-two buckets keep the
    # padding below 2x whatever the spread (a crowded OVIS video next to single-object ones).
    bucket = np.ceil(np.log2(np.maximum(num_gt, 1))).astype(np.int64)
    for b in np.unique(bucket):
        # Python ints: Sequence indexing is typed for int, not numpy integers.
        members: list[int] = np.flatnonzero(bucket == b).tolist()
        results = _match_bucket(
            [ious[p] for p in members], [gt_ignore[p] for p in members], [gt_crowd[p] for p in members], thr, unique
        )
        for p, result in zip(members, results, strict=True):
            out[p] = result
    return out


def _match_bucket(
    ious: list[np.ndarray],
    gt_ignore: list[np.ndarray],
    gt_crowd: list[np.ndarray],
    thr: np.ndarray,
    unique: bool,
) -> list[np.ndarray]:
    num_pairs = len(ious)
    num_areas = gt_ignore[0].shape[0]
    num_thr = len(thr)
    num_det = np.array([m.shape[0] for m in ious], dtype=np.int64)
    # Longest first, so that the pairs still active at rank r are a prefix.
    order = np.argsort(-num_det, kind="stable")
    max_det = int(num_det.max())
    max_gt = max(m.shape[1] for m in ious)
    iou_pad = np.full((num_pairs, max_det, max_gt), -1.0)  # padding never reaches a threshold
    ignore_pad = np.zeros((num_pairs, num_areas, max_gt), dtype=bool)
    crowd_pad = np.zeros((num_pairs, max_gt), dtype=bool)
    for row, p in enumerate(order):
        d, g = ious[p].shape
        iou_pad[row, :d, :g] = ious[p]
        ignore_pad[row, :, :g] = gt_ignore[p]
        crowd_pad[row, :g] = gt_crowd[p]
    sorted_det = num_det[order]
    taken = np.zeros((num_pairs, num_areas, num_thr, max_gt), dtype=bool)
    match = np.full((num_pairs, num_areas, num_thr, max_det), -1, dtype=np.int64)
    kept_ignore = ignore_pad[:, :, None, :]  # [P, A, 1, G]
    for r in range(max_det):
        n = int(np.count_nonzero(sorted_det > r))
        iou_r = iou_pad[:n, r, :][:, None, None, :]  # [n, 1, 1, G]
        allowed = np.broadcast_to(iou_r >= thr[None, None, :, None], (n, num_areas, num_thr, max_gt))
        if unique:
            allowed = allowed & ~(taken[:n] & ~crowd_pad[:n, None, None, :])
        regular = allowed & ~kept_ignore[:n]
        has_regular = regular.any(axis=-1, keepdims=True)
        candidates = np.where(has_regular, regular, allowed & kept_ignore[:n])
        values = np.where(candidates, iou_r, -np.inf)
        best = values.max(axis=-1, keepdims=True)
        winners = candidates & (values == best)
        last = max_gt - 1 - np.argmax(winners[..., ::-1], axis=-1)  # ties -> later ground truth
        found = candidates.any(axis=-1)
        match[:n, :, :, r] = np.where(found, last, -1)
        if unique:
            p_idx, a_idx, t_idx = np.nonzero(found)
            taken[p_idx, a_idx, t_idx, last[p_idx, a_idx, t_idx]] = True
    results: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * num_pairs
    for row, p in enumerate(order):
        results[p] = match[row, :, :, : num_det[p]]
    return results

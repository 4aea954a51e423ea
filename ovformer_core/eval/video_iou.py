"""Spatio-temporal mask IoU between result tracks and ground-truth tracks of one video."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from ovformer_core.eval.rle import FlatMasks


def video_ious(
    det_masks: FlatMasks,
    det_area_sums: np.ndarray,
    det_tracks: np.ndarray,
    gt_masks: FlatMasks,
    gt_area_sums: np.ndarray,
    gt_tracks: np.ndarray,
) -> np.ndarray:
    """IoU of every selected result track with every selected ground-truth track (same video).

    Video IoU = (sum over frames of intersection) / (sum over frames of union); a frame where only one
    side has a mask adds its area to the union, a frame where neither has one adds nothing; 0 when the
    union is 0. Intersections are exact integers: each frame costs one pycocotools ``iou`` call with
    every ground truth marked as crowd, which returns intersection / result area, times that area.

    Args:
        det_masks: masks of all result tracks; ``det_tracks`` int ``[D]`` selects rows.
        det_area_sums: ``det_masks.track_area_sums()``, computed once by the caller.
        gt_masks: masks of all ground-truth tracks; ``gt_tracks`` int ``[G]`` selects columns.
        gt_area_sums: ``gt_masks.track_area_sums()``.

    Returns:
        float64 ``[D, G]``.
    """
    num_det, num_gt = len(det_tracks), len(gt_tracks)
    det_area = det_area_sums[det_tracks]
    gt_area = gt_area_sums[gt_tracks]
    intersection = np.zeros((num_det, num_gt), dtype=np.int64)
    det_entries, det_row = det_masks.entries_of(det_tracks)
    gt_entries, gt_col = gt_masks.entries_of(gt_tracks)
    if det_entries.size and gt_entries.size:
        det_frame = det_masks.frame[det_entries]
        gt_frame = gt_masks.frame[gt_entries]
        det_order = np.argsort(det_frame, kind="stable")
        gt_order = np.argsort(gt_frame, kind="stable")
        shared = np.intersect1d(det_frame, gt_frame)
        det_lo = np.searchsorted(det_frame[det_order], shared, side="left")
        det_hi = np.searchsorted(det_frame[det_order], shared, side="right")
        gt_lo = np.searchsorted(gt_frame[gt_order], shared, side="left")
        gt_hi = np.searchsorted(gt_frame[gt_order], shared, side="right")
        for d0, d1, g0, g1 in zip(det_lo, det_hi, gt_lo, gt_hi, strict=True):
            d_sel = det_entries[det_order[d0:d1]]
            g_sel = gt_entries[gt_order[g0:g1]]
            crowd = [1] * len(g_sel)
            ratio = np.asarray(
                mask_utils.iou([det_masks.rles[e] for e in d_sel], [gt_masks.rles[e] for e in g_sel], crowd)
            )
            frame_inter = np.rint(ratio * det_masks.area[d_sel][:, None]).astype(np.int64)
            rows = det_row[det_order[d0:d1]]
            cols = gt_col[gt_order[g0:g1]]
            intersection[np.ix_(rows, cols)] += frame_inter
    union = det_area[:, None] + gt_area[None, :] - intersection
    ious = np.zeros((num_det, num_gt), dtype=np.float64)
    np.divide(intersection, union, out=ious, where=union > 0)
    return ious

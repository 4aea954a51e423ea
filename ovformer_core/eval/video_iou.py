"""Spatio-temporal mask IoU between result tracks and ground-truth tracks, video by video."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from ovformer_core.eval.rle import FlatMasks


def _rank_in_block(block: np.ndarray, num_blocks: int) -> np.ndarray:
    """Position of each item among the items of its block, keeping their order."""
    order = np.argsort(block, kind="stable")
    sizes = np.bincount(block, minlength=num_blocks)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(block), dtype=np.int64)
    rank[order] = np.arange(len(block)) - starts[block[order]]
    return rank


def _nonempty(masks: FlatMasks, entries: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = masks.area[entries] > 0
    return entries[keep], owner[keep]


def block_ious(
    det_masks: FlatMasks,
    det_tracks: np.ndarray,
    det_block: np.ndarray,
    gt_masks: FlatMasks,
    gt_tracks: np.ndarray,
    gt_block: np.ndarray,
    num_blocks: int,
) -> list[np.ndarray]:
    """Video IoU of every result track with every ground-truth track of the same block (video).

    Video IoU = (sum over frames of intersection) / (sum over frames of union); a frame where only one
    side has a mask adds its area to the union, a frame where neither has one adds nothing; 0 when the
    union is 0. Intersections are exact integers: each (video, frame) costs one pycocotools ``iou`` call
    with every ground truth marked as crowd, which returns intersection / result area, times that area.
    Everything around those calls is vectorised over all videos.

    Args:
        det_masks: masks of all result tracks; ``det_tracks`` int ``[D]`` selects the tracks compared,
            ``det_block`` int ``[D]`` gives each one's block.
        gt_masks, gt_tracks, gt_block: the same for ground truth (``[G]``).
        num_blocks: B.

    Returns:
        B float64 matrices ``[D_b, G_b]``; rows and columns in the order the tracks are given.
    """
    det_rank = _rank_in_block(det_block, num_blocks)
    gt_rank = _rank_in_block(gt_block, num_blocks)
    block_rows = np.bincount(det_block, minlength=num_blocks)
    block_cols = np.bincount(gt_block, minlength=num_blocks)
    block_size = block_rows * block_cols
    block_offset = np.concatenate([[0], np.cumsum(block_size)])

    # An empty mask intersects nothing (pycocotools gives it 0 too): only the others are compared.
    det_entries, det_owner = _nonempty(det_masks, *det_masks.entries_of(det_tracks))
    gt_entries, gt_owner = _nonempty(gt_masks, *gt_masks.entries_of(gt_tracks))
    frame_span = int(max(det_masks.frame.max(initial=0), gt_masks.frame.max(initial=0))) + 1
    det_key = det_block[det_owner] * frame_span + det_masks.frame[det_entries]
    gt_key = gt_block[gt_owner] * frame_span + gt_masks.frame[gt_entries]
    det_order = np.argsort(det_key, kind="stable")
    gt_order = np.argsort(gt_key, kind="stable")
    det_key, det_entries, det_owner = det_key[det_order], det_entries[det_order], det_owner[det_order]
    gt_key, gt_entries, gt_owner = gt_key[gt_order], gt_entries[gt_order], gt_owner[gt_order]

    shared = np.intersect1d(det_key, gt_key)
    d_lo = np.searchsorted(det_key, shared, side="left")
    d_hi = np.searchsorted(det_key, shared, side="right")
    g_lo = np.searchsorted(gt_key, shared, side="left")
    g_hi = np.searchsorted(gt_key, shared, side="right")
    det_rles = det_masks.rles_at(det_entries)
    gt_rles = gt_masks.rles_at(gt_entries)
    crowd = [1] * int((g_hi - g_lo).max(initial=0))
    ratios = [
        mask_utils.iou(det_rles[d0:d1], gt_rles[g0:g1], crowd[: g1 - g0]).reshape(-1)
        for d0, d1, g0, g1 in zip(d_lo.tolist(), d_hi.tolist(), g_lo.tolist(), g_hi.tolist(), strict=True)
    ]

    # Plain ndarray: numpy's stub types bincount as intp, but with float weights it returns float64.
    intersection: np.ndarray = np.zeros(int(block_offset[-1]))
    if ratios:
        # Element j of frame group i is (result d_lo[i] + j // n_i, ground truth g_lo[i] + j % n_i).
        rows_in_group = d_hi - d_lo
        cols_in_group = g_hi - g_lo
        group_size = rows_in_group * cols_in_group
        group = np.repeat(np.arange(len(shared)), group_size)
        local = np.arange(int(group_size.sum())) - np.repeat(np.cumsum(group_size) - group_size, group_size)
        det_pos = d_lo[group] + local // cols_in_group[group]
        gt_pos = g_lo[group] + local % cols_in_group[group]
        det_area = det_masks.area[det_entries[det_pos]]
        frame_intersection = np.rint(np.concatenate(ratios) * det_area)
        block = det_block[det_owner[det_pos]]
        cell = block_offset[block] + det_rank[det_owner[det_pos]] * block_cols[block] + gt_rank[gt_owner[gt_pos]]
        intersection = np.bincount(cell, weights=frame_intersection, minlength=int(block_offset[-1]))

    det_area_sum = det_masks.track_area_sums()[det_tracks]
    gt_area_sum = gt_masks.track_area_sums()[gt_tracks]
    det_by_rank = np.argsort(det_block, kind="stable")
    gt_by_rank = np.argsort(gt_block, kind="stable")
    row_start = np.concatenate([[0], np.cumsum(block_rows)])
    col_start = np.concatenate([[0], np.cumsum(block_cols)])
    out: list[np.ndarray] = []
    for b in range(num_blocks):
        rows = det_by_rank[row_start[b] : row_start[b + 1]]
        cols = gt_by_rank[col_start[b] : col_start[b + 1]]
        inter = intersection[block_offset[b] : block_offset[b + 1]].reshape(len(rows), len(cols))
        union = det_area_sum[rows][:, None] + gt_area_sum[cols][None, :] - inter
        ious = np.zeros(inter.shape)
        np.divide(inter, union, out=ious, where=union > 0)
        out.append(ious)
    return out

"""Video IoU of track pairs equals the definition computed on decoded masks, empty and absent frames included."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovformer_core.eval.rle import FlatMasks, SizedCounts
from ovformer_core.eval.video_iou import block_ious
from ovformer_core.io.rle import scan_rles

Track = list[np.ndarray | None]


def _tracks(rng: np.random.Generator, num_tracks: int, frames: int, height: int, width: int) -> list[Track]:
    """Masks per frame: absent (None), empty, full, or random blobs."""
    tracks = []
    for _ in range(num_tracks):
        track: Track = []
        for _ in range(frames):
            kind = rng.integers(0, 5)
            if kind == 0:
                track.append(None)
            elif kind == 1:
                track.append(np.zeros((height, width), dtype=bool))
            elif kind == 2:
                track.append(np.ones((height, width), dtype=bool))
            else:
                track.append(rng.random((height, width)) < rng.random())
        tracks.append(track)
    return tracks


def _flat(tracks: list[Track], sized: bool = False) -> FlatMasks:
    """Tracks as FlatMasks; ``sized``: dicts kept as sizes + counts, as the typed results reader keeps them."""
    counts, frames, starts = [], [], [0]
    for track in tracks:
        for f, mask in enumerate(track):
            if mask is not None:
                counts.append(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode())
                frames.append(f)
        starts.append(len(counts))
    height, width = next(m for t in tracks for m in t if m is not None).shape
    scan = scan_rles(counts, height * width)
    assert scan.problem is None
    rles = (
        SizedCounts([(height, width)] * len(counts), counts)
        if sized
        else [{"size": [height, width], "counts": c} for c in counts]
    )
    return FlatMasks(rles=rles, frame=np.array(frames), area=scan.areas, track_start=np.array(starts))


def _video_iou(a: Track, b: Track) -> float:
    inter = union = 0
    for x, y in zip(a, b, strict=True):
        x = x if x is not None else np.zeros_like(y) if y is not None else None
        y = y if y is not None else np.zeros_like(x) if x is not None else None
        if x is not None and y is not None:
            inter += int((x & y).sum())
            union += int((x | y).sum())
    return inter / union if union else 0.0


@pytest.mark.parametrize("sized", [False, True])
def test_block_ious_equal_the_definition_with_empty_and_absent_frames(sized: bool) -> None:
    rng = np.random.default_rng(3)
    frames, height, width = 6, 9, 7
    dets = _tracks(rng, 12, frames, height, width)
    gts = _tracks(rng, 5, frames, height, width)
    det_block = np.array([0] * 7 + [1] * 5)
    gt_block = np.array([0, 0, 1, 1, 1])
    out = block_ious(_flat(dets, sized), np.arange(12), det_block, _flat(gts), np.arange(5), gt_block, 2)
    for b in range(2):
        rows, cols = np.flatnonzero(det_block == b), np.flatnonzero(gt_block == b)
        expected = np.array([[_video_iou(dets[r], gts[c]) for c in cols] for r in rows])
        assert out[b].shape == expected.shape
        assert np.array_equal(out[b], expected)


def test_sized_counts_take_gives_the_masks_of_those_entries() -> None:
    sizes, counts = [(2, 3), (4, 1), (1, 1)], ["06", "04", "01"]
    sized = SizedCounts(sizes, counts)
    taken = sized.take([2, 0, 2])
    assert [(r["size"], r["counts"]) for r in taken] == [((1, 1), "01"), ((2, 3), "06"), ((1, 1), "01")]
    assert [list(r["size"]) for r in taken] == [sized[i]["size"] for i in (2, 0, 2)]

"""A synthetic result for the annotation-tool formats: several tracks, gaps, overlaps, odd sizes, a stride."""

from __future__ import annotations

import numpy as np

from ovformer_core.io.png_masks import id_mask
from ovformer_core.io.results import Track, VideoResult

#: Odd frame size and a stride of 3 (source frames 4, 7, ..., 22).
HEIGHT, WIDTH = 13, 17
FRAME_INDICES = [4 + 3 * k for k in range(7)]
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "person"}, {"id": 4, "name": "car"}]

#: Masks of one object: an irregular blob (holes, several runs per row), one per frame.
Masks = dict[int, np.ndarray]


def _blob(rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    top, left = int(rng.integers(0, HEIGHT - 5)), int(rng.integers(0, WIDTH - 6))
    mask[top : top + 5, left : left + 6] = rng.random((5, 6)) > 0.3
    mask[top, left] = True
    return mask


def synthetic_result(seed: int = 0) -> VideoResult:
    """Tracks 1, 2, 5, 7 and 9 over 7 frames.

    - 1 ``cat``: every frame, touching the top-left pixel in frame 0 and the bottom-right in the last;
    - 2 ``dog``: frames 1-2 and 5 (a gap), an empty-mask RLE in frame 3;
    - 5 ``cat``: frames 0 and 3, overlapping track 1 there, scoring higher;
    - 7 ``person``: the last frame only;
    - 9 ``dog``: empty masks only (nothing an annotation tool can show).
    """
    rng = np.random.default_rng(seed)
    num_frames = len(FRAME_INDICES)
    plan = [
        (1, 0, 0.9, range(num_frames)),
        (2, 1, 0.5, [1, 2, 5]),
        (5, 0, 0.95, [0, 3]),
        (7, 2, 0.3, [6]),
        (9, 1, 0.2, []),
    ]
    tracks = []
    masks_of: dict[int, np.ndarray] = {}
    for track_id, _, _, present in plan:
        masks = np.zeros((num_frames, HEIGHT, WIDTH), dtype=bool)
        for t in present:
            masks[t] = _blob(rng)
        masks_of[track_id] = masks
    masks_of[1][0, 0, 0] = True
    masks_of[1][-1, -1, -1] = True
    masks_of[5][0] |= masks_of[1][0]  # overlap: track 5 covers track 1 in frame 0
    for track_id, label, score, _ in plan:
        track = Track.from_masks(track_id, label, CATEGORIES[label]["name"], label + 1, score, masks_of[track_id])
        if track_id == 2:
            absent = [None if t in (0, 4, 6) else rle for t, rle in enumerate(track.segmentations)]
            track = Track(track_id, label, track.category_name, track.category_id, score, absent)
        tracks.append(track)
    return VideoResult(
        video_name="clip",
        video_path="/videos/clip.mp4",
        video_id=1,
        width=WIDTH,
        height=HEIGHT,
        num_frames=num_frames,
        fps=30.0,
        frame_indices=list(FRAME_INDICES),
        tracks=tracks,
        categories=CATEGORIES,
    )


def visible_tracks(result: VideoResult) -> dict[int, tuple[str, dict[int, np.ndarray]]]:
    """Track id -> (label, source frame number -> mask) over the frames where the track has a pixel."""
    visible = {}
    for track in result.tracks:
        masks = {}
        for t, rle in enumerate(track.segmentations):
            if rle is not None:
                mask = track.mask(t)
                if mask.any():
                    masks[result.frame_indices[t]] = mask
        if masks:
            visible[track.track_id] = (track.category_name, masks)
    return visible


def flattened_tracks(result: VideoResult) -> dict[int, tuple[str, dict[int, np.ndarray]]]:
    """As ``visible_tracks`` after overlaps are resolved (the higher score wins): what one id image holds."""
    labels = {track.track_id: track.category_name for track in result.tracks}
    visible: dict[int, tuple[str, dict[int, np.ndarray]]] = {}
    for t, frame in enumerate(result.frame_indices):
        ids = id_mask(result, t)
        for track_id in np.unique(ids):
            if track_id:
                visible.setdefault(int(track_id), (labels[int(track_id)], {}))[1][frame] = ids == track_id
    return visible


def assert_same_tracks(
    got: dict[int, tuple[str, dict[int, np.ndarray]]], expected: dict[int, tuple[str, dict[int, np.ndarray]]]
) -> None:
    """Same ids, labels, frame numbers, and masks pixel for pixel."""
    assert sorted(got) == sorted(expected)
    for track_id, (label, masks) in expected.items():
        got_label, got_masks = got[track_id]
        assert got_label == label, track_id
        assert sorted(got_masks) == sorted(masks), track_id
        for frame, mask in masks.items():
            assert got_masks[frame].shape == mask.shape
            assert np.array_equal(got_masks[frame], mask), (track_id, frame)

"""What the result page fetches about masks: where each track is present, and masks per frame range.

The page never receives a whole result: it gets the track table with each track's spans (the runs of
frames where its mask is non-empty, for the timeline) and then the compressed RLE strings of a few
dozen frames at a time (``mask_range``), which it decodes and draws itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ovformer_core.io.results import VideoResult

#: Most frames one mask request may ask for (the page asks for 64 at a time).
MAX_FRAMES_PER_REQUEST = 256


def _first_run(counts: str) -> int:
    """The first number of a compressed counts string: the background run before the first pixel."""
    value = 0
    shift = 0
    for char in counts:
        group = ord(char) - 48
        value |= (group & 0x1F) << shift
        shift += 5
        if not group & 0x20:
            return value - (1 << shift) if group & 0x10 else value
    return value


def track_presence(result: VideoResult) -> np.ndarray:
    """Which track has a non-empty mask at which processed frame.

    A mask is empty when its first background run covers the whole frame, so only the first few
    characters of each RLE are read (the result's RLEs were validated when it was loaded).

    Returns:
        bool ``[N, T]`` (N tracks in ``result.tracks`` order, T = ``result.num_frames``).
    """
    pixels = result.height * result.width
    present = np.zeros((len(result.tracks), result.num_frames), dtype=bool)
    for n, track in enumerate(result.tracks):
        for t, rle in enumerate(track.segmentations):
            present[n, t] = rle is not None and _first_run(rle["counts"]) < pixels
    return present


def spans(present: np.ndarray) -> list[list[int]]:
    """Runs of consecutive True positions as ``[first, last]`` pairs (inclusive).

    Args:
        present: bool ``[T]``.
    """
    padded = np.concatenate([[False], present.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2], strict=True)]


def track_table(result: VideoResult, present: np.ndarray) -> list[dict[str, Any]]:
    """The page's track list: id, label, names, score, spans and first frame of every track."""
    rows = []
    for n, track in enumerate(result.tracks):
        runs = spans(present[n])
        rows.append(
            {
                "track_id": track.track_id,
                "label": track.label,
                "category_name": track.category_name,
                "category_id": track.category_id,
                "score": track.score,
                "spans": runs,
                "first": runs[0][0] if runs else None,
                "frames": int(present[n].sum()),
            }
        )
    return rows


def mask_range(result: VideoResult, present: np.ndarray, start: int, stop: int) -> list[list[list[Any]]]:
    """The non-empty masks of processed frames ``start .. stop - 1``.

    Args:
        result: the video's result.
        present: ``track_presence(result)``, bool ``[N, T]``.
        start: first position (0-based among processed frames).
        stop: one past the last position; clipped to ``result.num_frames``.

    Returns:
        Per position, a list of ``[track_id, counts]`` (COCO compressed RLE strings of size
        ``[height, width]``, column-major as pycocotools writes them).
    """
    stop = min(stop, result.num_frames)
    frames: list[list[list[Any]]] = []
    for t in range(start, stop):
        masks: list[list[Any]] = []
        for n in np.flatnonzero(present[:, t]):
            track = result.tracks[int(n)]
            rle = track.segmentations[t]
            assert rle is not None  # present only where an RLE with pixels exists
            masks.append([track.track_id, rle["counts"]])
        frames.append(masks)
    return frames

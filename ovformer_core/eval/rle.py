"""Per-frame masks of many tracks, stored flat, and the checks that make pycocotools safe to call on them.

pycocotools' C code trusts its input (see ``ovformer_core.io.rle.scan_rles``, the one checker of
compressed counts). Everything that reaches ``pycocotools.mask`` from here has been checked first:
structure and size per mask here, the counts strings of all masks at once by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from pycocotools import mask as mask_utils

from ovformer_core.io.rle import polygon_problem, segmentation_rle_problem

#: A COCO run-length encoding: ``{"size": [height, width], "counts": str or bytes}`` (compressed).
Rle = dict[str, Any]


class SegmentationError(ValueError):
    """One frame's segmentation is unusable; the message says why (the caller adds where)."""


def normalise_segmentation(seg: Any, height: int, width: int, allow_polygons: bool) -> Rle | None:
    """One frame of a track as a compressed RLE, or ``None`` when the object is absent there.

    Like the official evaluators, any falsy value (``None``, ``{}``, ``[]``) means "absent". Accepted
    masks: compressed RLE (``counts`` a string), uncompressed RLE (``counts`` a list of run lengths)
    and, when ``allow_polygons``, COCO polygons (a list of flat coordinate lists).

    Raises:
        SegmentationError: not a mask, or its size is not ``[height, width]``.
    """
    if not seg:
        return None
    if isinstance(seg, list):
        if not allow_polygons:
            raise SegmentationError("is a polygon; results must be RLE masks")
        if not all(isinstance(p, list) and len(p) >= 6 for p in seg):
            raise SegmentationError("is not a valid polygon list")
        problem = polygon_problem(seg, height, width)
        if problem is not None:
            raise SegmentationError(problem)
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise SegmentationError("is not an RLE (a dict with 'size' and 'counts')")
    problem = segmentation_rle_problem(seg, height, width)
    if problem is not None:
        raise SegmentationError(problem)
    counts = seg["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def normalise_track(segs: list[Any], height: int, width: int, allow_polygons: bool) -> tuple[list[Rle], list[int]]:
    """The masks of a track's present frames and their frame indices (see ``normalise_segmentation``).

    The usual track, all compressed RLEs with str counts of the right size, is checked with a few
    C-speed list operations and its dicts are kept as they are (pycocotools reads str counts; the
    strings are checked in bulk by ``scan_rles``).

    Raises:
        SegmentationError: message starting with ``frame <f>``.
    """
    frames = [f for f, seg in enumerate(segs) if seg]
    present = [segs[f] for f in frames]
    if set(map(type, present)) <= {dict}:
        counts = [seg.get("counts") for seg in present]
        sizes = [seg.get("size") for seg in present]
        if sizes.count([height, width]) == len(sizes) and set(map(type, counts)) <= {str} and all(counts):
            return present, frames
    rles: list[Rle] = []
    for f in frames:
        try:
            rle = normalise_segmentation(segs[f], height, width, allow_polygons)
        except SegmentationError as err:
            raise SegmentationError(f"frame {f} {err}") from None
        assert rle is not None  # only falsy segmentations mean "absent"
        rles.append(rle)
    return rles, frames


class SizedCounts(Sequence[Rle]):
    """RLE dicts kept as their sizes and counts strings; each dict is built when it is read.

    A results file holds about twice as many masks as the IoU ever reads (those at frames without
    ground truth are only counted), so building every dict up front is wasted work.
    """

    def __init__(self, sizes: list[tuple[int, int]], counts: list[str]) -> None:
        self._sizes, self._counts = sizes, counts

    def __len__(self) -> int:
        return len(self._counts)

    @overload
    def __getitem__(self, index: int) -> Rle: ...
    @overload
    def __getitem__(self, index: slice) -> list[Rle]: ...
    def __getitem__(self, index: int | slice) -> Rle | list[Rle]:
        if isinstance(index, slice):
            return [
                {"size": list(s), "counts": c} for s, c in zip(self._sizes[index], self._counts[index], strict=True)
            ]
        return {"size": list(self._sizes[index]), "counts": self._counts[index]}

    def take(self, indices: list[int]) -> list[Rle]:
        """The dicts at ``indices``, sizes as stored (tuples).

        For pycocotools calls, which read only ``size[0]`` and ``size[1]``: one comprehension, no method
        call or new list per mask.
        """
        sizes, counts = self._sizes, self._counts
        return [{"size": sizes[i], "counts": counts[i]} for i in indices]


@dataclass(frozen=True)
class FlatMasks:
    """The present frames of N tracks, one entry per (track, frame) where the track has a mask.

    Entries are stored track by track, frames ascending, so track ``n`` owns entries
    ``track_start[n]:track_start[n + 1]``.

    Attributes:
        rles: ``[E]`` compressed RLEs (a list, or ``SizedCounts``).
        frame: int64 ``[E]`` frame index of each entry.
        area: int64 ``[E]`` pixel count of each entry.
        track_start: int64 ``[N + 1]`` entry offsets.
    """

    rles: Sequence[Rle]
    frame: np.ndarray
    area: np.ndarray
    track_start: np.ndarray

    @property
    def num_tracks(self) -> int:
        return len(self.track_start) - 1

    def track_area_sums(self) -> np.ndarray:
        """Sum over frames of each track's mask area, int64 ``[N]``."""
        cumulative = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(self.area, dtype=np.int64)])
        return cumulative[self.track_start[1:]] - cumulative[self.track_start[:-1]]

    def rles_at(self, entries: np.ndarray) -> list[Rle]:
        """The RLE dicts of ``entries`` (int ``[n]``), to pass to pycocotools."""
        if isinstance(self.rles, SizedCounts):
            return self.rles.take(entries.tolist())
        rles = self.rles
        return [rles[e] for e in entries.tolist()]

    def entries_of(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry indices of ``tracks`` (int ``[n]``) and, for each entry, its position in ``tracks``."""
        starts = self.track_start[tracks]
        counts = self.track_start[tracks + 1] - starts
        owner = np.repeat(np.arange(len(tracks)), counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return starts[owner] + offsets, owner

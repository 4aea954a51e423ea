"""Per-frame masks of many tracks, stored flat, and the checks that make pycocotools safe to call on them.

pycocotools' C code trusts its input: a compressed ``counts`` string that ends in the middle of a number
makes it read past the end of the string, and characters outside its alphabet silently become garbage
run lengths. Everything that reaches ``pycocotools.mask`` from here has been checked first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

#: A COCO run-length encoding: ``{"size": [height, width], "counts": str or bytes}`` (compressed).
Rle = dict[str, Any]

# Compressed counts use 6-bit groups stored as chr(48 + value): '0' (48) .. 'o' (111); bit 0x20 of a
# group means "the number continues" (pycocotools maskApi.c, rleToString / rleFrString).
_FIRST_CHAR = 48
_LAST_CHAR = 48 + 63
_CONTINUE_BIT = 0x20


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
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise SegmentationError("is not an RLE (a dict with 'size' and 'counts')")
    size = seg["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        raise SegmentationError(f"has a bad RLE 'size' {size!r}; expected [height, width]")
    if size[0] != height or size[1] != width:
        raise SegmentationError(
            f"has mask size {size[0]}x{size[1]} but the video is {height}x{width}; masks must have the video's size"
        )
    counts = seg["counts"]
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise SegmentationError("has a bad RLE: 'counts' is not ASCII") from None
    if isinstance(counts, bytes):
        if not counts and height * width:
            raise SegmentationError("has a bad RLE: 'counts' is empty")
        return {"size": [height, width], "counts": counts}
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise SegmentationError("has a bad uncompressed RLE: counts must be non-negative integers")
        if sum(counts) != height * width:
            raise SegmentationError(f"has a bad uncompressed RLE: runs add up to {sum(counts)}, not {height}x{width}")
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    raise SegmentationError(f"has a bad RLE: 'counts' is a {type(counts).__name__}")


def normalise_track(segs: list[Any], height: int, width: int, allow_polygons: bool) -> tuple[list[Rle], list[int]]:
    """The masks of a track's present frames and their frame indices (see ``normalise_segmentation``).

    The usual track, all compressed RLEs with str counts of the right size, is checked with a few
    C-speed list operations and its dicts are kept as they are (pycocotools reads str counts; the
    characters are checked in bulk by ``first_bad_counts``).

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


def _join_counts(counts: Sequence[bytes | str]) -> tuple[bytes, np.ndarray] | int:
    """All strings joined as ASCII bytes plus their lengths, or the index of a non-ASCII string."""
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    kinds = set(map(type, counts))
    if kinds == {str}:
        joined_text = "".join(counts)  # type: ignore[arg-type]
        if not joined_text.isascii():
            first = next(i for i, c in enumerate(joined_text) if ord(c) > 127)
            return int(np.searchsorted(np.cumsum(lengths), first, side="right"))
        return joined_text.encode("ascii"), lengths
    if kinds == {bytes}:
        return b"".join(counts), lengths  # type: ignore[arg-type]
    parts: list[bytes] = []
    for i, c in enumerate(counts):
        if isinstance(c, str):
            if not c.isascii():
                return i
            c = c.encode("ascii")
        parts.append(c)
    return b"".join(parts), np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))


def first_bad_counts(counts: Sequence[bytes | str]) -> int:
    """Index of the first compressed ``counts`` string pycocotools cannot read safely, or -1.

    Checks every character against the alphabet and that no string stops inside a number. Vectorised:
    one pass over all strings joined.
    """
    if not counts:
        return -1
    joined = _join_counts(counts)
    if isinstance(joined, int):
        return joined
    data, lengths = joined
    # value = char - 48, wrapping below '0' to >= 208: one comparison finds every out-of-alphabet char.
    values = np.frombuffer(data, dtype=np.uint8) - np.uint8(_FIRST_CHAR)
    ends = np.cumsum(lengths)
    last_char = ends[lengths > 0] - 1
    bad = np.zeros(0, dtype=np.int64)
    if (values > _LAST_CHAR - _FIRST_CHAR).any():
        bad = np.flatnonzero(values > _LAST_CHAR - _FIRST_CHAR)[:1]
    cut_off = last_char[(values[last_char] & _CONTINUE_BIT) != 0]
    candidates = np.concatenate([bad, cut_off[:1]])
    if candidates.size == 0:
        return -1
    return int(np.searchsorted(ends, candidates.min(), side="right"))


# pycocotools' ``area`` builds a scratch ``np.array((n,), dtype=np.uint8)``, which overflows under
# numpy 2 once a call holds more than 255 masks; calls are split below that.
_AREA_CHUNK = 255


def rle_areas(rles: Sequence[Rle]) -> np.ndarray:
    """Pixel counts of ``rles`` (pycocotools ``area``), int64 ``[N]``."""
    areas = np.zeros(len(rles), dtype=np.int64)
    for start in range(0, len(rles), _AREA_CHUNK):
        chunk = list(rles[start : start + _AREA_CHUNK])
        areas[start : start + len(chunk)] = mask_utils.area(chunk)
    return areas


@dataclass(frozen=True)
class FlatMasks:
    """The present frames of N tracks, one entry per (track, frame) where the track has a mask.

    Entries are stored track by track, frames ascending, so track ``n`` owns entries
    ``track_start[n]:track_start[n + 1]``.

    Attributes:
        rles: ``[E]`` compressed RLEs.
        frame: int64 ``[E]`` frame index of each entry.
        area: int64 ``[E]`` pixel count of each entry.
        track_start: int64 ``[N + 1]`` entry offsets.
    """

    rles: list[Rle]
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

    def entries_of(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry indices of ``tracks`` (int ``[n]``) and, for each entry, its position in ``tracks``."""
        starts = self.track_start[tracks]
        counts = self.track_start[tracks + 1] - starts
        owner = np.repeat(np.arange(len(tracks)), counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return starts[owner] + offsets, owner

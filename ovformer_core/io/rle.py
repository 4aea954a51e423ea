"""Compressed COCO run-length encoding of binary masks, through pycocotools.

An RLE here is always the JSON-ready dict ``{"size": [h, w], "counts": "<ascii>"}`` used by COCO,
YouTube-VIS and LV-VIS result files (pycocotools itself returns ``counts`` as bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

Rle = dict[str, Any]


def _to_json_rle(rle: dict[str, Any]) -> Rle:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def encode_rle(mask: np.ndarray) -> Rle:
    """Encode one mask.

    Args:
        mask: ``[H, W]``, bool or 0/1 (any non-zero counts as foreground).

    Returns:
        ``{"size": [H, W], "counts": str}``; an all-false mask gives a valid RLE of an empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"encode_rle expects a [H, W] mask, got shape {mask.shape}")
    return encode_rles(mask[None])[0]


def encode_rles(masks: np.ndarray) -> list[Rle]:
    """Encode a stack of masks in one pycocotools call.

    Args:
        masks: ``[T, H, W]``, bool or 0/1.

    Returns:
        T RLE dicts, each of size ``[H, W]``.
    """
    if masks.ndim != 3:
        raise ValueError(f"encode_rles expects [T, H, W] masks, got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    # pycocotools wants column-major uint8 [H, W, N].
    stacked = np.asfortranarray(np.moveaxis(masks != 0, 0, -1).astype(np.uint8))
    return [_to_json_rle(rle) for rle in mask_utils.encode(stacked)]


def _to_coco_rle(rle: Rle) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle: Rle) -> np.ndarray:
    """Decode one compressed RLE to a bool mask ``[H, W]``.

    The RLE must be well formed (``is_valid_rle``): pycocotools raises ValueError when the runs
    exceed ``H * W`` but returns uninitialised pixels when they fall short.
    """
    return mask_utils.decode(_to_coco_rle(rle)).astype(bool)


def rle_area(rle: Rle) -> int:
    """Number of foreground pixels."""
    return int(mask_utils.area(_to_coco_rle(rle)))


def rle_bbox(rle: Rle) -> list[float]:
    """Bounding box ``[x, y, width, height]`` in pixels (all zero for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_to_coco_rle(rle))]


def run_lengths(counts: str) -> np.ndarray | None:
    """Parse a compressed ``counts`` string into its run lengths, or None if it is malformed.

    The format (COCO, pycocotools ``rleToString``): each number is written in 6-bit groups as
    ``chr(48 + group)``, least significant first, 5 data bits per group; bit 0x20 says another group
    follows; bit 0x10 of the last group is the sign. From the fourth number on, each number is
    stored as the difference from the number two places before it. Runs alternate background and
    foreground, starting with background, in column-major pixel order.

    Returns:
        int64 ``[R]`` run lengths (all >= 0), or None for a character outside '0'..'o', a string
        ending inside a number, an over-long number or a negative run.
    """
    if not counts or not counts.isascii():
        return None
    groups = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if groups.min() < 0 or groups.max() > 63 or groups[-1] & 0x20:
        return None
    ends = np.flatnonzero((groups & 0x20) == 0)
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1] + 1])
    num_groups = ends - starts + 1
    # 12 groups = 60 bits: more cannot be a pixel count and would overflow int64.
    if num_groups.max() > 12:
        return None
    position = np.arange(groups.size) - np.repeat(starts, num_groups)
    values = np.add.reduceat((groups & 0x1F) << (5 * position), starts)
    negative = (groups[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * num_groups[negative])
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    if (runs < 0).any():
        return None
    return runs


def is_valid_rle(value: object) -> bool:
    """True for ``{"size": [h, w], "counts": str}`` whose runs cover exactly ``h * w`` pixels.

    Needed before handing untrusted masks to pycocotools, whose C decoder trusts its input: run
    lengths adding up to less than ``h * w`` leave the rest of the mask as uninitialised memory, and
    a malformed string can make it read past its end.
    """
    if not isinstance(value, dict) or not isinstance(value.get("counts"), str):
        return False
    size = value.get("size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        return False
    runs = run_lengths(value["counts"])
    return runs is not None and int(runs.sum()) == size[0] * size[1]


def _rle_total(value: object) -> int | None:
    """``h * w`` of an RLE-shaped dict with a non-empty ASCII ``counts`` string, else None."""
    if not isinstance(value, dict):
        return None
    counts, size = value.get("counts"), value.get("size")
    if not isinstance(counts, str) or not counts or not counts.isascii():
        return None
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        return None
    return size[0] * size[1]


def invalid_rles(values: Sequence[object]) -> np.ndarray:
    """Which of many values fail ``is_valid_rle``, all parsed in one pass (a result holds 100,000s).

    Same rule as ``is_valid_rle``, without its per-call cost: the strings are joined and their numbers,
    run lengths and per-string sums computed with array operations over the whole batch.

    Args:
        values: candidate RLEs (anything).

    Returns:
        bool ``[N]``: True where ``is_valid_rle(values[i])`` is False.
    """
    bad = np.zeros(len(values), dtype=bool)
    totals = [_rle_total(value) for value in values]
    kept = [i for i, total in enumerate(totals) if total is not None]
    bad[[i for i, total in enumerate(totals) if total is None]] = True
    if not kept:
        return bad
    strings = [values[i]["counts"] for i in kept]  # type: ignore[index]
    lengths = np.fromiter((len(text) for text in strings), dtype=np.int64, count=len(strings))
    groups = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    last = np.cumsum(lengths) - 1
    first = last - lengths + 1
    string_bad = np.logical_or.reduceat((groups < 0) | (groups > 63), first)
    string_bad |= (groups[last] & 0x20) != 0  # ends inside a number
    groups = np.where((groups < 0) | (groups > 63), 0, groups)
    groups[last] &= ~0x20  # no number runs on into the next string
    ends = np.flatnonzero((groups & 0x20) == 0)
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1] + 1])
    num_groups = ends - starts + 1
    position = np.minimum(np.arange(groups.size) - np.repeat(starts, num_groups), 12)
    numbers = np.add.reduceat((groups & 0x1F) << (5 * position), starts)
    negative = (groups[ends] & 0x10) != 0
    numbers[negative] -= np.left_shift(1, 5 * np.minimum(num_groups[negative], 12))
    owner = np.searchsorted(last, ends)  # string of each number
    first_number = np.searchsorted(owner, np.arange(len(strings)))
    string_bad |= np.logical_or.reduceat(num_groups > 12, first_number)
    k = np.arange(numbers.size) - first_number[owner]  # position of each number in its string
    runs = numbers.copy()
    # From the third run on, a number is the difference from the run two places before: a cumulative
    # sum per string and parity (runs 1, 3, 5... and runs 2, 4, 6...; run 0 stands alone).
    for parity, lowest in ((1, 1), (0, 2)):
        member = (k % 2 == parity) & (k >= lowest)
        running = np.cumsum(np.where(member, numbers, 0))
        before = np.where(first_number > 0, running[first_number - 1], 0)
        runs[member] = (running - before[owner])[member]
    string_bad |= np.logical_or.reduceat(runs < 0, first_number)
    sums = np.add.reduceat(runs, first_number)
    string_bad |= sums != np.asarray([totals[i] for i in kept], dtype=np.int64)
    bad[kept] = string_bad
    return bad

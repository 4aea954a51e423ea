"""Compressed COCO run-length encoding of binary masks, through pycocotools, and the one checker of it.

An RLE here is always the JSON-ready dict ``{"size": [h, w], "counts": "<ascii>"}`` used by COCO,
YouTube-VIS and LV-VIS result files (pycocotools itself returns ``counts`` as bytes). Every mask read
from a user's file passes ``scan_rles`` (many at once) or ``rle_problem`` (one) before pycocotools sees
it; ``frame_size_problem`` and ``polygon_problem`` bound the other mask inputs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ovformer_core.io.json_input import brief, is_int

Rle = dict[str, Any]

#: FFmpeg refuses to decode a frame unless ``(w + 128) * (h + 128) < INT_MAX / 8`` (libavutil/imgutils.c,
#: ``av_image_check_size2``), so no video, frame folder or image read through PyAV has a larger frame.
#: Masks and result files are held to the same bound: it keeps ``h * w`` (about 268 M pixels at most)
#: far inside pycocotools' 32-bit pixel counts and makes a claimed size cheap to refuse before anything
#: of that size is allocated.
FRAME_SIZE_MARGIN = 128
MAX_FRAME_AREA_TERM = (2**31 - 1) // 8


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
    # Each mask's pixels column by column, the order COCO RLE runs in.
    return encode_columns(np.ascontiguousarray((masks != 0).transpose(0, 2, 1)), masks.shape[1])


def encode_columns(columns: np.ndarray, height: int) -> list[Rle]:
    """Encode masks already laid out column by column, the order COCO RLE runs in (no transposing copy).

    Args:
        columns: C-contiguous bool or uint8 ``[N, W, H]``: mask ``i`` transposed (``mask.T``), 0/1 values.
        height: H, the masks' height (a check against a swapped layout).

    Returns:
        N RLE dicts, each of size ``[H, W]``; the same as ``encode_rles`` of the untransposed masks.
    """
    if columns.ndim != 3 or columns.shape[2] != height:
        raise ValueError(f"encode_columns expects [N, W, H={height}] columns, got shape {columns.shape}")
    if columns.shape[0] == 0:
        return []
    if columns.dtype == np.bool_:
        columns = columns.view(np.uint8)
    # [N, W, H] C-contiguous is exactly the Fortran-ordered [H, W, N] pycocotools reads: a view, no copy.
    fortran = np.ascontiguousarray(columns, dtype=np.uint8).transpose(2, 1, 0)
    return [_to_json_rle(rle) for rle in mask_utils.encode(fortran)]


def empty_rle(height: int, width: int) -> Rle:
    """RLE of an all-background ``[height, width]`` mask, built without a mask."""
    return {"size": [height, width], "counts": compress_counts([np.array([height * width])])[0]}


def rles_from_run_starts(
    mask_index: np.ndarray, positions: np.ndarray, first: np.ndarray, height: int, width: int
) -> list[Rle]:
    """RLEs of N masks from where their runs start, e.g. found on a GPU (``postprocess.run_starts``).

    The same strings ``encode_rles`` gives, without the full masks on the host: a GPU finds the few
    run boundaries, and only those cross to the host and through this vectorised encoder.

    Args:
        mask_index: int ``[K]``, non-decreasing: the mask of each boundary.
        positions: int ``[K]``: column-major pixel index (1..H*W-1) where a new run starts in that mask.
        first: bool ``[N]``: each mask's first pixel (a mask starting with foreground has a leading 0 run).
        height, width: the masks' size.
    """
    num_masks, length = len(first), height * width
    bounds = np.searchsorted(mask_index, np.arange(num_masks + 1))
    counts = []
    for m in range(num_masks):
        edges = [[0], [0]] if first[m] else [[0]]
        counts.append(np.diff(np.concatenate([*edges, positions[bounds[m] : bounds[m + 1]], [length]])))
    return [{"size": [height, width], "counts": text} for text in compress_counts(counts)]


def compress_counts(counts: Sequence[np.ndarray]) -> list[str]:
    """COCO's compressed RLE strings of run lengths, all masks at once (numpy, no per-run Python loop).

    The format: each count, less the count two before it from the fourth on, is written as signed
    5-bit groups, low first, each as ``chr(48 + group)`` with 32 added to all but the last group.
    """
    if not counts:
        return []
    sizes = np.array([len(c) for c in counts], dtype=np.int64)
    flat = np.concatenate(counts).astype(np.int64)
    local = np.arange(len(flat)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # index within its mask
    values = flat.copy()
    delta = local > 2
    values[delta] -= flat[np.flatnonzero(delta) - 2]
    # Groups needed: the fewest k with -2**(5k-1) <= value < 2**(5k-1).
    groups = np.ones(len(values), dtype=np.int64)
    for k in range(1, 13):
        groups += (values >= 2 ** (5 * k - 1)) | (values < -(2 ** (5 * k - 1)))
    shifts = 5 * np.arange(int(groups.max()))
    chunks = (values[:, None] >> shifts[None, :]) & 0x1F  # arithmetic shift, as the C code's
    chunks |= np.where(np.arange(len(shifts))[None, :] < groups[:, None] - 1, 0x20, 0)
    keep = np.arange(len(shifts))[None, :] < groups[:, None]
    text = (chunks[keep] + 48).astype(np.uint8).tobytes().decode("ascii")
    ends = np.cumsum(np.bincount(np.repeat(np.arange(len(counts)), sizes), weights=groups, minlength=len(counts)))
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return [text[a:b] for a, b in zip(starts.tolist(), ends.astype(np.int64).tolist(), strict=True)]


def _to_coco_rle(rle: Rle) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle: Rle) -> np.ndarray:
    """Decode one compressed RLE to a bool mask ``[H, W]``.

    The RLE must be well formed (``is_valid_rle`` / ``scan_rles``): pycocotools raises ValueError when
    the runs exceed ``H * W`` but returns uninitialised pixels when they fall short.
    """
    return mask_utils.decode(_to_coco_rle(rle)).astype(bool)


def rle_area(rle: Rle) -> int:
    """Number of foreground pixels."""
    return int(mask_utils.area(_to_coco_rle(rle)))


def rle_bbox(rle: Rle) -> list[float]:
    """Bounding box ``[x, y, width, height]`` in pixels (all zero for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_to_coco_rle(rle))]


# Compressed counts (pycocotools maskApi.c rleToString / rleFrString): each number is written in 6-bit
# groups as chr(48 + group), least significant first, 5 data bits per group; bit 0x20 says another group
# follows; bit 0x10 of the last group is the sign. From the fourth number on, each is stored as the
# difference from the number two places before it. Runs alternate background and foreground, starting
# with background, in column-major pixel order.
_FIRST_CHAR = 48
_NUM_GROUP_VALUES = 64
_CONTINUE_BIT = 0x20
_SIGN_BIT = 0x10
_DATA_BITS = 5
#: rleFrString shifts a 64-bit ``long`` by 5 bits per group: from the 13th group on the shift passes 64
#: bits, undefined behaviour in C. No 32-bit count needs more than 7 groups.
_MAX_GROUPS = 12
#: Characters checked per round of numpy passes: small enough for the scratch arrays (a few bytes per
#: character each) to stay in the CPU cache, which makes the check several times faster than one pass.
_CHUNK_CHARS = 1 << 17


@dataclass(frozen=True)
class RleProblem:
    """The first bad ``counts`` string of a list.

    Attributes:
        index: its position in the list.
        reason: what is wrong, completing "has a bad RLE: ..." (e.g. "its runs cover 25 pixels, not 20").
    """

    index: int
    reason: str


def _join_counts(counts: Sequence[bytes | str]) -> tuple[bytes, np.ndarray] | int:
    """All strings joined as ASCII bytes plus their lengths, or the index of the first non-ASCII string."""
    kinds = set(map(type, counts))
    if kinds == {str}:
        joined_text = "".join(counts)  # type: ignore[arg-type]
        lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
        if not joined_text.isascii():
            first = next(i for i, c in enumerate(joined_text) if ord(c) > 127)
            return int(np.searchsorted(np.cumsum(lengths), first, side="right"))
        return joined_text.encode("ascii"), lengths
    parts: list[bytes] = []
    for i, c in enumerate(counts):
        if isinstance(c, str):
            if not c.isascii():
                return i
            c = c.encode("ascii")
        parts.append(c)
    return b"".join(parts), np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))


def _parse_runs(groups: np.ndarray, char_end: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Run lengths of every string of a joined buffer, as pycocotools reads them.

    rleFrString adds up each number in a 64-bit ``long`` and stores it, and every run built from it, as
    a 32-bit unsigned count: all arithmetic here is therefore uint32, wrapping exactly as it does there.

    Args:
        groups: uint8 ``[L]`` characters minus 48 (all < 64 up to the first bad string).
        char_end: int64 ``[N]`` end offset of each string in ``groups``.

    Returns:
        ``runs`` uint32 ``[R]``, ``run_end`` int64 ``[N]`` (string s owns runs ``run_end[s - 1]:run_end[s]``)
        and the index of the first number of more than 12 groups (-1 if none). Exact for every string
        before the first malformed one (cut off, or with a character outside the alphabet).
    """
    is_last = (groups & _CONTINUE_BIT) == 0
    ends = np.flatnonzero(is_last)
    count = ends.size
    # The last group of a number is its most significant and holds the sign: a signed 5-bit value
    # (bit 4 moved to the int8 sign bit and shifted back), kept as uint32.
    values = ((groups[is_last].view(np.int8) << 3) >> 3).astype(np.uint32)
    # Longer numbers (Horner's rule from the top group down): value = value * 32 + next lower group.
    # uint32 arithmetic keeps exactly the low 32 bits, all that pycocotools keeps.
    num_groups = np.diff(ends, prepend=-1)
    longer = np.flatnonzero(num_groups > 1)
    too_many = np.flatnonzero(num_groups[longer] > _MAX_GROUPS)[:1]
    overlong = int(longer[too_many[0]]) if too_many.size else -1
    for below in range(1, _MAX_GROUPS):
        if longer.size == 0:
            break
        lower_bits = (groups[ends[longer] - below] & 0x1F).astype(np.uint32)
        values[longer] = (values[longer] << np.uint32(_DATA_BITS)) + lower_bits
        longer = longer[num_groups[longer] > below + 1]
    run_end = np.searchsorted(ends, char_end, side="left")  # a number belongs to the string it ends in
    per_string = np.diff(run_end, prepend=0)
    first = run_end - per_string
    # Run j >= 3 is the number at j plus run j - 2, so the runs of a string form two chains (odd j, and
    # even j >= 2; run 0 stands alone). Cumulative sums over every other number (global even and odd
    # positions) give every chain at once, less the total just before the chain starts in its string.
    runs = np.empty(count, dtype=np.uint32)
    for parity in (0, 1):
        chain_values = values[parity::2]
        before = np.zeros(chain_values.size + 1, dtype=np.uint32)  # before[i]: total of the first i
        np.cumsum(chain_values, dtype=np.uint32, out=before[1:])
        # In string s this parity's positions are first_p, first_p + 2, ... (first_p = first or first + 1);
        # the chain starts after position first (runs 0 and 1 are stored as they are).
        chain_first = (first + 1 - parity) // 2  # index among this parity's positions of first_p
        members = (run_end + 1 - parity) // 2 - chain_first
        base = before[np.minimum(chain_first + (first % 2 == parity), chain_values.size)]
        np.subtract(before[1:], np.repeat(base, members), out=runs[parity::2])
    starts_with_runs = first[per_string > 0]
    runs[starts_with_runs] = values[starts_with_runs]
    return runs, run_end, overlong


def _string_sums(runs: np.ndarray, run_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per string: the sum of all its runs and of its foreground (odd) runs, int64 ``[N]`` each."""
    per_string = np.diff(run_end, prepend=0)
    first = run_end - per_string
    sums = []
    for parity in (0, 1):
        # This parity's runs of string s are runs[parity::2][low[s]:high[s]]; strings follow each other.
        low, high = (first + 1 - parity) // 2, (run_end + 1 - parity) // 2
        total = np.zeros(run_end.size, dtype=np.int64)
        has = high > low
        if has.any():
            total[has] = np.add.reduceat(runs[parity::2], low[has], dtype=np.int64)
        sums.append(total)
    # Run j of a string is foreground when j is odd, i.e. when its global parity differs from first's.
    foreground = np.where(first % 2 == 0, sums[1], sums[0])
    return sums[0] + sums[1], foreground


def _check_chunk(data: bytes, lengths: np.ndarray, pixels: np.ndarray, areas: np.ndarray) -> RleProblem | None:
    """``scan_rles`` of one chunk (indices local to it); writes the foreground areas into ``areas``."""
    count = lengths.size
    char_end = np.cumsum(lengths)
    groups = np.frombuffer(data, dtype=np.uint8) - np.uint8(_FIRST_CHAR)  # below '0' wraps to >= 208
    found: list[tuple[int, str]] = []
    outside = np.flatnonzero(groups >= _NUM_GROUP_VALUES)[:1]
    if outside.size:
        string = int(np.searchsorted(char_end, outside[0], side="right"))
        found.append((string, "its 'counts' string has a character outside the RLE alphabet '0'..'o'"))
    nonempty = np.flatnonzero(lengths > 0)
    cut = np.flatnonzero(groups[char_end[nonempty] - 1] & _CONTINUE_BIT)[:1]
    if cut.size:
        found.append((int(nonempty[cut[0]]), "its 'counts' string is cut off inside a number"))
    runs, run_end, overlong = _parse_runs(groups, char_end)
    if overlong >= 0:
        string = int(np.searchsorted(run_end, overlong, side="right"))
        found.append((string, "its 'counts' string has a number of more than 12 characters"))
    # Runs are unsigned, so a string whose runs add up to its pixel count has none longer than it.
    covered, areas[:] = _string_sums(runs, run_end)
    wrong_sum = np.flatnonzero(covered != pixels)[:1]
    if wrong_sum.size:
        string = int(wrong_sum[0])
        own = runs[run_end[string - 1] if string else 0 : run_end[string]]
        largest = int(own.max()) if own.size else 0
        if largest >= 2**31:  # pycocotools wrote a negative difference here; as a count it wraps
            reason = "it has a negative run length"
        elif largest > pixels[string]:
            reason = f"it has a run of {largest} pixels, more than the mask's {int(pixels[string])}"
        else:
            reason = f"its runs cover {int(covered[string])} pixels, but the mask has {int(pixels[string])}"
        found.append((string, reason))
    first = min((index for index, _ in found), default=count)
    if first >= count:
        return None
    return next(RleProblem(index, reason) for index, reason in found if index == first)


@dataclass(frozen=True)
class RleScan:
    """What ``scan_rles`` found.

    Attributes:
        problem: the first bad string, or None.
        areas: int64 ``[N]`` foreground pixels of every string (pycocotools ``area``); meaningful only
            when ``problem`` is None.
    """

    problem: RleProblem | None
    areas: np.ndarray


def scan_rles(counts: Sequence[bytes | str], pixels: int | np.ndarray) -> RleScan:
    """Check compressed ``counts`` strings the way pycocotools will read them, and measure their areas.

    pycocotools' C decoder trusts its input: a string cut off inside a number reads past its end,
    characters outside the alphabet become garbage run lengths, and runs that add up to less than
    ``h * w`` leave the rest of the mask as uninitialised memory (more overrun it). Here a string is
    good when every character is in the alphabet, it does not end inside a number, no number has more
    than 12 groups, and its runs, read exactly as pycocotools reads them (32-bit unsigned counts), add
    up to exactly its mask's pixel count (so none is "negative", i.e. 2**31 or more). Vectorised: the
    strings are joined and parsed in a few numpy passes, about 128 K characters at a time. The runs
    parsed on the way give the areas too, so callers need no pycocotools ``area`` pass of their own.

    Args:
        counts: N compressed counts strings (str or bytes).
        pixels: ``h * w`` of every mask (int), or int ``[N]`` one per string.

    Returns:
        The first bad string's index and what is wrong with it (or None), and the areas.
    """
    areas = np.zeros(len(counts), dtype=np.int64)
    if not counts:
        return RleScan(None, areas)
    pixel_counts = np.broadcast_to(np.asarray(pixels, dtype=np.int64), (len(counts),))
    joined = _join_counts(counts)
    if isinstance(joined, int):
        return RleScan(RleProblem(joined, "its 'counts' string is not ASCII"), areas)
    data, lengths = joined
    char_end = np.cumsum(lengths)
    chunk_start, char_start = 0, 0
    while chunk_start < len(counts):
        # Whole strings up to about _CHUNK_CHARS characters (at least one string).
        chunk_end = max(chunk_start + 1, int(np.searchsorted(char_end, char_start + _CHUNK_CHARS, side="right")))
        char_stop = int(char_end[chunk_end - 1])
        problem = _check_chunk(
            data[char_start:char_stop],
            lengths[chunk_start:chunk_end],
            pixel_counts[chunk_start:chunk_end],
            areas[chunk_start:chunk_end],
        )
        if problem is not None:
            return RleScan(RleProblem(chunk_start + problem.index, problem.reason), areas)
        chunk_start, char_start = chunk_end, char_stop
    return RleScan(None, areas)


def first_bad_rle(counts: Sequence[bytes | str], pixels: int | np.ndarray) -> RleProblem | None:
    """The first compressed ``counts`` string that pycocotools cannot decode exactly, or None.

    See ``scan_rles`` for what is checked.
    """
    return scan_rles(counts, pixels).problem


def run_lengths(counts: str) -> np.ndarray | None:
    """Parse one compressed ``counts`` string into its run lengths, or None if it is malformed.

    The format is described above ``_FIRST_CHAR``; runs are read as pycocotools reads them.

    Returns:
        int64 ``[R]`` run lengths, or None for a character outside '0'..'o', a string ending inside a
        number, a number of more than 12 groups or a negative run (2**31 or more as a count).
    """
    if not counts or not counts.isascii():
        return None
    groups = np.frombuffer(counts.encode("ascii"), dtype=np.uint8) - np.uint8(_FIRST_CHAR)
    if groups.max() >= _NUM_GROUP_VALUES or groups[-1] & _CONTINUE_BIT:
        return None
    runs, _, overlong = _parse_runs(groups, np.array([groups.size], dtype=np.int64))
    if overlong >= 0 or (runs >= 2**31).any():
        return None
    return runs.astype(np.int64)


def frame_size_problem(height: object, width: object) -> str | None:
    """Why ``height`` x ``width`` cannot be a frame (or mask) size, or None.

    Sides must be integers >= 1 with ``(w + 128) * (h + 128) < MAX_FRAME_AREA_TERM`` (FFmpeg's bound).
    The answer completes "frame size ...".
    """
    if not (isinstance(height, numbers.Integral) and isinstance(width, numbers.Integral)) or any(
        isinstance(v, bool) for v in (height, width)
    ):
        return "is not a pair of integers"
    rows, cols = int(height), int(width)
    if rows < 1 or cols < 1:
        return f"{cols}x{rows} is not positive"
    if (cols + FRAME_SIZE_MARGIN) * (rows + FRAME_SIZE_MARGIN) >= MAX_FRAME_AREA_TERM:
        return f"{cols}x{rows} is larger than any frame a video can have"
    return None


def polygon_problem(polygons: object, height: int, width: int) -> str | None:
    """Why ``polygons`` is not a COCO polygon list of a ``height`` x ``width`` frame, or None.

    Every coordinate must be a finite number (not a bool) and lie within one frame size of the frame
    (x in [-W, 2W], y in [-H, 2H]): pycocotools casts scaled coordinates to C ``int`` and rasterises every
    edge point by point, so a far-away point is undefined behaviour or an enormous allocation there.
    Lengths (at least 3 points, even) are left to the caller: the official loaders treat short ones
    differently.
    """
    if not isinstance(polygons, list) or not all(isinstance(polygon, list) for polygon in polygons):
        return "is not a polygon list ([[x0, y0, x1, y1, ...], ...])"
    for polygon in polygons:
        if not all(type(v) in (int, float) or isinstance(v, numbers.Real) and not isinstance(v, bool) for v in polygon):
            return "has a polygon coordinate that is not a number"
        xs, ys = polygon[0::2], polygon[1::2]
        if xs and (min(xs) < -width or max(xs) > 2 * width) or ys and (min(ys) < -height or max(ys) > 2 * height):
            return f"has a polygon point far outside the {width}x{height} frame"
        if not math.isfinite(sum(polygon)):
            return "has a polygon coordinate that is not a finite number"
    return None


def segmentation_rle_problem(seg: dict[str, Any], height: int, width: int) -> str | None:
    """Why an RLE-shaped segmentation (an object with ``size`` and ``counts``) is not a ``height`` x ``width``
    mask, or None; the one structural check of RLE segmentations read from dataset and result files.

    Accepted: compressed counts (a non-empty ASCII string or bytes; their runs are left to ``scan_rles``,
    which checks many at once) and uncompressed counts (non-negative integer run lengths adding up to
    ``height * width``). The answer completes "segmentation ...".
    """
    size = seg.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(is_int(v) for v in size):
        return f"has a bad RLE 'size' {brief(size)}, not [height, width]"
    if size[0] != height or size[1] != width:
        return f"has mask size {size[0]}x{size[1]}, which differs from the frame size {height}x{width}"
    counts = seg.get("counts")
    if isinstance(counts, (str, bytes)):
        if not counts.isascii():
            return "has a bad RLE: 'counts' is not ASCII"
        if not counts and height * width:
            return "has a bad RLE: 'counts' is empty"
        return None
    if isinstance(counts, list):
        if not all(is_int(c) and c >= 0 for c in counts):
            return "has a bad uncompressed RLE: counts must be non-negative integers"
        if sum(counts) != height * width:
            return f"has a bad uncompressed RLE: runs add up to {sum(counts)}, not {height}x{width}"
        return None
    return f"has a bad RLE: 'counts' is a {type(counts).__name__}, not a string or a list of run lengths"


def rle_problem(value: object, height: int, width: int) -> str | None:
    """Why ``value`` is not a compressed RLE of a ``height`` x ``width`` mask, or None.

    Checks one mask; use ``scan_rles`` for many.
    """
    if not isinstance(value, dict) or not isinstance(value.get("counts"), str):
        return "is not a compressed RLE ({size, counts} with string counts)"
    size = value.get("size")
    if size != [height, width] or not all(is_int(v) for v in size):
        return f"has size {brief(size)}, not [{height}, {width}]"
    problem = first_bad_rle([value["counts"]], height * width)
    return None if problem is None else f"has a bad RLE: {problem.reason}"


def is_valid_rle(value: object) -> bool:
    """True for ``{"size": [h, w], "counts": str}`` of a valid frame size whose runs cover exactly ``h * w``.

    Needed before handing untrusted masks to pycocotools (see ``scan_rles``).
    """
    if not isinstance(value, dict):
        return False
    size = value.get("size")
    if not isinstance(size, list) or len(size) != 2 or frame_size_problem(size[0], size[1]) is not None:
        return False
    return rle_problem(value, size[0], size[1]) is None

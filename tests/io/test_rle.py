"""Compressed RLE round trips through pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

import ovformer_core.io.rle as rle_module
from ovformer_core.io.rle import (
    decode_rle,
    encode_rle,
    encode_rles,
    first_bad_rle,
    frame_size_problem,
    is_valid_rle,
    polygon_problem,
    rle_area,
    rle_bbox,
    run_lengths,
)


def test_round_trip_stack_including_empty_and_full_masks() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 17, 23)) > 0.6
    masks[1] = False
    masks[2] = True
    rles = encode_rles(masks)
    assert len(rles) == 5
    for t, rle in enumerate(rles):
        assert isinstance(rle["counts"], str) and rle["size"] == [17, 23]
        assert is_valid_rle(rle)
        decoded = decode_rle(json.loads(json.dumps(rle)))
        assert decoded.dtype == bool
        np.testing.assert_array_equal(decoded, masks[t])
        assert rle_area(rle) == int(masks[t].sum())


def test_single_mask_matches_stack_and_accepts_integers() -> None:
    mask = np.zeros((6, 9), dtype=np.uint8)
    mask[2:5, 3:8] = 7
    rle = encode_rle(mask)
    assert rle == encode_rles(mask[None].astype(bool))[0]
    np.testing.assert_array_equal(decode_rle(rle), mask != 0)
    assert rle_bbox(rle) == [3.0, 2.0, 5.0, 3.0]
    assert rle_bbox(encode_rle(np.zeros((4, 4), bool))) == [0.0, 0.0, 0.0, 0.0]


def test_non_contiguous_input_is_encoded_correctly() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((12, 10, 3)) > 0.5
    view = np.moveaxis(masks, -1, 0)  # [3, 12, 10], not C-contiguous
    for t, rle in enumerate(encode_rles(view)):
        np.testing.assert_array_equal(decode_rle(rle), view[t])


def test_shape_checks() -> None:
    with pytest.raises(ValueError):
        encode_rle(np.zeros((2, 3, 4), bool))
    with pytest.raises(ValueError):
        encode_rles(np.zeros((3, 4), bool))
    assert encode_rles(np.zeros((0, 3, 4), bool)) == []
    assert not is_valid_rle({"size": [3, 4], "counts": b"abc"})
    assert not is_valid_rle({"size": [3], "counts": "abc"})
    assert not is_valid_rle(None)


def _runs_of(mask: np.ndarray) -> list[int]:
    """Run lengths of a mask in column-major order, starting with background (brute force)."""
    flat = mask.flatten(order="F").astype(int)
    runs, value, length = [], 0, 0
    for pixel in flat:
        if pixel == value:
            length += 1
        else:
            runs.append(length)
            value, length = pixel, 1
    runs.append(length)
    return runs


def test_run_lengths_parse_pycocotools_strings() -> None:
    rng = np.random.default_rng(3)
    masks = rng.random((6, 40, 70)) > 0.5
    masks[1] = False
    masks[2] = True
    masks[3] = False
    masks[3, 5:35, 10:60] = True  # long runs: multi-group numbers and negative differences
    for mask, rle in zip(masks, encode_rles(masks), strict=True):
        runs = run_lengths(rle["counts"])
        assert runs is not None
        assert runs.tolist() == _runs_of(mask)


def test_unsafe_counts_strings_are_rejected() -> None:
    rle = encode_rle(np.eye(5, dtype=bool))
    assert is_valid_rle(rle)
    assert not is_valid_rle({**rle, "counts": rle["counts"] + "~"})  # outside the alphabet
    assert not is_valid_rle({**rle, "counts": rle["counts"] + "`"})  # stops inside a number
    assert not is_valid_rle({**rle, "counts": ""})
    assert not is_valid_rle({**rle, "size": [5, 4]})  # runs cover 25 pixels, not 20
    assert not is_valid_rle({**rle, "size": [6, 5]})


def test_decode_rejects_runs_that_exceed_the_mask() -> None:
    rle = encode_rle(np.ones((10, 10), dtype=bool))
    with pytest.raises(ValueError):
        decode_rle({**rle, "size": [4, 4]})


def _random_counts(count: int, height: int = 17, width: int = 23, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    masks = rng.random((height, width, count)) < rng.random(count)
    return [rle["counts"] for rle in mask_utils.encode(np.asfortranarray(masks.astype(np.uint8)))]


def test_first_bad_rle_finds_the_first_bad_string_and_says_why() -> None:
    counts = _random_counts(50)
    assert first_bad_rle(counts, 17 * 23) is None
    assert first_bad_rle([c.decode() for c in counts], 17 * 23) is None
    broken = list(counts)
    broken[31] = counts[31][:-1] + b"~"  # outside the 48..111 alphabet
    broken[40] = b"2n"  # ends inside a number ('n' carries the continuation bit)
    problem = first_bad_rle(broken, 17 * 23)
    assert problem is not None and problem.index == 31 and "outside the RLE alphabet" in problem.reason
    problem = first_bad_rle(broken[32:], 17 * 23)
    assert problem is not None and problem.index == 40 - 32 and "cut off" in problem.reason
    mixed: list[bytes | str] = [c.decode() if i % 2 else c for i, c in enumerate(counts)]
    mixed[7] = "3é"
    assert first_bad_rle(mixed, 17 * 23) == rle_module.RleProblem(7, "its 'counts' string is not ASCII")
    pixels = np.full(50, 17 * 23)
    pixels[12] += 1  # the runs of mask 12 now fall one pixel short
    problem = first_bad_rle(counts, pixels)
    assert problem is not None and problem.index == 12
    assert problem.reason == f"its runs cover {17 * 23} pixels, but the mask has {17 * 23 + 1}"


def _encode_numbers(runs: list[int]) -> str:
    """pycocotools rleToString in Python, for any integers (including ones it would never write)."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = not ((c & 0x10) == 0 and x == 0 or (c & 0x10) != 0 and x == -1)
            out.append(chr(48 + (c | 0x20 if more else c)))
    return "".join(out)


def _reference_runs(counts: str) -> list[int] | None:
    """pycocotools rleFrString in plain Python: numbers in a 64-bit long, counts kept as uint32.

    None where the C code is undefined (a cut-off string, a character outside the alphabet, a number
    of more than 12 groups, whose shift overflows the long).
    """
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p >= len(counts) or not 0 <= ord(counts[p]) - 48 <= 63:
                return None
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x -= 1 << 5 * k
        if k > 12:
            return None
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x % 2**32)
    return runs


def _reference_first_bad(counts: list[str], pixels: np.ndarray) -> int | None:
    for i, text in enumerate(counts):
        runs = _reference_runs(text) if text.isascii() else None
        if runs is None or max(runs, default=0) > pixels[i] or sum(runs) != pixels[i]:
            return i
    return None


def test_first_bad_rle_equals_a_plain_port_of_pycocotools_on_damaged_and_hostile_strings() -> None:
    rng = np.random.default_rng(7)

    def big_number() -> str:
        groups = [int(g) | 0x20 for g in rng.integers(0, 32, int(rng.integers(4, 12)))]
        return "".join(chr(48 + g) for g in [*groups, int(rng.integers(0, 32))])

    for _ in range(400):
        count = int(rng.integers(1, 8))
        height, width = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        counts = [c.decode() for c in _random_counts(count, height, width, seed=int(rng.integers(1 << 30)))]
        pixels = np.full(count, height * width)
        for _ in range(int(rng.integers(0, 3))):
            i, text, edit = int(rng.integers(count)), counts[int(rng.integers(count))], int(rng.integers(5))
            if edit == 0 and text:
                j = int(rng.integers(len(text)))
                counts[i] = text[:j] + chr(int(rng.integers(40, 120))) + text[j + 1 :]
            elif edit == 1:
                counts[i] = text[: int(rng.integers(len(text) + 1))]
            elif edit == 2:
                counts[i] = "".join(big_number() for _ in range(int(rng.integers(1, 20))))
            elif edit == 3:
                counts[i] = text + big_number() + big_number()
            else:
                pixels[i] = max(0, pixels[i] + int(rng.integers(-2, 3)))
        problem = first_bad_rle(counts, pixels)
        assert (None if problem is None else problem.index) == _reference_first_bad(counts, pixels), counts


def test_runs_are_read_modulo_2_to_the_32_like_pycocotools() -> None:
    # pycocotools keeps counts as uint32: a run of 2**32 + 2 is a run of 2 there, and so it is here.
    wrapped = _encode_numbers([2**32 + 2, 4])
    assert _reference_runs(wrapped) == [2, 4]
    assert first_bad_rle([wrapped], 6) is None
    decoded = mask_utils.decode({"size": [2, 3], "counts": wrapped.encode()})
    assert decoded.flatten(order="F").tolist() == [0, 0, 1, 1, 1, 1]
    # -1 as a count is 2**32 - 1 there: far more than the mask.
    problem = first_bad_rle([_encode_numbers([3, -1, 4])], 6)
    assert problem is not None and problem.reason == "it has a negative run length"
    problem = first_bad_rle([_encode_numbers([2**40 + 7])], 6)
    assert problem is not None and problem.reason == "it has a run of 7 pixels, more than the mask's 6"


def test_strings_across_chunks_keep_their_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rle_module, "_CHUNK_CHARS", 7)
    counts = _random_counts(30)
    assert first_bad_rle(counts, 17 * 23) is None
    counts[26] = b"1" + counts[26]  # a leading background pixel more
    problem = first_bad_rle(counts, 17 * 23)
    assert problem is not None and problem.index == 26


def test_frame_size_and_polygon_bounds() -> None:
    assert frame_size_problem(1080, 1920) is None
    assert frame_size_problem(8192, 8192) is None
    assert frame_size_problem(100_000, 100_000) == "100000x100000 is larger than any frame a video can have"
    assert frame_size_problem(0, 5) == "5x0 is not positive"
    assert frame_size_problem(True, 5) == "is not a pair of integers"
    assert polygon_problem([[0, 0, 10, 0, 10.5, 8]], 10, 10) is None
    assert "far outside" in str(polygon_problem([[0, 0, 1e300, 0, 5, 5]], 10, 10))
    assert "not a number" in str(polygon_problem([[0, 0, True, 0, 5, 5]], 10, 10))
    assert "not a finite number" in str(polygon_problem([[0, 0, float("nan"), 0, 5, 5]], 10, 10))
    assert "not a polygon list" in str(polygon_problem([0, 0, 1, 1, 2, 2], 10, 10))


def test_scan_areas_equal_pycocotools_area() -> None:
    rng = np.random.default_rng(11)
    counts: list[bytes] = []
    pixels: list[int] = []
    for height, width in ((17, 23), (1, 1), (40, 70), (3, 200)):
        masks = rng.random((height, width, 150)) < rng.random(150)
        masks[..., 0] = False
        masks[..., 1] = True
        encoded = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8)))
        counts += [rle["counts"] for rle in encoded]
        pixels += [height * width] * len(encoded)
        expected = [int(mask_utils.area(rle)) for rle in encoded]
        scan = rle_module.scan_rles([rle["counts"] for rle in encoded], height * width)
        assert scan.problem is None and scan.areas.tolist() == expected
    assert rle_module.scan_rles(counts, np.array(pixels)).problem is None


def test_segmentation_rle_problem_is_the_one_structural_check() -> None:
    """Training and evaluation read RLE segmentations through this one check."""
    assert rle_module.segmentation_rle_problem({"size": [4, 5], "counts": "PP3"}, 4, 5) is None
    assert rle_module.segmentation_rle_problem({"size": [4, 5], "counts": [9, 2, 2, 2, 5]}, 4, 5) is None
    cases = {
        "has a bad RLE 'size' [4], not [height, width]": {"size": [4], "counts": "x"},
        "has mask size 5x5, which differs from the frame size 4x5": {"size": [5, 5], "counts": "x"},
        "has a bad RLE: 'counts' is not ASCII": {"size": [4, 5], "counts": "é"},
        "has a bad RLE: 'counts' is empty": {"size": [4, 5], "counts": ""},
        "has a bad uncompressed RLE: counts must be non-negative integers": {"size": [4, 5], "counts": [20, True]},
        "has a bad uncompressed RLE: runs add up to 19, not 4x5": {"size": [4, 5], "counts": [9, 10]},
        "has a bad RLE: 'counts' is a float, not a string or a list of run lengths": {"size": [4, 5], "counts": 1.0},
    }
    for expected, seg in cases.items():
        assert rle_module.segmentation_rle_problem(seg, 4, 5) == expected

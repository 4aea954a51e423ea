"""The RLE checks that guard pycocotools, and bulk areas."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovformer_core.eval.rle import SegmentationError, first_bad_counts, normalise_segmentation, rle_areas


def _random_rles(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    masks = rng.random((17, 23, count)) < rng.random(count)
    return mask_utils.encode(np.asfortranarray(masks.astype(np.uint8)))


def test_valid_counts_pass_and_the_first_bad_one_is_found() -> None:
    rles = _random_rles(50)
    counts = [r["counts"] for r in rles]
    assert first_bad_counts(counts) == -1
    assert first_bad_counts([c.decode() for c in counts]) == -1
    broken = list(counts)
    broken[31] = counts[31][:-1] + b"~"  # outside the 48..111 alphabet
    broken[40] = b"2n"  # ends inside a number ('n' carries the continuation bit)
    assert first_bad_counts(broken) == 31
    assert first_bad_counts(broken[32:]) == 40 - 32
    mixed: list[bytes | str] = [c.decode() if i % 2 else c for i, c in enumerate(counts)]
    mixed[7] = "3é"
    assert first_bad_counts(mixed) == 7
    text_only = [c.decode() for c in counts]
    text_only[12] = "é"
    assert first_bad_counts(text_only) == 12


def test_areas_match_pycocotools_beyond_255_masks() -> None:
    """pycocotools' own ``area`` overflows a uint8 scratch array above 255 masks under numpy 2."""
    rles = _random_rles(600, seed=1)
    expected = [int(mask_utils.area(r)) for r in rles]
    assert rle_areas(rles).tolist() == expected


def test_normalise_segmentation_forms() -> None:
    assert normalise_segmentation(None, 4, 5, allow_polygons=False) is None
    assert normalise_segmentation({}, 4, 5, allow_polygons=False) is None
    mask = np.zeros((4, 5), dtype=np.uint8, order="F")
    mask[1:3, 2:4] = 1
    compressed = mask_utils.encode(mask)
    same = normalise_segmentation({"size": [4, 5], "counts": compressed["counts"].decode()}, 4, 5, False)
    assert same == {"size": [4, 5], "counts": compressed["counts"]}
    from_runs = normalise_segmentation({"size": [4, 5], "counts": [9, 2, 2, 2, 5]}, 4, 5, False)
    assert np.array_equal(mask_utils.decode(from_runs), mask)
    with pytest.raises(SegmentationError, match="add up to 19"):
        normalise_segmentation({"size": [4, 5], "counts": [9, 2, 2, 2, 4]}, 4, 5, False)
    with pytest.raises(SegmentationError, match="'counts' is empty"):
        normalise_segmentation({"size": [4, 5], "counts": ""}, 4, 5, False)
    with pytest.raises(SegmentationError, match="bad RLE 'size'"):
        normalise_segmentation({"size": [4], "counts": "abc"}, 4, 5, False)

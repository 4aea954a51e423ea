"""The RLE checks that guard pycocotools, and bulk areas."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovformer_core.eval.rle import SegmentationError, normalise_segmentation, rle_areas


def _random_rles(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    masks = rng.random((17, 23, count)) < rng.random(count)
    return mask_utils.encode(np.asfortranarray(masks.astype(np.uint8)))


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

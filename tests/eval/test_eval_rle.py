"""The per-mask checks that guard pycocotools (the counts strings are checked by io/rle.scan_rles)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovformer_core.eval.rle import SegmentationError, normalise_segmentation


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

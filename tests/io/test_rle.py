"""Compressed RLE round trips through pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ovformer_core.io.rle import (
    decode_rle,
    encode_rle,
    encode_rles,
    is_valid_rle,
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

"""``invalid_rles`` (many RLEs checked in one pass) agrees with ``is_valid_rle`` on every kind of damage."""

from __future__ import annotations

import numpy as np

from ovformer_core.io.rle import encode_rle, invalid_rles, is_valid_rle


def damaged_rles(count: int, seed: int = 0) -> list[object]:
    rng = np.random.default_rng(seed)
    values: list[object] = []
    for _ in range(count):
        height, width = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        rle = encode_rle(rng.random((height, width)) < rng.random())
        counts = rle["counts"]
        damage = int(rng.integers(0, 8))
        if damage == 1:
            counts = counts[:-1]  # cut off
        elif damage == 2:
            counts += "~`0AoZ_ "[int(rng.integers(0, 8))]  # a stray character
        elif damage == 3 and len(counts) > 1:
            i = int(rng.integers(0, len(counts)))
            counts = counts[:i] + chr(int(rng.integers(40, 120))) + counts[i + 1 :]
        elif damage == 4:
            rle["size"] = [height + 1, width]  # runs no longer cover the frame
        elif damage == 5:
            counts = ""
        elif damage == 6:
            counts = "o" * int(rng.integers(1, 20)) + "0"  # an over-long number
        values.append({"size": rle["size"], "counts": counts})
    return values


def test_the_batch_check_equals_the_single_check():
    values = damaged_rles(3000)
    values += [
        None,
        {"size": [2, 2]},
        {"size": [2, 2], "counts": b"4"},
        {"size": [2], "counts": "4"},
        {"size": [2, True], "counts": "4"},
        {"size": [2, 2], "counts": "4"},
        {"size": [0, 0], "counts": "0"},
        {"size": [2, 2], "counts": "é"},
    ]
    expected = np.array([not is_valid_rle(value) for value in values])
    assert 0 < expected.sum() < len(values)
    assert np.array_equal(invalid_rles(values), expected)


def test_empty_and_all_invalid_batches():
    assert invalid_rles([]).shape == (0,)
    assert invalid_rles([None, 3]).tolist() == [True, True]

"""Test-time preprocessing: the official shortest-edge resize (resize/resize_cases.npz), normalise, pad."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovformer_core.model.preprocess import normalize_and_pad, resize_frames, shortest_edge_size
from tests.reference_fixtures import REFERENCE

RESIZE_CASES = REFERENCE / "resize" / "resize_cases.npz"
CASES = ("landscape_up", "portrait_down", "wide_capped")
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@pytest.fixture(scope="module")
def resize_cases() -> dict[str, np.ndarray]:
    with np.load(RESIZE_CASES, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@pytest.mark.parametrize("case", CASES)
def test_resize_equals_the_official_mapper(resize_cases: dict[str, np.ndarray], case: str) -> None:
    frame, expected = resize_cases[f"{case}_input"], resize_cases[f"{case}_output"]
    min_size, max_size = int(resize_cases["min_size_test"]), int(resize_cases["max_size_test"])
    size = shortest_edge_size(*frame.shape[:2], min_size, max_size)
    assert size == expected.shape[:2]
    resized = resize_frames(np.stack([frame, frame]), size)
    assert resized.dtype == np.uint8 and resized.shape == (2, *expected.shape)
    np.testing.assert_array_equal(resized[0], expected)  # the same PIL filter: equal to the byte
    np.testing.assert_array_equal(resized[1], expected)


def test_shortest_edge_rule() -> None:
    assert shortest_edge_size(70, 100, 360, 1333) == (360, 514)
    assert shortest_edge_size(500, 380, 360, 1333) == (474, 360)
    assert shortest_edge_size(90, 1000, 360, 1333) == (120, 1333)  # the long side is capped
    assert shortest_edge_size(70, 100, 70, 1333) == (70, 100)  # already the target: unchanged


def test_resize_to_the_same_size_returns_the_frames() -> None:
    frames = np.zeros((1, 4, 6, 3), dtype=np.uint8)
    assert resize_frames(frames, (4, 6)) is frames


def test_normalize_then_pad_with_zeros() -> None:
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (2, 33, 40, 3), dtype=np.uint8))
    pixels = normalize_and_pad(frames, MEAN, STD, 32)
    assert pixels.shape == (2, 3, 64, 64) and pixels.dtype == torch.float32
    expected = (frames.permute(0, 3, 1, 2).float() - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(pixels[:, :, :33, :40], expected)
    assert not pixels[:, :, 33:].any() and not pixels[:, :, :, 40:].any()  # padding after normalising: exactly 0
    assert normalize_and_pad(frames, MEAN, STD, 32, padded_size=(96, 64)).shape == (2, 3, 96, 64)
    assert normalize_and_pad(frames[:, :32, :32], MEAN, STD, 32).shape == (2, 3, 32, 32)  # a multiple stays

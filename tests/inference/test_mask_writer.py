"""Clip masks -> stored RLEs on a worker thread (inference/mask_writer.py, postprocess.mask_columns)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from ovformer_core.inference import postprocess
from ovformer_core.inference.mask_writer import MaskWriter
from ovformer_core.inference.postprocess import mask_columns, masks_to_original, run_starts
from ovformer_core.io.rle import (
    compress_counts,
    empty_rle,
    encode_columns,
    encode_rle,
    encode_rles,
    rles_from_run_starts,
    run_lengths,
)
from ovformer_core.model.preprocess import PreprocessInfo

CPU = torch.device("cpu")
#: Resized to the network's size and back: both resizing stages run.
RESIZED = PreprocessInfo(original_size=(21, 30), resized_size=(14, 20), padded_size=(16, 24))


def clip_logits(seed: int, queries: int = 6, frames: int = 3) -> torch.Tensor:
    """Mask logits ``[Q, t, 4, 6]`` with whole maps of negatives (nothing to upsample) among random ones."""
    torch.manual_seed(seed)
    logits = torch.randn(queries, frames, 4, 6) * 2
    logits[1] = -logits[1].abs()  # query 1: empty in every frame
    logits[3, 0] = -0.0  # exactly zero is not foreground either
    logits[4, 1] = logits[4, 1].abs() + 1e-3  # full in frame 1
    return logits


def expected_frames(logits: torch.Tensor, info: PreprocessInfo) -> list[list[dict]]:
    """The plain way: every map upsampled, then ``encode_rles`` per frame."""
    masks = masks_to_original(logits, info).numpy()  # [Q, t, H, W]
    return [encode_rles(masks[:, t]) for t in range(masks.shape[1])]


def stored_frames(writer: MaskWriter) -> list[list[dict]]:
    store = writer.finish()
    assert store is not None
    return [[store.rle(f, slot) for slot in range(store.num_slots)] for f in range(len(store))]


@pytest.mark.parametrize("chunk_pixels", [1 << 21, 21 * 30 * 4, 1])  # one chunk; 4 maps and a partial one; 1 map
def test_columns_skip_empty_maps_and_encode_to_the_same_rles(monkeypatch, chunk_pixels: int) -> None:
    monkeypatch.setattr(postprocess, "CPU_CHUNK_PIXELS", chunk_pixels)
    logits = clip_logits(0)
    columns, present = mask_columns(logits, RESIZED)
    assert present.shape == (3, 6) and not present[:, 1].any() and not present[0, 3]
    assert int(present.sum()) % 4 != 0  # the 4-map chunks end with a partial one
    assert columns.shape == (int(present.sum()), 30, 21)  # [M, W, H]: transposed
    encoded = iter(encode_columns(columns.numpy(), 21))
    got = [[next(encoded) if here else empty_rle(21, 30) for here in frame] for frame in present.numpy()]
    assert got == expected_frames(logits, RESIZED)


def test_empty_rle_and_columns_match_the_plain_encoders() -> None:
    assert empty_rle(7, 5) == encode_rle(np.zeros((7, 5), bool))
    masks = np.random.default_rng(1).random((4, 7, 5)) < 0.5
    assert encode_columns(np.ascontiguousarray(masks.transpose(0, 2, 1)), 7) == encode_rles(masks)
    with pytest.raises(ValueError, match=r"\[N, W, H=7\]"):
        encode_columns(np.zeros((4, 7, 5), bool), 7)  # a [N, H, W] stack, not [N, W, H]
    assert encode_columns(np.zeros((0, 5, 7), bool), 7) == []


@pytest.mark.parametrize(("background", "runs_on_device"), [(True, False), (False, False), (True, True), (False, True)])
def test_writer_stores_every_frame_in_order(background: bool, runs_on_device: bool) -> None:
    clips = [clip_logits(seed) for seed in range(4)]
    clips.insert(2, -clip_logits(4).abs())  # a black frame's clip: not one map to upsample
    writer = MaskWriter(CPU, max_pending=1, background=background, runs_on_device=runs_on_device)
    try:
        for logits in clips:
            writer.submit(logits, RESIZED)
        assert stored_frames(writer) == [frame for logits in clips for frame in expected_frames(logits, RESIZED)]
    finally:
        writer.close()


def test_a_worker_failure_reaches_the_caller() -> None:
    writer = MaskWriter(CPU, max_pending=1)
    writer.submit(clip_logits(0, queries=6), RESIZED)
    writer.submit(clip_logits(1, queries=5), RESIZED)  # another slot count: the store refuses it
    with pytest.raises(ValueError, match="expected 6 masks, got 5"):
        for seed in range(2, 6):  # raised at a later submit, or at the latest by finish
            writer.submit(clip_logits(seed), RESIZED)
        writer.finish()
    writer.close()


def test_close_with_clips_pending_stops_the_worker() -> None:
    writer = MaskWriter(CPU, max_pending=2)
    for seed in range(3):
        writer.submit(clip_logits(seed), RESIZED)
    writer.close()
    assert not any(thread.name == "ovformer-masks" for thread in threading.enumerate())


def test_rles_from_run_starts_equal_pycocotools() -> None:
    rng = np.random.default_rng(2)
    masks = rng.random((40, 9, 11)) < rng.random((40, 1, 1))  # from nearly empty to nearly full
    masks[3], masks[4] = False, True
    masks[5, 0, 0] = True  # starts with foreground: a leading 0 run
    columns = torch.from_numpy(np.ascontiguousarray(masks.transpose(0, 2, 1)))
    mask_index, positions, first = (t.numpy() for t in run_starts(columns))
    assert rles_from_run_starts(mask_index, positions, first, 9, 11) == encode_rles(masks)


def test_compress_counts_equal_pycocotools_and_read_back() -> None:
    rng = np.random.default_rng(3)
    # Against pycocotools' string writer: counts below 2**24 (one to five 5-bit groups). Strings of larger
    # counts written by it corrupted the heap here (crashes at exit, one run in three), so those are checked
    # by reading them back.
    small = [rng.integers(0, 10 ** int(rng.integers(1, 7)), int(rng.integers(1, 30))) for _ in range(150)]
    small = [c for c in small if c.sum() > 0]
    expected = [
        mask_utils.frPyObjects({"size": [int(c.sum()), 1], "counts": c.tolist()}, int(c.sum()), 1)["counts"].decode()
        for c in small
    ]
    assert compress_counts(small) == expected
    # Up to 2**31 - 1 (seven groups; differences to two back go negative): read back by the checker's parser.
    large = [rng.integers(0, 2**31, int(rng.integers(1, 9))) for _ in range(60)]
    assert all(np.array_equal(run_lengths(text), c) for text, c in zip(compress_counts(large), large, strict=True))
    assert compress_counts([]) == []

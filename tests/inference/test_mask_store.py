"""The RLE store of every (frame, slot) mask until the final top-k is known."""

from __future__ import annotations

import numpy as np
import pytest

import ovformer_core.inference.mask_store as mask_store_module
from ovformer_core.inference.mask_store import MaskStore
from ovformer_core.io.rle import decode_rle


@pytest.mark.parametrize("spool_bytes", [32 * 1024 * 1024, 64])  # in memory, and spilled to disk
def test_masks_come_back_exactly(spool_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mask_store_module, "SPOOL_BYTES", spool_bytes)
    rng = np.random.default_rng(0)
    frames = [rng.random((3, 6, 9)) < 0.4 for _ in range(4)]
    frames[2][1] = False  # an empty mask
    store = MaskStore(3)
    try:
        for masks in frames:
            store.append_frame(masks)
        assert len(store) == 4
        for f, masks in enumerate(frames):
            for slot in range(3):
                rle = store.rle(f, slot)
                assert rle["size"] == [6, 9] and isinstance(rle["counts"], str)
                assert np.array_equal(decode_rle(rle), masks[slot])
        assert not decode_rle(store.empty_rle(0)).any() and store.empty_rle(0)["size"] == [6, 9]
    finally:
        store.close()


def test_a_frame_with_another_slot_count_is_refused() -> None:
    store = MaskStore(2)
    with pytest.raises(ValueError, match="expected 2 masks, got 3"):
        store.append_frame(np.zeros((3, 4, 4), dtype=bool))
    store.close()

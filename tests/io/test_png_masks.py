"""PNG id masks: read back equal to the masks, overlap priority, bit depth, safe replacement."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ovformer_core.errors import OutputError
from ovformer_core.io.png_masks import encode_png, read_png, read_png_masks, write_png_masks


def _expected_ids(masks: np.ndarray, track_ids: list[int], scores: list[float]) -> np.ndarray:
    """Brute force: per pixel, the id of the highest-scoring track covering it (0 if none)."""
    num_tracks, num_frames, height, width = masks.shape
    expected = np.zeros((num_frames, height, width), dtype=np.uint16)
    for t in range(num_frames):
        for y in range(height):
            for x in range(width):
                covering = [k for k in range(num_tracks) if masks[k, t, y, x]]
                if covering:
                    best = max(covering, key=lambda k: (scores[k], track_ids[k]))
                    expected[t, y, x] = track_ids[best]
    return expected


def test_png_masks_read_back_equal_to_the_masks(tmp_path: Path, make_result: Callable) -> None:
    result, masks = make_result(num_frames=3, height=12, width=16, num_tracks=4, frame_indices=[4, 8, 12])
    folder = write_png_masks(tmp_path / "masks", result)
    assert sorted(p.name for p in folder.iterdir()) == ["000004.png", "000008.png", "000012.png", "tracks.json"]
    frame_indices, ids = read_png_masks(folder)
    assert frame_indices == [4, 8, 12]
    track_ids = [t.track_id for t in result.tracks]
    np.testing.assert_array_equal(ids, _expected_ids(masks, track_ids, [t.score for t in result.tracks]))
    assert read_png(folder / "000004.png").dtype == np.uint8
    legend = json.loads((folder / "tracks.json").read_text())
    assert legend["bit_depth"] == 8
    assert [t["track_id"] for t in legend["tracks"]] == [1, 2, 3, 4]
    # Masks overlap in this fixture, so the priority rule is exercised.
    assert (masks.sum(axis=0) > 1).any()
    assert [p.name for p in tmp_path.iterdir()] == ["masks"]


def test_large_track_ids_use_16_bit(tmp_path: Path, make_result: Callable) -> None:
    result, masks = make_result(num_frames=2, height=8, width=10, num_tracks=2)
    renumbered = [dataclasses.replace(t, track_id=t.track_id * 1000) for t in result.tracks]
    result = dataclasses.replace(result, tracks=renumbered)
    folder = write_png_masks(tmp_path / "masks", result)
    assert read_png(folder / "000000.png").dtype == np.uint16
    _, ids = read_png_masks(folder)
    assert set(np.unique(ids).tolist()) <= {0, 1000, 2000}
    np.testing.assert_array_equal(ids, _expected_ids(masks, [1000, 2000], [t.score for t in renumbered]))


def test_png_encoder_round_trip() -> None:
    image = (np.arange(7 * 9).reshape(7, 9) * 1000 % 65535).astype(np.uint16)
    path_bytes = encode_png(image)
    assert path_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2, 3), np.uint8))


def test_png_round_trip_uint16(tmp_path: Path) -> None:
    image = (np.arange(7 * 9).reshape(7, 9) * 1000 % 65535).astype(np.uint16)
    (tmp_path / "x.png").write_bytes(encode_png(image))
    np.testing.assert_array_equal(read_png(tmp_path / "x.png"), image)


def test_rewrite_replaces_own_folder_but_not_foreign_ones(tmp_path: Path, make_result: Callable) -> None:
    first, _ = make_result(num_frames=3, seed=1)
    second, second_masks = make_result(num_frames=2, seed=2)
    write_png_masks(tmp_path / "masks", first)
    write_png_masks(tmp_path / "masks", second)
    frame_indices, _ = read_png_masks(tmp_path / "masks")
    assert frame_indices == [0, 1]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["000000.png", "000001.png", "tracks.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["masks"]

    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "thesis.txt").write_text("precious")
    with pytest.raises(OutputError) as excinfo:
        write_png_masks(tmp_path / "documents", second)
    assert "\n" not in str(excinfo.value) and "documents" in str(excinfo.value)
    assert (tmp_path / "documents" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents", "masks"]


def test_mask_folder_permissions_follow_the_umask(tmp_path: Path, make_result: Callable) -> None:
    result, _ = make_result(num_frames=1)
    folder = write_png_masks(tmp_path / "masks", result)
    reference = tmp_path / "plain"
    reference.mkdir()
    assert folder.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777

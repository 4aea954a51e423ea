"""Clip augmentation: one geometry per clip, detectron2's size rules, masks stay on their pixels."""

from __future__ import annotations

import numpy as np
import pytest

from ovformer_core.errors import TrainingError
from ovformer_core.train.augment import (
    ImageAugmentConfig,
    VideoAugmentConfig,
    augment_image_clip,
    augment_video_clip,
    shortest_edge_size,
)
from ovformer_core.train.data import Clip

RED = (230, 30, 30)
BLUE = (30, 30, 230)
GREEN = (40, 200, 40)


def _square_clip(
    height: int, width: int, squares: list[tuple[int, int, int, int, tuple[int, int, int]]], num_frames: int = 2
) -> Clip:
    """A green clip with coloured squares ``(y0, y1, x0, x1, colour)``, one instance (label = position) each."""
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[:] = GREEN
    masks = np.zeros((len(squares), num_frames, height, width), dtype=bool)
    for n, (y0, y1, x0, x1, colour) in enumerate(squares):
        frames[:, y0:y1, x0:x1] = colour
        masks[n, :, y0:y1, x0:x1] = True
    return Clip(
        frames=frames,
        masks=masks,
        labels=np.arange(len(squares), dtype=np.int64),
        file_names=tuple(f"f{t}.jpg" for t in range(num_frames)),
    )


PALETTE = (RED, BLUE, GREEN)


def _is_colour(frames: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Pixels nearer to ``colour`` than to any other colour of the palette (blended edges go to the majority)."""
    distances = np.stack([np.abs(frames.astype(np.int64) - np.array(c)).sum(axis=-1) for c in PALETTE])
    return distances.argmin(axis=0) == PALETTE.index(colour)


def _assert_masks_cover_their_colour(clip: Clip, colours: list[tuple[int, int, int]]) -> None:
    """Each instance's mask sits on pixels of its colour, and covers nearly all of them."""
    for n, label in enumerate(clip.labels.tolist()):
        coloured = _is_colour(clip.frames, colours[label])
        mask = clip.masks[n]
        assert coloured[mask].mean() > 0.85
        assert mask[coloured].mean() > 0.85


@pytest.mark.parametrize(
    ("size", "short_edge", "max_size", "expected"),
    [
        ((480, 640), 360, 1333, (360, 480)),
        ((640, 480), 480, 1333, (640, 480)),
        ((7, 10), 5, 1333, (5, 7)),  # 7.14 rounds down
        ((6, 10), 4, 1333, (4, 7)),  # 6.67 rounds up
        ((100, 1000), 480, 1333, (133, 1333)),  # 4800 exceeds max_size: the long side becomes 1333
        ((300, 300), 480, 1333, (480, 480)),
    ],
)
def test_shortest_edge_size_follows_detectron2(
    size: tuple[int, int], short_edge: int, max_size: int, expected: tuple[int, int]
) -> None:
    assert shortest_edge_size(*size, short_edge, max_size) == expected


def test_video_clip_gets_one_size_per_clip_and_honours_max_size() -> None:
    clip = _square_clip(30, 40, [(5, 20, 10, 30, RED)])
    cfg = VideoAugmentConfig(min_sizes=(12, 24), max_size=1333, flip_prob=0.0)
    seen = set()
    for seed in range(12):
        out = augment_video_clip(clip, cfg, np.random.default_rng(seed))
        assert out.frames.shape[1:3] in {(12, 16), (24, 32)}
        assert out.masks.shape[2:] == out.frames.shape[1:3]
        assert out.frames.dtype == np.uint8 and out.masks.dtype == bool
        _assert_masks_cover_their_colour(out, [RED])
        seen.add(out.frames.shape[1])
    assert seen == {12, 24}

    wide = _square_clip(10, 100, [(2, 8, 40, 60, RED)])
    out = augment_video_clip(wide, VideoAugmentConfig(min_sizes=(40,), max_size=200), np.random.default_rng(0))
    assert out.frames.shape == (2, 20, 200, 3)
    _assert_masks_cover_their_colour(out, [RED])


def test_video_clip_is_flipped_as_a_whole() -> None:
    # An asymmetric pattern in a different place in each frame: a flip of one frame only would show.
    clip = _square_clip(8, 12, [(1, 4, 0, 3, RED)])
    clip.frames[1, 5:8, 2:6] = BLUE
    same_size = VideoAugmentConfig(min_sizes=(8,), flip_prob=0.5)
    flips = set()
    for seed in range(16):
        out = augment_video_clip(clip, same_size, np.random.default_rng(seed))
        flipped = bool(np.array_equal(out.frames, clip.frames[:, :, ::-1]))
        if not flipped:
            np.testing.assert_array_equal(out.frames, clip.frames)
        np.testing.assert_array_equal(out.masks, clip.masks[..., ::-1] if flipped else clip.masks)
        flips.add(flipped)
    assert flips == {True, False}

    always = augment_video_clip(clip, VideoAugmentConfig(min_sizes=(8,), flip_prob=1.0), np.random.default_rng(0))
    assert _is_colour(always.frames[0, 1:4, 9:12], RED).all()
    assert always.masks[0, :, 1:4, 9:12].all() and always.masks.sum() == 2 * 9


def test_video_clip_drops_instances_that_vanish_when_shrunk() -> None:
    clip = _square_clip(40, 40, [(0, 20, 0, 20, RED), (30, 31, 30, 31, BLUE)])
    out = augment_video_clip(clip, VideoAugmentConfig(min_sizes=(4,), flip_prob=0.0), np.random.default_rng(0))
    # A 1-pixel object at a 10x reduction misses every sampled pixel centre (centres sit at 5, 15, 25, 35).
    assert out.labels.tolist() == [0]
    assert out.masks.shape == (1, 2, 4, 4)
    assert out.masks[0, :, :2, :2].all() and out.masks[0].sum() == 2 * 4


def test_augmentations_are_deterministic_for_a_seed() -> None:
    clip = _square_clip(30, 50, [(5, 20, 10, 30, RED), (20, 28, 35, 48, BLUE)])
    video_cfg = VideoAugmentConfig(min_sizes=(12, 18, 24))
    image_cfg = ImageAugmentConfig(image_size=32)
    for augment, cfg in ((augment_video_clip, video_cfg), (augment_image_clip, image_cfg)):
        outputs = [augment(clip, cfg, np.random.default_rng(seed)) for seed in (5, 5, 6, 7, 8)]  # type: ignore[operator]
        np.testing.assert_array_equal(outputs[0].frames, outputs[1].frames)
        np.testing.assert_array_equal(outputs[0].masks, outputs[1].masks)
        assert any(
            out.frames.shape != outputs[0].frames.shape or not np.array_equal(out.frames, outputs[0].frames)
            for out in outputs[2:]
        )


def test_image_clip_at_scale_one_is_unchanged_or_flipped() -> None:
    clip = _square_clip(64, 64, [(3, 10, 2, 9, RED)], num_frames=1)
    plain = ImageAugmentConfig(image_size=64, min_scale=1.0, max_scale=1.0, flip_prob=0.0)
    out = augment_image_clip(clip, plain, np.random.default_rng(0))
    np.testing.assert_array_equal(out.frames, clip.frames)
    np.testing.assert_array_equal(out.masks, clip.masks)

    flipped = augment_image_clip(
        clip, ImageAugmentConfig(image_size=64, min_scale=1.0, max_scale=1.0, flip_prob=1.0), np.random.default_rng(0)
    )
    np.testing.assert_array_equal(flipped.frames, clip.frames[:, :, ::-1])
    np.testing.assert_array_equal(flipped.masks, clip.masks[..., ::-1])


def test_image_clip_pads_bottom_right_with_pad_value_and_empty_masks() -> None:
    clip = _square_clip(40, 20, [(0, 40, 0, 20, RED)], num_frames=1)
    cfg = ImageAugmentConfig(image_size=64, min_scale=0.5, max_scale=0.5, flip_prob=0.0, pad_value=77.0)
    out = augment_image_clip(clip, cfg, np.random.default_rng(0))
    # Target 32: scale min(32 / 40, 32 / 20) = 0.8 gives 32 x 16, padded to 64 x 64.
    assert out.frames.shape == (1, 64, 64, 3)
    assert out.masks.shape == (1, 1, 64, 64)
    assert (out.frames[0, :32, :16] == RED).all()
    assert (out.frames[0, 32:] == 77).all() and (out.frames[0, :, 16:] == 77).all()
    assert out.masks[0, 0, :32, :16].all()
    assert out.masks[0, 0].sum() == 32 * 16


def test_image_clip_output_is_image_size_and_masks_follow_the_pixels() -> None:
    clip = _square_clip(48, 40, [(10, 26, 20, 36, RED), (30, 44, 2, 14, BLUE)], num_frames=1)
    cfg = ImageAugmentConfig(image_size=64, min_scale=0.5, max_scale=2.0)
    for seed in range(10):
        out = augment_image_clip(clip, cfg, np.random.default_rng(seed))
        assert out.frames.shape == (1, 64, 64, 3)
        assert out.masks.shape[1:] == (1, 64, 64)
        _assert_masks_cover_their_colour(out, [RED, BLUE])


def test_image_clip_drops_instances_cropped_away() -> None:
    # 16 x 64 at scale 2 becomes 32 x 128; a 64-wide window is cut at a random column offset in [0, 64].
    clip = _square_clip(16, 64, [(4, 8, 0, 4, RED), (4, 8, 60, 64, BLUE)], num_frames=1)
    cfg = ImageAugmentConfig(image_size=64, min_scale=2.0, max_scale=2.0, flip_prob=0.0)
    kept_sets = set()
    for seed in range(40):
        out = augment_image_clip(clip, cfg, np.random.default_rng(seed))
        kept = tuple(out.labels.tolist())
        # An instance survives exactly when some of its colour is still in the crop.
        assert kept == tuple(n for n, colour in enumerate((RED, BLUE)) if _is_colour(out.frames, colour).any())
        assert out.masks.shape == (len(kept), 1, 64, 64)
        assert all(out.masks[n].any() for n in range(len(kept)))
        _assert_masks_cover_their_colour(out, [RED, BLUE])
        # Rows beyond the resized height are padding.
        assert (out.frames[0, 32:] == 128).all() and not out.masks[:, :, 32:].any()
        kept_sets.add(kept)
    assert {(), (0,), (1,)} <= kept_sets


def test_augment_configs_reject_unusable_values() -> None:
    with pytest.raises(TrainingError, match="min_sizes"):
        VideoAugmentConfig(min_sizes=())
    with pytest.raises(TrainingError, match="flip_prob"):
        VideoAugmentConfig(flip_prob=1.5)
    with pytest.raises(TrainingError, match="min_scale <= max_scale"):
        ImageAugmentConfig(min_scale=2.0, max_scale=1.0)
    with pytest.raises(TrainingError, match="pad_value"):
        ImageAugmentConfig(pad_value=300.0)


def test_image_clip_crop_offset_is_shared_by_both_axes_and_all_frames() -> None:
    # 24 x 24 at scale 2 (target 32) becomes 32 x 32: 16 pixels too many both ways. detectron2 draws one
    # fraction for both offsets, so the top-left square stays square whatever the offset.
    clip = _square_clip(24, 24, [(0, 12, 0, 12, RED)], num_frames=2)
    cfg = ImageAugmentConfig(image_size=16, min_scale=2.0, max_scale=2.0, flip_prob=0.0)
    sides = set()
    for seed in range(12):
        out = augment_image_clip(clip, cfg, np.random.default_rng(seed))
        np.testing.assert_array_equal(out.frames[0], out.frames[1])
        np.testing.assert_array_equal(out.masks[:, 0], out.masks[:, 1])
        if len(out.labels):
            rows, cols = np.nonzero(out.masks[0, 0])
            assert rows.min() == cols.min() == 0
            assert rows.max() == cols.max()
            sides.add(int(rows.max()))
    assert len(sides) > 3

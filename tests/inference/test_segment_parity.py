"""The streaming path returns the official final video results (video_tiny, zeroshot_video_tiny)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import ovformer_core.inference.segment as segment_module
from ovformer_core.checkpoints import load_weights
from ovformer_core.inference.segment import SegmentOptions, StreamingSegmenter, TrackResult
from ovformer_core.model.build import build_model
from ovformer_core.model.preprocess import normalize_and_pad
from tests.reference_fixtures import (
    MASK_PIXEL_FRACTION,
    REFERENCE,
    SCORE_ATOL,
    VIDEO_TINY,
    ZEROSHOT_TINY,
    tiny_config,
)


def run(
    video: bool, options: SegmentOptions, window: int, background: bool | None = None
) -> tuple[StreamingSegmenter, list[TrackResult]]:
    cfg = tiny_config(video=video)
    model = build_model(cfg).eval()
    checkpoint = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    segmenter = StreamingSegmenter(model, cfg, checkpoint.text_classifier, options, background_masks=background)
    for start in range(0, len(inputs["frames"]), window):
        stop = start + window
        segmenter.add_window(inputs["frames"][start:stop], inputs["clip_embeddings"][start:stop])
    results = segmenter.finish()
    segmenter.close()
    return segmenter, results


def decode(result: TrackResult) -> np.ndarray:
    return np.stack([mask_utils.decode(rle) for rle in result.rles]).astype(bool)


@pytest.mark.parametrize(("min_size", "background"), [(None, False), (70, False), (None, True)])
def test_semi_online_matches_official_final_result(min_size: int | None, background: bool):
    """The fixture ran without the mapper's resize; a shortest-edge target equal to the short side (70)
    takes the resize path and must leave every number unchanged; so must the mask worker thread."""
    segmenter, results = run(
        True,
        SegmentOptions(mode="semi-online", top_k=50, min_size=min_size, precision="fp32"),
        window=5,
        background=background,
    )
    assert segmenter.info is not None and segmenter.info.resized_size == (70, 100)
    matching = np.load(VIDEO_TINY / "matching.npz")["perms"]
    assert len(segmenter.tracks.permutations) == len(matching)
    for ours, theirs in zip(segmenter.tracks.permutations, matching, strict=True):
        np.testing.assert_array_equal(ours, theirs)

    final = np.load(VIDEO_TINY / "final.npz")
    mean_cls, mean_obj = segmenter.tracks.mean_logits()
    np.testing.assert_allclose(mean_cls.numpy(), final["merged_pred_logits"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(mean_obj.numpy(), final["merged_pred_object_logits"], rtol=1e-3, atol=1e-3)

    theirs = {
        (int(q), int(c)): i for i, (q, c) in enumerate(zip(final["topk_query"], final["pred_labels"], strict=True))
    }
    ours = {(r.slot, r.label): r for r in results}
    assert set(ours) == set(theirs) and len(results) == 50
    differing = 0
    for key, j in theirs.items():
        assert abs(ours[key].score - final["pred_scores"][j]) < SCORE_ATOL
        masks = decode(ours[key])
        assert masks.shape == final["pred_masks"][j].shape == (12, 70, 100)
        differing += int((masks != final["pred_masks"][j]).sum())
    assert differing <= MASK_PIXEL_FRACTION * final["pred_masks"].size


@pytest.mark.parametrize(("window", "background"), [(4, False), (12, True)])
def test_per_frame_zero_shot_matches_official_final_result(window, background: bool, monkeypatch: pytest.MonkeyPatch):
    """Window size, read-back chunking and the mask worker only change scheduling: results must be the same."""
    monkeypatch.setattr(segment_module, "STATS_FRAMES_PER_READ", 5)  # 12 frames: chunks of 5, 5, 2
    segmenter, results = run(
        False,
        SegmentOptions(mode="per-frame", top_k=10, min_size=None, window=3, precision="fp32"),
        window,
        background,
    )
    matching = np.load(ZEROSHOT_TINY / "matching.npz")["perms"]
    assert len(segmenter.tracks.permutations) == len(matching)
    for ours, theirs in zip(segmenter.tracks.permutations, matching, strict=True):
        np.testing.assert_array_equal(ours, theirs)

    final = np.load(ZEROSHOT_TINY / "final.npz")
    order = np.argsort(-final["scores"], kind="stable")
    results = sorted(results, key=lambda r: -r.score)
    assert len(results) == 10
    differing = 0
    for result, j in zip(results, order, strict=True):
        assert result.label == final["pred_classes"][j]
        assert abs(result.score - final["scores"][j]) < SCORE_ATOL
        differing += int((decode(result) != final["masks"][j]).sum())
    assert differing <= MASK_PIXEL_FRACTION * final["masks"].size


def test_reporting_threshold_drops_low_scores():
    _, results = run(True, SegmentOptions(mode="semi-online", top_k=50, min_size=None, score_threshold=0.6), window=5)
    final = np.load(VIDEO_TINY / "final.npz")
    assert len(results) == int((final["pred_scores"] >= 0.6).sum())
    assert all(r.score >= 0.6 for r in results)


def test_the_segmenter_resizes_like_the_official_mapper():
    """With ``min_size`` set, the network sees the official resize (resize/resize_cases.npz) of each frame."""
    cfg = tiny_config(video=True)
    model = build_model(cfg).eval()
    with np.load(REFERENCE / "resize" / "resize_cases.npz") as cases:
        frame, official = cases["landscape_up_input"], cases["landscape_up_output"]
        min_size, max_size = int(cases["min_size_test"]), int(cases["max_size_test"])
    options = SegmentOptions(mode="semi-online", min_size=min_size, max_size=max_size)
    segmenter = StreamingSegmenter(model, cfg, torch.zeros(512, 13), options)
    pixels, info = segmenter._preprocess(np.stack([frame, frame]))
    assert info.original_size == (70, 100) and info.resized_size == official.shape[:2] == (360, 514)
    expected = normalize_and_pad(torch.from_numpy(official)[None], cfg.pixel_mean, cfg.pixel_std, 32)
    assert pixels.shape == (2, *expected.shape[1:])
    torch.testing.assert_close(pixels[0], expected[0], rtol=0, atol=0)

"""Scores, top-k and masks back at the original size (inference/postprocess.py)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

import ovformer_core.inference.postprocess as postprocess
from ovformer_core.inference.postprocess import masks_to_original, pair_scores, top_k_pairs
from ovformer_core.model.preprocess import PreprocessInfo


def test_pair_scores_formula_drops_background_and_no_object() -> None:
    torch.manual_seed(0)
    class_logits, object_logits = torch.randn(4, 6), torch.randn(4, 2)
    scores = pair_scores(class_logits, object_logits)
    assert scores.shape == (4, 5)
    for q, c in itertools.product(range(4), range(5)):
        p_object = torch.softmax(object_logits[q], 0)[0]
        expected = (torch.sigmoid(class_logits[q, c]) * p_object).sqrt()
        torch.testing.assert_close(scores[q, c], expected)


def test_top_k_pairs_equals_brute_force() -> None:
    torch.manual_seed(1)
    scores = torch.rand(7, 5)
    values, labels, queries = top_k_pairs(scores, 6)
    best = sorted(((float(scores[q, c]), q, c) for q in range(7) for c in range(5)), reverse=True)[:6]
    assert sorted(zip(values.tolist(), queries.tolist(), labels.tolist(), strict=True), reverse=True) == best
    assert len(top_k_pairs(scores, 1000)[0]) == 35  # k beyond the grid: every pair


def test_masks_to_original_upsamples_crops_and_resizes(monkeypatch) -> None:
    torch.manual_seed(2)
    info = PreprocessInfo(original_size=(9, 13), resized_size=(18, 26), padded_size=(32, 32))
    logits = torch.randn(5, 2, 8, 8)
    x = F.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)[:, :, :18, :26]
    expected = F.interpolate(x, size=(9, 13), mode="bilinear", align_corners=False) > 0
    monkeypatch.setattr(postprocess, "UPSAMPLE_CHUNK", 2)  # chunks of 2, 2, 1 queries: the same answer
    masks = masks_to_original(logits, info)
    assert masks.dtype == torch.bool and masks.shape == (5, 2, 9, 13)
    assert torch.equal(masks, expected)
    same_size = PreprocessInfo(original_size=(18, 26), resized_size=(18, 26), padded_size=(32, 32))
    assert masks_to_original(logits, same_size).shape == (5, 2, 18, 26)  # no second resize

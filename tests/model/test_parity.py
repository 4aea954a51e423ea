"""The network reproduces the official per-clip raw outputs and intermediates (video_tiny, image_tiny)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovformer_core.checkpoints import load_weights
from ovformer_core.model.build import build_model
from ovformer_core.model.preprocess import normalize_and_pad
from tests.reference_fixtures import (
    FLOAT_ATOL,
    FLOAT_RTOL,
    IMAGE_TINY,
    VIDEO_TINY,
    tiny_config,
)


def assert_close(actual: torch.Tensor, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual.detach().cpu().numpy(), expected, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


@pytest.fixture(scope="module")
def video_model():
    cfg = tiny_config(video=True)
    model = build_model(cfg).eval()
    checkpoint = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    return cfg, model, checkpoint.text_classifier


@pytest.fixture(scope="module")
def image_model():
    cfg = tiny_config(video=False)
    model = build_model(cfg).eval()
    checkpoint = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    return cfg, model, checkpoint.text_classifier


@torch.no_grad()
def test_video_clip_raw_outputs_match_official(video_model):
    cfg, model, text_classifier = video_model
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    expected = np.load(VIDEO_TINY / "clip_outputs.npz")
    pixels = normalize_and_pad(torch.from_numpy(inputs["frames"]), cfg.pixel_mean, cfg.pixel_std, 32)
    embeds = torch.from_numpy(inputs["clip_embeddings"])
    for i, (start, stop) in enumerate(expected["clip_ranges"]):
        out = model(pixels[None, start:stop], embeds[None, start:stop], text_classifier)
        assert_close(out.class_logits[0], expected[f"clip{i}_pred_logits"])
        assert_close(out.object_logits[0], expected[f"clip{i}_pred_object_logits"])
        assert_close(out.mask_logits[0], expected[f"clip{i}_pred_masks"])
        assert_close(out.query_embeds[0], expected[f"clip{i}_pred_embds"])
        assert torch.all(out.class_logits[0, :, -1] == 0)  # zero background column


@torch.no_grad()
def test_video_clip0_intermediates_match_official(video_model):
    cfg, model, text_classifier = video_model
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    expected = np.load(VIDEO_TINY / "intermediates_clip0.npz")
    pixels = normalize_and_pad(torch.from_numpy(inputs["frames"][:5]), cfg.pixel_mean, cfg.pixel_std, 32)
    np.testing.assert_array_equal(pixels.numpy(), expected["normalized_padded_clip0"])
    features = model.backbone(pixels)
    for level in (2, 3, 4, 5):
        assert_close(features[f"res{level}"], expected[f"backbone_res{level}"])
    decoded = model.pixel_decoder(features)
    assert_close(decoded.mask_features, expected["pixel_decoder_mask_features"])
    for i, feats in enumerate(decoded.multi_scale):
        assert_close(feats, expected[f"pixel_decoder_multi_scale_{i}"])
    out = model(pixels[None], torch.from_numpy(inputs["clip_embeddings"][:5])[None], text_classifier, with_aux=True)
    assert len(out.aux) == 3
    for k, heads in enumerate(out.aux):
        assert_close(heads.class_logits[0], expected[f"aux{k}_pred_logits"])
        assert_close(heads.object_logits[0], expected[f"aux{k}_pred_object_logits"])
        assert_close(heads.mask_logits[0], expected[f"aux{k}_pred_masks"])


@torch.no_grad()
def test_image_model_matches_official_raw_outputs(image_model):
    cfg, model, text_classifier = image_model
    inputs = np.load(IMAGE_TINY / "inputs.npz")
    raw = np.load(IMAGE_TINY / "raw_outputs.npz")
    image = torch.from_numpy(inputs["image"])[None]
    pixels = normalize_and_pad(image, cfg.pixel_mean, cfg.pixel_std, 32)
    out = model(pixels[None], torch.from_numpy(inputs["clip_embedding"])[None], text_classifier)
    assert_close(out.class_logits[0], raw["pred_logits"])
    assert_close(out.object_logits[0], raw["pred_object_logits"])
    assert_close(out.mask_logits[0, :, 0], raw["pred_masks"])
    assert_close(out.query_embeds[0], raw["pred_embds"])


@torch.no_grad()
def test_one_frame_video_equals_image_batch(image_model):
    """The image model runs B frames as B one-frame clips: batching must not change outputs."""
    cfg, model, text_classifier = image_model
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    pixels = normalize_and_pad(torch.from_numpy(inputs["frames"][:3]), cfg.pixel_mean, cfg.pixel_std, 32)
    embeds = torch.from_numpy(inputs["clip_embeddings"][:3])
    batched = model(pixels[:, None], embeds[:, None], text_classifier)
    for i in range(3):
        single = model(pixels[i : i + 1, None], embeds[i : i + 1, None], text_classifier)
        torch.testing.assert_close(batched.class_logits[i], single.class_logits[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(batched.mask_logits[i], single.mask_logits[0], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_level_attention_masks_equal_full_resolution_ones(video_model):
    """Predicting the steering masks at each level's size is the official computation, reordered."""
    cfg, model, text_classifier = video_model
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    pixels = normalize_and_pad(torch.from_numpy(inputs["frames"][:5]), cfg.pixel_mean, cfg.pixel_std, 32)
    embeds = torch.from_numpy(inputs["clip_embeddings"][:5])[None]
    assert model.decoder.attention_masks == "level"
    fast = model(pixels[None], embeds, text_classifier)
    model.decoder.attention_masks = "full"
    try:
        full = model(pixels[None], embeds, text_classifier)
    finally:
        model.decoder.attention_masks = "level"
    assert fast.aux == [] and full.aux == []
    torch.testing.assert_close(fast.class_logits, full.class_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.mask_logits, full.mask_logits, rtol=1e-4, atol=1e-4)

"""The gather fast path of deformable attention computes the reference (grid_sample) function."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ovformer_core.checkpoints import load_weights
from ovformer_core.model.build import build_model
from ovformer_core.model.deform_attn import gather_table, ms_deform_attn_gather, ms_deform_attn_sample
from tests.reference_fixtures import VIDEO_TINY, tiny_config


def test_gather_equals_grid_sample_including_points_outside_the_maps():
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (6, 10), (12, 20)]
    total = sum(h * w for h, w in shapes)
    value = torch.randn(2, total, 4, 8, generator=gen)
    # locations from -0.3 to 1.3: a third of the points fall partly or wholly outside
    locations = torch.rand(2, 50, 4, 3, 4, 2, generator=gen) * 1.6 - 0.3
    locations[0, 0, 0, 0, 0] = torch.tensor([0.0, 1.0])  # exactly on the edges
    locations[0, 0, 0, 0, 1] = torch.tensor([1.0, 0.0])
    weights = torch.rand(2, 50, 4, 3, 4, generator=gen)
    reference = ms_deform_attn_sample(value, shapes, locations, weights)
    fast = ms_deform_attn_gather(gather_table(value, shapes), shapes, locations, weights)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_pixel_decoder_paths_and_chunking_agree():
    cfg = tiny_config()
    features = np.load(VIDEO_TINY / "intermediates_clip0.npz")
    inputs = {f"res{i}": torch.from_numpy(features[f"backbone_res{i}"]) for i in range(2, 6)}
    outputs = {}
    for impl, chunk in (("reference", 512), ("gather", 512), ("gather", 37)):
        variant = replace(cfg, pixel_decoder=replace(cfg.pixel_decoder, deform_attn_impl=impl, chunk_size=chunk))
        model = build_model(variant).eval()
        load_weights(model, variant, VIDEO_TINY / "model.pth")
        outputs[(impl, chunk)] = model.pixel_decoder(inputs)
    reference = outputs[("reference", 512)]
    for key in (("gather", 512), ("gather", 37)):
        torch.testing.assert_close(outputs[key].mask_features, reference.mask_features, rtol=1e-4, atol=1e-4)
        for ours, theirs in zip(outputs[key].multi_scale, reference.multi_scale, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)

"""bfloat16 runs the whole network in bf16 (the pixel decoder included) and stays within the accuracy guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovformer_core.checkpoints import load_weights
from ovformer_core.inference import precision as precision_module
from ovformer_core.inference.precision import resolve_precision
from ovformer_core.model.build import build_model
from ovformer_core.model.preprocess import normalize_and_pad
from tests.inference.fixture_checks import check_video_tiny_final, check_video_tiny_raw, check_zeroshot_final
from tests.reference_fixtures import (
    BF16_RAW_RELATIVE,
    VIDEO_TINY,
    tiny_config,
)


@torch.inference_mode()
def test_pixel_decoder_runs_in_bf16_with_float32_sampling():
    cfg = tiny_config(video=True)
    model = build_model(cfg).eval()
    checkpoint = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    pixels = normalize_and_pad(torch.from_numpy(inputs["frames"][:5]), cfg.pixel_mean, cfg.pixel_std, 32)
    locations_dtypes = []
    layer = model.pixel_decoder.encoder_layers[0].self_attn
    hook = layer.sampling_offsets.register_forward_hook(lambda m, i, o: locations_dtypes.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        decoded = model.pixel_decoder(model.backbone(pixels))
        out = model(pixels[None], torch.from_numpy(inputs["clip_embeddings"][:5])[None], checkpoint.text_classifier)
    hook.remove()
    assert decoded.mask_features.dtype == torch.bfloat16
    assert set(locations_dtypes) == {torch.float32}
    expected = np.load(VIDEO_TINY / "clip_outputs.npz")
    for name, value in [("pred_logits", out.class_logits), ("pred_masks", out.mask_logits)]:
        reference = expected[f"clip0_{name}"]
        scale = max(1.0, float(np.abs(reference).max()))
        assert np.abs(value[0].float().numpy() - reference).max() <= BF16_RAW_RELATIVE * scale


def test_fp16_keeps_the_pixel_decoder_in_float32():
    cfg = tiny_config(video=True)
    model = build_model(cfg).eval()
    features = {"res2": torch.randn(1, 32, 16, 16), "res3": torch.randn(1, 64, 8, 8)}
    features |= {"res4": torch.randn(1, 128, 4, 4), "res5": torch.randn(1, 256, 2, 2)}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        assert model.pixel_decoder(features).mask_features.dtype == torch.float32


def test_bf16_final_results_within_guard_of_the_official():
    check_video_tiny_final(torch.device("cpu"), "bf16")


def test_fixture_checks_hold_fp32_to_the_fixtures():
    """The device-agnostic checks used by the GPU check pass in fp32 on the CPU, to the fixtures' tolerances."""
    assert check_video_tiny_raw(torch.device("cpu"), "fp32")["max_abs_over_scale"] < 1e-3
    assert check_zeroshot_final(torch.device("cpu"), "fp32")["topk_overlap"] == 1.0


@pytest.mark.parametrize(
    ("features", "expected"),
    [({"amx_bf16": True}, "bf16"), ({"avx512_bf16": True}, "bf16"), ({"avx2": True}, "fp32")],
)
def test_auto_precision_on_cpu(monkeypatch: pytest.MonkeyPatch, features: dict, expected: str):
    monkeypatch.setattr(precision_module.torch.cpu, "get_capabilities", lambda: features)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # an explicit choice is kept
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp32")])
def test_auto_precision_on_cuda(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: str):
    asked = []

    def device_capability(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return capability

    monkeypatch.setattr(precision_module.torch.cuda, "get_device_capability", device_capability)
    # torch also reports emulated bf16 (a T4's) as supported: that must not decide
    monkeypatch.setattr(precision_module.torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("auto", torch.device("cuda", 1)) == expected
    assert asked == [torch.device("cuda", 1)]  # the GPU the run uses, not the current one

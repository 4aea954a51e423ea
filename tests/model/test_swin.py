"""Swin backbone: official key layout, numerical parity with the official model, window mechanics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ovformer_core.config import SwinConfig
from ovformer_core.errors import OVFormerError
from ovformer_core.model.swin import (
    SHIFTED_WINDOW_MASK_VALUE,
    PatchMerging,
    SwinTransformer,
    WindowAttention,
    merge_windows,
    relative_position_index,
    shifted_window_mask,
    split_windows,
)
from tests.reference_fixtures import VIDEO_TINY, read_manifest


def tiny_config() -> SwinConfig:
    """The Swin of the video_tiny fixture, read from its config.json."""
    spec = json.loads((VIDEO_TINY / "config.json").read_text())["backbone"]
    assert spec["ape"] is False and spec["qk_scale"] is None
    return SwinConfig(
        patch_size=spec["patch_size"],
        embed_dim=spec["embed_dim"],
        depths=tuple(spec["depths"]),
        num_heads=tuple(spec["num_heads"]),
        window_size=spec["window_size"],
        mlp_ratio=spec["mlp_ratio"],
        qkv_bias=spec["qkv_bias"],
        patch_norm=spec["patch_norm"],
        layer_norm_eps=spec["layernorm_eps"],
    )


def official_backbone_weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    prefix = "backbone."
    return {name.removeprefix(prefix): value for name, value in state.items() if name.startswith(prefix)}


def test_tiny_swin_matches_official_outputs() -> None:
    model = SwinTransformer(tiny_config()).eval()
    weights = official_backbone_weights(VIDEO_TINY / "model.pth")
    own_index = {name: buf.clone() for name, buf in model.state_dict().items() if "relative_position_index" in name}
    model.load_state_dict(weights, strict=True)
    # Our relative position index formula must produce the official buffer bit for bit.
    for name, index in own_index.items():
        assert torch.equal(index, weights[name]), name

    arrays = np.load(VIDEO_TINY / "intermediates_clip0.npz")
    images = torch.from_numpy(arrays["normalized_padded_clip0"])  # [5, 3, 96, 128]
    with torch.no_grad():
        features = model(images)
    assert list(features) == ["res2", "res3", "res4", "res5"]
    for name, feature in features.items():
        expected = torch.from_numpy(arrays[f"backbone_{name}"])
        assert feature.shape == expected.shape, name
        # Observed max abs error ~3e-6 (values up to ~3.7).
        torch.testing.assert_close(feature, expected, rtol=1e-3, atol=1e-3, msg=name)


def test_swin_b_state_dict_matches_official_manifest() -> None:
    model = SwinTransformer(SwinConfig())
    ours = {
        f"backbone.{name}": (list(value.shape), str(value.dtype).removeprefix("torch."))
        for name, value in model.state_dict().items()
    }
    expected = read_manifest("video_ovformer_SwinB", prefix="backbone.")
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    mismatched = {name: (ours[name], expected[name]) for name in expected if ours[name] != expected[name]}
    assert mismatched == {}
    # The index is a buffer (persistent, in the state dict above); the bias table is learnt.
    buffers = dict(model.named_buffers())
    assert "layers.2.blocks.17.attn.relative_position_index" in buffers
    params = dict(model.named_parameters())
    assert "layers.2.blocks.17.attn.relative_position_bias_table" in params
    assert model.out_channels == {"res2": 128, "res3": 256, "res4": 512, "res5": 1024}
    assert model.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def test_relative_position_index_brute_force() -> None:
    window = 3
    index = relative_position_index(window)
    for i in range(window * window):
        for j in range(window * window):
            d_row = i // window - j // window
            d_col = i % window - j % window
            assert index[i, j] == (d_row + window - 1) * (2 * window - 1) + (d_col + window - 1)


def test_windows_round_trip() -> None:
    x = torch.randn(2, 8, 12, 5)
    windows = split_windows(x, 4)
    assert windows.shape == (2 * 2 * 3, 16, 5)
    # Window 1 of batch 0 is rows 0..3, cols 4..7, row-major.
    torch.testing.assert_close(windows[1], x[0, 0:4, 4:8].reshape(16, 5))
    torch.testing.assert_close(merge_windows(windows, 4, 8, 12), x)


@pytest.mark.parametrize(("height", "width", "window"), [(14, 21, 7), (7, 7, 7), (12, 24, 6)])
def test_shifted_window_mask_separates_wrapped_tokens(height: int, width: int, window: int) -> None:
    shift = window // 2
    mask = shifted_window_mask(height, width, window, shift, torch.device("cpu"))
    # After rolling by -shift, a token at shifted position p came from (p + shift) mod L; it wrapped
    # around iff p >= L - shift. Two tokens of one window may attend iff they wrapped the same way
    # on both axes (they were neighbours before the roll).
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    wrapped = torch.stack([rows >= height - shift, cols >= width - shift], dim=-1).long()
    wrapped_windows = split_windows(wrapped[None], window)  # [nW, N, 2]
    separated = (wrapped_windows[:, :, None, :] != wrapped_windows[:, None, :, :]).any(-1)
    expected = torch.where(separated, SHIFTED_WINDOW_MASK_VALUE, 0.0)
    assert mask.shape == expected.shape
    torch.testing.assert_close(mask, expected)
    assert separated.any()


def test_window_attention_equals_explicit_softmax() -> None:
    torch.manual_seed(0)
    dim, heads, window, batch = 16, 2, 4, 3
    attn = WindowAttention(dim, heads, window, qkv_bias=True).eval()
    num_windows = 2
    windows = torch.randn(batch * num_windows, window * window, dim)
    mask = shifted_window_mask(4, 8, window, window // 2, torch.device("cpu"))
    assert mask.shape[0] == num_windows
    for window_mask in (None, mask):
        with torch.no_grad():
            out = attn(windows, window_mask)
            qkv = attn.qkv(windows).view(batch * num_windows, window * window, 3, heads, dim // heads)
            query, key, value = qkv.permute(2, 0, 3, 1, 4)
            logits = (query * (dim // heads) ** -0.5) @ key.transpose(-2, -1) + attn.position_bias()
            if window_mask is not None:
                logits = logits + window_mask.repeat(batch, 1, 1).unsqueeze(1)
            mixed = (logits.softmax(-1) @ value).transpose(1, 2).reshape(batch * num_windows, -1, dim)
            expected = attn.proj(mixed)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_patch_merging_pads_odd_sizes() -> None:
    torch.manual_seed(0)
    merge = PatchMerging(4, layer_norm_eps=1e-5).eval()
    x = torch.randn(1, 3, 5, 4)
    with torch.no_grad():
        out = merge(x)
        assert out.shape == (1, 2, 3, 8)
        # Bottom-right output cell sees only x[2, 4]; its three other neighbours are zero padding.
        zeros = torch.zeros(4)
        corner = torch.cat([x[0, 2, 4], zeros, zeros, zeros])
        torch.testing.assert_close(out[0, 1, 2], merge.reduction(merge.norm(corner)))
        # Top-left cell: order (even,even), (odd,even), (even,odd), (odd,odd).
        first = torch.cat([x[0, 0, 0], x[0, 1, 0], x[0, 0, 1], x[0, 1, 1]])
        torch.testing.assert_close(out[0, 0, 0], merge.reduction(merge.norm(first)))


def test_any_input_size_and_frames_are_independent() -> None:
    torch.manual_seed(0)
    model = SwinTransformer(tiny_config()).eval()
    images = torch.randn(3, 3, 50, 70)  # neither a multiple of 32 nor of patch * window
    with torch.no_grad():
        features = model(images)
        single = model(images[1:2])
    shapes = {name: tuple(feature.shape) for name, feature in features.items()}
    assert shapes == {
        "res2": (3, 32, 13, 18),
        "res3": (3, 64, 7, 9),
        "res4": (3, 128, 4, 5),
        "res5": (3, 256, 2, 3),
    }
    for name in features:
        torch.testing.assert_close(single[name], features[name][1:2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        SwinConfig(depths=(2, 2, 2), num_heads=(1, 2, 4)),
        SwinConfig(embed_dim=30, num_heads=(4, 8, 16, 32)),
        SwinConfig(window_size=0),
    ],
)
def test_invalid_config_is_a_user_error(bad: SwinConfig) -> None:
    with pytest.raises(OVFormerError):
        SwinTransformer(bad)

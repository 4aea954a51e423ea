"""The shared blocks of model/layers.py against torch's own definitions (post-norm as the official decoder)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ovformer_core.model.layers import MLP, AttentionLayer, Conv2dNorm, FFNLayer, sine_position_encoding


def test_mlp_has_relu_between_layers_only() -> None:
    torch.manual_seed(0)
    mlp = MLP(4, 8, 3, num_layers=3)
    x = torch.randn(5, 4)
    a, b, c = mlp.layers
    torch.testing.assert_close(mlp(x), c(F.relu(b(F.relu(a(x))))))  # no ReLU after the last layer
    assert [layer.out_features for layer in mlp.layers] == [8, 8, 3]


@pytest.mark.parametrize("pre_norm", [False, True])
def test_attention_layer_is_residual_attention_with_layer_norm(pre_norm: bool) -> None:
    torch.manual_seed(1)
    layer = AttentionLayer(8, num_heads=2, pre_norm=pre_norm).eval()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.5, 0.5)
    queries, memory = torch.randn(3, 2, 8), torch.randn(7, 2, 8)
    query_pos, memory_pos = torch.randn(3, 2, 8), torch.randn(7, 2, 8)
    x = layer.norm(queries) if pre_norm else queries
    attended = layer.attn(x + query_pos, memory + memory_pos, memory, need_weights=False)[0]
    expected = queries + attended if pre_norm else layer.norm(queries + attended)
    torch.testing.assert_close(layer(queries, memory, query_pos, memory_pos), expected)
    # Self-attention: positions on queries and keys, not on values.
    self_attended = layer.attn(x + query_pos, x + query_pos, x, need_weights=False)[0]
    expected = queries + self_attended if pre_norm else layer.norm(queries + self_attended)
    torch.testing.assert_close(layer(queries, query_pos=query_pos), expected)


def test_a_blocked_key_gets_no_attention() -> None:
    torch.manual_seed(2)
    layer = AttentionLayer(4, num_heads=1).eval()
    queries, memory = torch.randn(2, 1, 4), torch.randn(3, 1, 4)
    changed = memory.clone()
    changed[2] += 100.0  # only the blocked key changes
    mask = torch.tensor([[[False, False, True]] * 2])  # [B * heads, Lq, Lk]
    torch.testing.assert_close(layer(queries, memory, attn_mask=mask), layer(queries, changed, attn_mask=mask))


def test_ffn_layer() -> None:
    torch.manual_seed(3)
    ffn = FFNLayer(6, 12)
    x = torch.randn(4, 6)
    torch.testing.assert_close(ffn(x), ffn.norm(x + ffn.linear2(F.relu(ffn.linear1(x)))))


def test_sine_position_encoding_values_and_shapes() -> None:
    pos = sine_position_encoding(2, 3, 4, num_feats=8, temporal=False, device=torch.device("cpu"))
    assert pos.shape == (2, 16, 3, 4) and pos.dtype == torch.float32
    torch.testing.assert_close(pos[0], pos[1])  # 2-D: every frame the same
    # y part, channel 0 (sin, frequency 1) at row 0: normalised position 1 / (3 + eps) * 2pi.
    assert math.isclose(float(pos[0, 0, 0, 0]), math.sin(1 / (3 + 1e-6) * 2 * math.pi), rel_tol=1e-5)
    # x part starts at channel 8, channel 9 is cos: x = 4 (last column) -> 2pi.
    assert math.isclose(float(pos[0, 9, 0, 3]), math.cos(4 / (4 + 1e-6) * 2 * math.pi), abs_tol=1e-5)
    video = sine_position_encoding(2, 3, 4, num_feats=8, temporal=True, device=torch.device("cpu"))
    assert not torch.allclose(video[0], video[1])  # 3-D: frames differ by the time part
    torch.testing.assert_close(video[1] - video[0], (video[1] - pos[1]) - (video[0] - pos[0]))


def test_conv2d_norm_keeps_the_size_and_applies_norm_then_relu() -> None:
    torch.manual_seed(4)
    conv = Conv2dNorm(3, 5, 3, norm=torch.nn.GroupNorm(1, 5), relu=True)
    assert conv.bias is None  # a norm follows: no bias, as detectron2's Conv2d
    x = torch.randn(2, 3, 6, 7)
    out = conv(x)
    assert out.shape == (2, 5, 6, 7) and (out >= 0).all()
    torch.testing.assert_close(out, F.relu(conv.norm(F.conv2d(x, conv.weight, padding=1))))

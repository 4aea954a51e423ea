"""ResNet-50 backbone (timm + frozen BN) and ``build_backbone``: official keys, frozen BN, timm parity."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
from torch import nn

from ovformer_core.checkpoints import is_dropped_backbone_key
from ovformer_core.config import BackboneConfig, SwinConfig
from ovformer_core.errors import OVFormerError
from ovformer_core.model.backbone import (
    FEATURE_STRIDES,
    BNFoldedConv2d,
    FoldedFrozenBatchNorm2d,
    ResNet50Backbone,
    build_backbone,
)
from ovformer_core.model.swin import SwinTransformer
from tests.reference_fixtures import read_manifest


def randomize_batch_norm_stats(module: nn.Module, seed: int) -> None:
    """Give every (frozen or plain) BN non-trivial statistics and affine terms."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for child in module.modules():
            if hasattr(child, "running_var") and hasattr(child, "running_mean"):
                size = child.running_mean.shape
                child.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                child.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                child.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                child.bias.copy_(torch.randn(size, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def resnet() -> ResNet50Backbone:
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(kind="resnet50"))
    assert isinstance(backbone, ResNet50Backbone)
    return backbone


def test_r50_state_dict_matches_official_manifest(resnet: ResNet50Backbone) -> None:
    manifest = read_manifest("video_ovformer_R50", prefix="backbone.")
    dropped = sorted(name for name in manifest if is_dropped_backbone_key(name))
    assert len(dropped) == 53
    expected = {name: spec for name, spec in manifest.items() if not is_dropped_backbone_key(name)}
    ours = {
        f"backbone.{name}": (list(value.shape), str(value.dtype).removeprefix("torch."))
        for name, value in resnet.state_dict().items()
    }
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {name: ours[name] for name in expected if ours[name] != expected[name]} == {}


def test_r50_batch_norm_is_frozen(resnet: ResNet50Backbone) -> None:
    bn_suffixes = ("bn1", "bn2", "bn3", "downsample.1")
    bn_names = [name for name, _ in resnet.named_modules() if name.endswith(bn_suffixes)]
    assert len(bn_names) == 53
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in resnet.modules())
    param_names = [name for name, _ in resnet.named_parameters()]
    assert len(param_names) == 53  # the convolutions only
    assert all(isinstance(resnet.get_submodule(name.rsplit(".", 1)[0]), nn.Conv2d) for name in param_names)
    buffer_names = {name for name, _ in resnet.named_buffers()}
    assert "base.layer3.5.bn2.running_var" in buffer_names and "base.layer3.5.bn2.weight" in buffer_names

    randomize_batch_norm_stats(resnet, seed=1)
    before = {name: value.clone() for name, value in resnet.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)
    resnet.eval()
    with torch.no_grad():
        eval_out = resnet(images)
        resnet.train()
        train_out = resnet(images)
    resnet.eval()
    for name, value in resnet.state_dict().items():
        assert torch.equal(value, before[name]), name
    for name in eval_out:
        torch.testing.assert_close(train_out[name], eval_out[name])


def test_frozen_bn_follows_detectron2_formula() -> None:
    resnet = ResNet50Backbone(fold_bn=False)  # folded, the BN module itself is the identity
    randomize_batch_norm_stats(resnet, seed=2)
    bn = resnet.base.get_submodule("layer2.0.bn1")
    assert bn.eps == pytest.approx(1e-5)
    x = torch.randn(2, bn.weight.numel(), 5, 6)
    shape = (1, -1, 1, 1)
    expected = (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + 1e-5)
    expected = expected * bn.weight.view(shape) + bn.bias.view(shape)
    with torch.no_grad():
        torch.testing.assert_close(bn(x), expected, rtol=1e-5, atol=1e-5)


def test_folded_batch_norms_give_the_unfolded_network_with_the_same_checkpoint() -> None:
    torch.manual_seed(4)
    plain = ResNet50Backbone(fold_bn=False).eval()
    folded = ResNet50Backbone(fold_bn=True).eval()
    assert sum(isinstance(m, BNFoldedConv2d) for m in folded.modules()) == 53
    assert sum(isinstance(m, FoldedFrozenBatchNorm2d) for m in folded.modules()) == 53
    assert list(folded.state_dict()) == list(plain.state_dict())  # the same keys, in the same order
    images = torch.randn(2, 3, 64, 96)
    for seed in (5, 6):  # BN statistics loaded after folding are the ones applied
        randomize_batch_norm_stats(plain, seed=seed)
        folded.load_state_dict(plain.state_dict())
        with torch.no_grad():
            expected, got = plain(images), folded(images)
        for name in expected:
            assert (got[name] - expected[name]).abs().max() <= 2e-5 * expected[name].abs().max(), name
    folded.to(torch.float64)  # buffers moved by .to() are the ones read
    with torch.no_grad():
        assert folded(images.double())["res5"].dtype == torch.float64


def test_r50_equals_timm_resnet50_in_eval(resnet: ResNet50Backbone) -> None:
    torch.manual_seed(3)
    reference = timm.create_model("resnet50", pretrained=False).eval()
    randomize_batch_norm_stats(reference, seed=3)
    weights = {name: value for name, value in reference.state_dict().items() if not name.startswith("fc.")}
    # timm's state dict has num_batches_tracked like a recent official checkpoint: strict load drops it.
    assert any(is_dropped_backbone_key(name) for name in weights)
    resnet.base.load_state_dict(weights, strict=True)
    images = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        expected = reference.forward_intermediates(images, indices=[1, 2, 3, 4], intermediates_only=True)
        features = resnet(images)
    assert list(features) == ["res2", "res3", "res4", "res5"]
    for feature, stage in zip(features.values(), expected, strict=True):
        # Random weights let activations grow to ~1e3 in res5; the frozen BN's folded scale/shift
        # rounds differently from F.batch_norm, so compare relative to each stage's magnitude.
        assert feature.shape == stage.shape
        assert (feature - stage).abs().max() <= 1e-5 * stage.abs().max()


def test_r50_output_strides_and_channels(resnet: ResNet50Backbone) -> None:
    assert resnet.out_channels == {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
    assert resnet.out_strides == FEATURE_STRIDES
    with torch.no_grad():
        features = resnet(torch.randn(1, 3, 64, 64))
    for name, feature in features.items():
        stride = resnet.out_strides[name]
        assert tuple(feature.shape) == (1, resnet.out_channels[name], 64 // stride, 64 // stride)


def test_build_backbone_swin_and_errors() -> None:
    tiny = SwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4)
    swin = build_backbone(BackboneConfig(kind="swin", swin=tiny))
    assert isinstance(swin, SwinTransformer)
    assert swin.out_strides == FEATURE_STRIDES
    assert swin.out_channels == {"res2": 16, "res3": 32, "res4": 64, "res5": 128}
    with pytest.raises(OVFormerError, match="strides"):
        build_backbone(BackboneConfig(kind="swin", swin=dataclasses.replace(tiny, patch_size=2)))
    with pytest.raises(OVFormerError, match="unknown backbone kind"):
        build_backbone(BackboneConfig(kind="vit"))  # type: ignore[arg-type]


def test_dropped_key_rule() -> None:
    assert is_dropped_backbone_key("backbone.base.bn1.num_batches_tracked")
    assert is_dropped_backbone_key("base.layer1.0.downsample.1.num_batches_tracked")
    assert not is_dropped_backbone_key("backbone.base.bn1.running_var")

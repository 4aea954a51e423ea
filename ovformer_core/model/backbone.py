"""The two image backbones behind one contract: ``images [N, 3, H, W] -> {"res2".."res5": NCHW}``.

- ResNet-50: timm's ``resnet50`` taken ``features_only`` (stem + ``layer1``..``layer4``), every
  BatchNorm frozen. The official model wraps the same network as ``self.base`` of a detectron2
  backbone (``build_timm_backbone`` with ``resnet50_in21k``: plain Bottleneck ResNet-50 with max-pool
  stem), so our ``base.*`` names are the official ``backbone.base.*`` names. The official code calls
  the outputs ``layer2``..``layer5``; they are timm's ``layer1``..``layer4`` outputs, here ``res2``..``res5``.
- Swin: ``ovformer_core.model.swin.SwinTransformer`` (official D2SwinTransformer layout).

Frames of a video clip are stacked in the batch dimension; nothing here is video-specific.
"""

from __future__ import annotations

import timm
from timm.layers import freeze_batch_norm_2d
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ovformer_core.config import BackboneConfig
from ovformer_core.errors import OVFormerError
from ovformer_core.model.swin import SwinTransformer

#: Output names and their strides, the contract every backbone meets (D2 ``res2``..``res5``).
FEATURE_NAMES = ("res2", "res3", "res4", "res5")
FEATURE_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
#: ResNet-50 output channels (Bottleneck expansion 4 x 64/128/256/512).
RESNET50_CHANNELS = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
#: timm ``features_only`` indices of layer1..layer4 (index 0 is the stem activation).
RESNET_OUT_INDICES = (1, 2, 3, 4)


class ResNet50Backbone(nn.Module):
    """timm ResNet-50 with frozen BatchNorm; returns res2..res5 at strides 4/8/16/32.

    The network is ``self.base``, a timm ``FeatureListNet`` over ``resnet50`` (no ``fc``, no
    ``global_pool``). Every BatchNorm is a frozen BN: y = (x - mean) / sqrt(var + eps) * weight + bias
    with all four tensors float32 buffers, so ``train()`` changes nothing and no BN parameter is learnt.

    Attributes:
        out_channels: ``{"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}``.
        out_strides: ``{"res2": 4, "res3": 8, "res4": 16, "res5": 32}``.
    """

    def __init__(self, frozen_bn_eps: float = 1e-5) -> None:
        super().__init__()
        base = timm.create_model("resnet50", pretrained=False, features_only=True, out_indices=RESNET_OUT_INDICES)
        self.base = freeze_batch_norm_2d(base)
        for module in self.base.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.eps = frozen_bn_eps
        feature_info = self.base.feature_info
        self.out_channels = dict(zip(FEATURE_NAMES, feature_info.channels(), strict=True))
        self.out_strides = dict(zip(FEATURE_NAMES, feature_info.reduction(), strict=True))
        assert self.out_channels == RESNET50_CHANNELS, f"timm resnet50 channels {self.out_channels}"

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Args:
            images: ``[N, 3, H, W]`` normalised images.

        Returns:
            ``{"res2": [N, 256, H/4, W/4], ..., "res5": [N, 2048, H/32, W/32]}``.
        """
        return dict(zip(FEATURE_NAMES, self.base(images), strict=True))


#: What ``build_backbone`` returns: an ``nn.Module`` with ``out_channels``, ``out_strides`` and
#: ``forward(images [N, 3, H, W]) -> {"res2".."res5": [N, C_l, H/s_l, W/s_l]}``.
Backbone = ResNet50Backbone | SwinTransformer


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Build the backbone ``cfg.kind`` names and check its output contract.

    Args:
        cfg: Backbone settings.

    Returns:
        A module whose features are ``res2``..``res5`` at strides 4/8/16/32.

    Raises:
        OVFormerError: unknown ``kind`` or a configuration breaking the stride contract.
    """
    backbone: Backbone
    if cfg.kind == "resnet50":
        backbone = ResNet50Backbone(frozen_bn_eps=cfg.frozen_bn_eps)
    elif cfg.kind == "swin":
        backbone = SwinTransformer(cfg.swin)
    else:
        raise OVFormerError(f"unknown backbone kind {cfg.kind!r}; use 'resnet50' or 'swin'")
    _check_contract(cfg.kind, backbone.out_channels, backbone.out_strides)
    return backbone


def _check_contract(kind: str, out_channels: dict[str, int], out_strides: dict[str, int]) -> None:
    """The pixel decoder reads res2..res5 at strides 4..32; fail at build time, not mid-forward."""
    if tuple(out_channels) != FEATURE_NAMES or tuple(out_strides) != FEATURE_NAMES:
        raise OVFormerError(f"{kind} backbone outputs {list(out_channels)}, expected {list(FEATURE_NAMES)}")
    if out_strides != FEATURE_STRIDES:
        raise OVFormerError(
            f"{kind} backbone strides {out_strides} differ from {FEATURE_STRIDES}; use patch_size 4 for Swin"
        )

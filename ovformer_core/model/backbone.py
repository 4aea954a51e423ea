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
#: Frozen BNs of the ResNet-50, each right after a bias-free convolution (stem 1, 16 bottlenecks x 3, 4 downsamples).
RESNET50_BATCH_NORMS = 53
#: timm ``features_only`` indices of layer1..layer4 (index 0 is the stem activation).
RESNET_OUT_INDICES = (1, 2, 3, 4)


class FoldedFrozenBatchNorm2d(FrozenBatchNorm2d):
    """A frozen BN whose scale and shift the convolution before it applies (``BNFoldedConv2d``).

    Its forward is the identity. It keeps its four buffers under its own name, so checkpoints load and
    save unchanged and ``.to()`` moves them as before.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x


class BNFoldedConv2d(nn.Conv2d):
    """A bias-free convolution and the frozen BN after it, run as one convolution.

    conv(x, W) * s + t = conv(x, W * s) + t with s = weight / sqrt(var + eps) and t = bias - mean * s, per
    output channel: the BN's two elementwise passes over every activation are gone (on a 2-core CPU they
    were a quarter of the ResNet-50's time). The same function up to float rounding (relative 5e-6 at res5).
    s and t are computed from the BN's buffers on every call, so loaded weights, ``.to()`` and training see
    the current values; the cost is one pass over the weights.
    """

    def __init__(self, conv: nn.Conv2d, bn: FoldedFrozenBatchNorm2d) -> None:
        # Built on the meta device: the weight is ``conv``'s own parameter, so nothing is initialised.
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            conv.padding,  # type: ignore[arg-type]
            conv.dilation,  # type: ignore[arg-type]
            conv.groups,
            bias=False,
            padding_mode=conv.padding_mode,
            device="meta",
        )
        self.weight = conv.weight
        self._bn = (bn,)  # in a tuple: not registered twice (its buffers stay under the BN's own name)

    def forward(self, x: Tensor) -> Tensor:
        bn = self._bn[0]
        scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
        shift = bn.bias - bn.running_mean * scale
        return self._conv_forward(x, self.weight * scale.view(-1, 1, 1, 1), shift)


def _fold_frozen_batch_norms(module: nn.Module) -> int:
    """Fold each frozen BN of timm's ResNet into the bias-free convolution before it; the number folded.

    Pairs are found by name, which is how timm's ResNet runs them (its forward calls ``convN`` and then
    ``bnN``, stem and bottlenecks alike) and by position in an ``nn.Sequential`` (the downsample branches).
    The names say nothing about the order in other networks (a pre-activation block runs ``bn1`` first):
    this is for that ResNet only, and the caller checks that all of its BNs were folded.
    """
    folded = 0
    for parent in list(module.modules()):
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs = list(zip(names, names[1:], strict=False))
        else:
            pairs = [(name, "bn" + name[4:]) for name in children if name.startswith("conv")]
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, FrozenBatchNorm2d):
                continue
            if type(conv) is not nn.Conv2d or type(bn) is not FrozenBatchNorm2d or conv.bias is not None:
                continue  # already folded, or a convolution with a bias of its own
            folded_bn = FoldedFrozenBatchNorm2d(bn.weight.numel(), eps=bn.eps).to(bn.running_var)
            folded_bn.load_state_dict(bn.state_dict())
            setattr(parent, bn_name, folded_bn)
            setattr(parent, conv_name, BNFoldedConv2d(conv, folded_bn))
            folded += 1
    return folded


class ResNet50Backbone(nn.Module):
    """timm ResNet-50 with frozen BatchNorm; returns res2..res5 at strides 4/8/16/32.

    The network is ``self.base``, a timm ``FeatureListNet`` over ``resnet50`` (no ``fc``, no
    ``global_pool``). Every BatchNorm is a frozen BN: y = (x - mean) / sqrt(var + eps) * weight + bias
    with all four tensors float32 buffers, so ``train()`` changes nothing and no BN parameter is learnt.
    With ``fold_bn`` (the default) the convolution before each BN applies it (``BNFoldedConv2d``) and the
    BN module itself passes its input through; the buffers, and so the checkpoint keys, stay where they
    were. Under autocast the features then stay in the reduced dtype between convolutions, as with
    detectron2's frozen BN (torchvision's, used unfolded, returns float32).

    Attributes:
        out_channels: ``{"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}``.
        out_strides: ``{"res2": 4, "res3": 8, "res4": 16, "res5": 32}``.
    """

    def __init__(self, frozen_bn_eps: float = 1e-5, fold_bn: bool = True) -> None:
        super().__init__()
        base = timm.create_model("resnet50", pretrained=False, features_only=True, out_indices=RESNET_OUT_INDICES)
        self.base = freeze_batch_norm_2d(base)
        for module in self.base.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.eps = frozen_bn_eps
        if fold_bn and _fold_frozen_batch_norms(self.base) != RESNET50_BATCH_NORMS:
            raise AssertionError("timm's resnet50 layout changed: not every frozen BN follows its convolution")
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
        backbone = ResNet50Backbone(frozen_bn_eps=cfg.frozen_bn_eps, fold_bn=cfg.fold_bn)
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

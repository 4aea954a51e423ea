"""The OVFormer network: a window of frames + their CLIP embeddings + a text classifier -> per-query outputs.

One model family: an image is a 1-frame window. The video model (VideoOVFormer) runs a window of
T frames as one clip (B = 1, T frames); the image model (OVFormer, the LVIS checkpoints) runs B
independent images as B clips of T = 1 with a 2-D position encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ovformer_core.model.decoder import HeadOutputs, MaskedDecoder
from ovformer_core.model.pixel_decoder import PixelDecoder


@dataclass
class WindowOutput:
    """Raw outputs for B clips of T frames (Q queries, C classes).

    Attributes:
        class_logits: ``[B, Q, C + 1]``; the last (background) column is exactly 0.
        object_logits: ``[B, Q, 2]``.
        mask_logits: ``[B, Q, T, Hp/4, Wp/4]`` at a quarter of the padded input size.
        query_embeds: ``[B, Q, 256]``, used to associate queries across windows.
        aux: per-layer heads before the last layer (deep supervision), empty unless requested.
    """

    class_logits: Tensor
    object_logits: Tensor
    mask_logits: Tensor
    query_embeds: Tensor
    aux: list[HeadOutputs]


class OVFormer(nn.Module):
    """Backbone -> deformable pixel decoder -> masked decoder with alignment classifier."""

    def __init__(
        self, backbone: nn.Module, pixel_decoder: PixelDecoder, decoder: MaskedDecoder, channels_last: bool = False
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.decoder = decoder

    def forward(
        self, frames: Tensor, clip_embeds: Tensor, text_classifier: Tensor, with_aux: bool = False
    ) -> WindowOutput:
        """Run the network on normalised, padded frames.

        Args:
            frames: ``[B, T, 3, Hp, Wp]`` normalised RGB, Hp and Wp multiples of 32.
            clip_embeds: ``[B, T, 512]`` CLIP image embeddings of the same frames.
            text_classifier: ``[512, C + 1]`` (see ``ovformer_core.vocab``).
            with_aux: also return the heads of every earlier decoder layer.
        """
        batch, num_frames = frames.shape[:2]
        if clip_embeds.shape[:2] != (batch, num_frames):
            raise ValueError(f"clip_embeds {tuple(clip_embeds.shape)} do not match frames {tuple(frames.shape)}")
        images = frames.flatten(0, 1)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.backbone(images)
        pixels = self.pixel_decoder(features)
        out = self.decoder(pixels.multi_scale, pixels.mask_features, clip_embeds, text_classifier, with_aux=with_aux)
        return WindowOutput(
            class_logits=out.final.class_logits,
            object_logits=out.final.object_logits,
            mask_logits=out.final.mask_logits,
            query_embeds=out.query_embeds,
            aux=out.aux if with_aux else [],
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

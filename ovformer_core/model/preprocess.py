"""Frame preprocessing of the official test path: resize (shortest edge), normalise, pad to 32.

Every step is reversible: ``PreprocessInfo`` records the resized and padded sizes so masks can be
mapped back to the original resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class PreprocessInfo:
    """Sizes of one window after preprocessing.

    Attributes:
        original_size: (height, width) of the source frames.
        resized_size: (height, width) fed to the network before padding.
        padded_size: (height, width) after padding to the size divisibility.
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    padded_size: tuple[int, int]


def shortest_edge_size(height: int, width: int, short_target: int, max_long: int) -> tuple[int, int]:
    """Output size of detectron2's ResizeShortestEdge at test time.

    scale = short_target / short side, unless the long side would exceed ``max_long``, in which case
    scale = max_long / long side; each side becomes ``int(side * scale + 0.5)``.
    """
    scale = short_target / min(height, width)
    if max(height, width) * scale > max_long:
        scale = max_long / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 ``[T, H, W, 3]`` frames with PIL bilinear (antialiased when shrinking), as the official mapper.

    Returns the input unchanged when the size already matches.
    """
    from PIL import Image

    if frames.shape[1:3] == size:
        return frames
    out = np.empty((frames.shape[0], size[0], size[1], 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return out


def normalize_and_pad(
    frames: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    size_divisibility: int,
    padded_size: tuple[int, int] | None = None,
) -> Tensor:
    """uint8 ``[T, H, W, 3]`` RGB -> float ``[T, 3, Hp, Wp]``, normalised then zero-padded bottom/right.

    Padding happens after normalisation, so padded pixels are exactly 0 (as in the official code).
    ``padded_size`` pads to a given (larger, common) size instead, as detectron2's ImageList does for
    the images of a training batch; without it each side is rounded up to ``size_divisibility``.
    """
    x = frames.permute(0, 3, 1, 2).float()
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    h, w = x.shape[-2:]
    if padded_size is None:
        padded_size = (-(-h // size_divisibility) * size_divisibility, -(-w // size_divisibility) * size_divisibility)
    assert padded_size[0] >= h and padded_size[1] >= w, f"cannot pad {h}x{w} to {padded_size}"
    return F.pad(x, (0, padded_size[1] - w, 0, padded_size[0] - h))

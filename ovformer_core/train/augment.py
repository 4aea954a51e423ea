"""Training augmentation of clips: shortest-edge resize and flip for videos, large-scale jitter for images.

Every random choice is made once per clip, so all T frames and all masks get the same geometry. Frames
are resized bilinearly with PIL (as detectron2's ``ResizeTransform``), masks by nearest neighbour on
pixel centres. Instances left without a single mask pixel are dropped: the official video model
discards instances that are empty in every frame, and the image mapper filters empty instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ovformer_core.errors import TrainingError
from ovformer_core.train.data import Clip


@dataclass(frozen=True)
class VideoAugmentConfig:
    """Video-clip augmentation (configs/lvvis/Base-LVVIS-VideoInstanceSegmentation.yaml).

    Attributes:
        min_sizes: shortest-edge lengths, one drawn per clip (INPUT.MIN_SIZE_TRAIN, ``choice_by_clip``).
        max_size: the longest edge is capped at this (INPUT.MAX_SIZE_TRAIN, detectron2 default 1333).
        flip_prob: probability of one horizontal flip for the whole clip (RANDOM_FLIP ``flip_by_clip``, 0.5).
    """

    min_sizes: tuple[int, ...] = (360, 480)
    max_size: int = 1333
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        if not self.min_sizes or any(size < 1 for size in self.min_sizes):
            raise TrainingError(f"video_augment.min_sizes {self.min_sizes!r} must be one or more positive sizes")
        if self.max_size < 1:
            raise TrainingError(f"video_augment.max_size {self.max_size} must be positive")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise TrainingError(f"video_augment.flip_prob {self.flip_prob} must be within [0, 1]")


@dataclass(frozen=True)
class ImageAugmentConfig:
    """Large-scale jitter of single images (configs/lvis, ``coco_instance_lsj`` mapper).

    Attributes:
        image_size: side of the square output (INPUT.IMAGE_SIZE).
        min_scale: smallest jitter scale (INPUT.MIN_SCALE).
        max_scale: largest jitter scale (INPUT.MAX_SCALE).
        flip_prob: probability of a horizontal flip (detectron2 RandomFlip default 0.5).
        pad_value: image value of the padding (detectron2 FixedSizeCrop default 128); masks pad with 0.
    """

    image_size: int = 1024
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip_prob: float = 0.5
    pad_value: float = 128.0

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise TrainingError(f"image_augment.image_size {self.image_size} must be positive")
        if not 0.0 < self.min_scale <= self.max_scale:
            raise TrainingError(
                f"image_augment scales must satisfy 0 < min_scale <= max_scale; got {self.min_scale}, {self.max_scale}"
            )
        if not 0.0 <= self.flip_prob <= 1.0:
            raise TrainingError(f"image_augment.flip_prob {self.flip_prob} must be within [0, 1]")
        if not 0.0 <= self.pad_value <= 255.0:
            raise TrainingError(f"image_augment.pad_value {self.pad_value} must be within [0, 255] (uint8 frames)")


def shortest_edge_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """Output size of detectron2's ResizeShortestEdge.

    The shorter side becomes ``short_edge``; if the longer side would then exceed ``max_size`` the
    whole image is scaled down so that it equals ``max_size``. Sides are rounded half up.

    Returns:
        ``(new_height, new_width)``.
    """
    scale = short_edge / min(height, width)
    if height < width:
        new_height, new_width = float(short_edge), scale * width
    else:
        new_height, new_width = scale * height, float(short_edge)
    longest = max(new_height, new_width)
    if longest > max_size:
        new_height, new_width = new_height * max_size / longest, new_width * max_size / longest
    return int(new_height + 0.5), int(new_width + 0.5)


def _resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 -> ``[T, height, width, 3]``, PIL bilinear."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack(
        [np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR)) for frame in frames]
    )


def _nearest_source(in_size: int, out_size: int, start: int, count: int) -> np.ndarray:
    """Source index of output pixels ``start .. start + count - 1`` when resizing ``in_size`` -> ``out_size``.

    Pixel centres are matched (output centre ``x + 0.5`` maps to ``(x + 0.5) * in / out``), as PIL's
    nearest filter does, so masks stay aligned with the bilinearly resized frames.
    """
    out_idx = np.arange(start, start + count)
    return np.minimum(((out_idx + 0.5) * in_size / out_size).astype(np.int64), in_size - 1)


def _resized_masks(
    masks: np.ndarray, out_height: int, out_width: int, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """A window of the masks resized to ``out_height x out_width`` by nearest neighbour.

    Args:
        masks: ``[N, T, H, W]`` bool.
        out_height: height of the full resized mask.
        out_width: width of the full resized mask.
        rows: (first row, number of rows) of the window in the resized mask.
        cols: (first column, number of columns).

    Returns:
        ``[N, T, rows[1], cols[1]]`` bool; only the window is ever built, so large upscales stay cheap.
    """
    src_rows = _nearest_source(masks.shape[2], out_height, *rows)
    src_cols = _nearest_source(masks.shape[3], out_width, *cols)
    # Two 1-D gathers touch far fewer bytes than one 2-D fancy index.
    return np.take(np.take(masks, src_rows, axis=2), src_cols, axis=3)


def _without_empty(clip: Clip) -> Clip:
    keep = clip.masks.any(axis=(1, 2, 3))
    if keep.all():
        return clip
    return Clip(frames=clip.frames, masks=clip.masks[keep], labels=clip.labels[keep], file_names=clip.file_names)


def augment_video_clip(clip: Clip, cfg: VideoAugmentConfig, rng: np.random.Generator) -> Clip:
    """Resize the shortest edge to one size drawn per clip, then flip the whole clip or not.

    Args:
        clip: frames ``[T, H, W, 3]``, masks ``[N, T, H, W]``.
        cfg: sizes and flip probability.
        rng: the only source of randomness (size first, then flip, the official order).

    Returns:
        A new clip of size ``shortest_edge_size(H, W, size, cfg.max_size)``; instances left empty are dropped.
    """
    short_edge = int(rng.choice(np.asarray(cfg.min_sizes)))
    flip = bool(rng.random() < cfg.flip_prob)
    _, height, width, _ = clip.frames.shape
    new_height, new_width = shortest_edge_size(height, width, short_edge, cfg.max_size)
    frames = _resize_frames(clip.frames, new_height, new_width)
    masks = clip.masks
    if (new_height, new_width) != (height, width):
        masks = _resized_masks(masks, new_height, new_width, (0, new_height), (0, new_width))
    if flip:
        frames, masks = frames[:, :, ::-1], masks[..., ::-1]
    resized = Clip(
        frames=np.ascontiguousarray(frames),
        masks=np.ascontiguousarray(masks),
        labels=clip.labels,
        file_names=clip.file_names,
    )
    return _without_empty(resized)


def augment_image_clip(clip: Clip, cfg: ImageAugmentConfig, rng: np.random.Generator) -> Clip:
    """Large-scale jitter: flip, ResizeScale, FixedSizeCrop, as detectron2 draws them; one draw per clip.

    * flip horizontally with ``cfg.flip_prob``;
    * ResizeScale: ``s ~ U(min_scale, max_scale)``; the image is scaled by ``min(s * size / H, s * size / W)``
      (aspect kept) and its sides rounded;
    * FixedSizeCrop: where the result is larger than ``size``, a window of ``size`` is cut at offset
      ``round(u * excess)`` with one ``u ~ U(0, 1)`` shared by both axes; then the bottom and right are
      padded to ``size x size`` with ``cfg.pad_value`` (image) and 0 (masks).

    Args:
        clip: frames ``[T, H, W, 3]``, masks ``[N, T, H, W]``.
        cfg: jitter parameters.
        rng: the only source of randomness.

    Returns:
        A new clip of size ``cfg.image_size`` squared; instances with no pixel left are dropped.
    """
    size = cfg.image_size
    flip = bool(rng.random() < cfg.flip_prob)
    scale = rng.uniform(cfg.min_scale, cfg.max_scale)
    num_frames, height, width, _ = clip.frames.shape
    frames, masks = clip.frames, clip.masks
    if flip:
        frames, masks = frames[:, :, ::-1], masks[..., ::-1]

    output_scale = min(scale * size / height, scale * size / width)
    new_height = max(1, int(np.round(height * output_scale)))
    new_width = max(1, int(np.round(width * output_scale)))
    excess = np.maximum(np.array([new_height - size, new_width - size]), 0)
    top, left = (int(v) for v in np.round(excess * rng.uniform(0.0, 1.0)))
    crop_height, crop_width = min(size, new_height), min(size, new_width)

    resized = _resize_frames(np.ascontiguousarray(frames), new_height, new_width)
    out_frames = np.full((num_frames, size, size, 3), round(cfg.pad_value), dtype=np.uint8)
    out_frames[:, :crop_height, :crop_width] = resized[:, top : top + crop_height, left : left + crop_width]
    out_masks = np.zeros((masks.shape[0], num_frames, size, size), dtype=bool)
    out_masks[:, :, :crop_height, :crop_width] = _resized_masks(
        masks, new_height, new_width, (top, crop_height), (left, crop_width)
    )
    return _without_empty(Clip(frames=out_frames, masks=out_masks, labels=clip.labels, file_names=clip.file_names))

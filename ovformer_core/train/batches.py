"""Training samples and batches: which clips each process reads at each iteration, and their tensors.

Every random choice for a sample (frames, resize, flip, crop) comes from a generator seeded with
``(seed, position)``, where ``position`` is the sample's place in the global sample stream. A sample
therefore does not depend on the process, the loader worker or whether the run was resumed, which is
what makes resumed runs and multi-process runs reproduce single uninterrupted runs exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ovformer_core.model.preprocess import normalize_and_pad
from ovformer_core.train.augment import augment_image_clip, augment_video_clip
from ovformer_core.train.config import DataConfig
from ovformer_core.train.data import TrainDataset, read_video_clip, sample_clip_frames
from ovformer_core.train.matcher import VideoTarget
from ovformer_core.train.sampler import SampleStream


@dataclass(frozen=True)
class MicroBatchPlan:
    """How one iteration's global batch is split.

    The global batch of ``batch_size`` clips is cut into ``num_micro_batches`` micro-batches of
    ``micro_batch_size`` clips; process ``rank`` runs micro-batches ``rank * accumulation`` to
    ``(rank + 1) * accumulation - 1`` one after another (gradient accumulation).
    """

    batch_size: int
    micro_batch_size: int
    world_size: int
    rank: int

    @property
    def num_micro_batches(self) -> int:
        """Micro-batches per iteration over all processes (K)."""
        return self.batch_size // self.micro_batch_size

    @property
    def accumulation(self) -> int:
        """Micro-batches per iteration in one process."""
        return self.num_micro_batches // self.world_size

    def micro_batch_indices(self) -> range:
        """Global indices (0..K-1) of this process's micro-batches."""
        return range(self.rank * self.accumulation, (self.rank + 1) * self.accumulation)


def check_plan(batch_size: int, micro_batch_size: int, world_size: int) -> None:
    """Raise a ``ValueError`` with the fix when the batch cannot be split evenly."""
    if batch_size % micro_batch_size or (batch_size // micro_batch_size) % world_size:
        raise ValueError(
            f"run.batch_size {batch_size} must be a multiple of run.micro_batch_size ({micro_batch_size}) "
            f"times the number of processes ({world_size})"
        )


@dataclass(frozen=True)
class SampleRef:
    """One clip to read: its position in the global stream and the dataset item there."""

    position: int
    item: int


class MicroBatchSampler(Sampler[list[SampleRef]]):
    """Yields this process's micro-batches, iteration after iteration, from ``start_iteration`` on (infinite)."""

    def __init__(self, stream: SampleStream, plan: MicroBatchPlan, start_iteration: int) -> None:
        self.stream = stream
        self.plan = plan
        self.start_iteration = start_iteration

    def micro_batch(self, iteration: int, micro_idx: int) -> list[SampleRef]:
        """The clips of global micro-batch ``micro_idx`` of ``iteration``."""
        first = iteration * self.plan.batch_size + micro_idx * self.plan.micro_batch_size
        positions = range(first, first + self.plan.micro_batch_size)
        return [SampleRef(p, int(self.stream[p])) for p in positions]

    def __iter__(self) -> Iterator[list[SampleRef]]:
        iteration = self.start_iteration
        while True:
            for micro_idx in self.plan.micro_batch_indices():
                yield self.micro_batch(iteration, micro_idx)
            iteration += 1


@dataclass
class TrainSample:
    """One augmented clip.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        masks: ``[N, T, H, W]`` bool.
        labels: ``[N]`` int64 category indices.
        file_names: source file of each frame (key of its CLIP embedding).
        position: place in the global sample stream.
    """

    frames: Tensor
    masks: Tensor
    labels: Tensor
    file_names: tuple[str, ...]
    position: int


def sample_generator(seed: int, position: int) -> np.random.Generator:
    """The generator behind every random choice for the sample at ``position``."""
    return np.random.default_rng([seed, position])


class ClipSamples(Dataset[TrainSample]):
    """Reads and augments the clip of a ``SampleRef`` (runs in data-loader workers)."""

    def __init__(self, dataset: TrainDataset, cfg: DataConfig, seed: int) -> None:
        self.dataset = dataset
        self.cfg = cfg
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset.videos)

    def __getitem__(self, ref: SampleRef) -> TrainSample:
        rng = sample_generator(self.seed, ref.position)
        video = self.dataset.videos[ref.item]
        num_frames = 1 if self.dataset.is_image else self.cfg.num_frames
        frame_idx = sample_clip_frames(len(video.file_names), num_frames, self.cfg.frame_range, rng)
        clip = read_video_clip(video, frame_idx)
        if self.dataset.is_image:
            clip = augment_image_clip(clip, self.cfg.image_augment, rng)
        else:
            clip = augment_video_clip(clip, self.cfg.video_augment, rng)
        return TrainSample(
            frames=torch.from_numpy(np.ascontiguousarray(clip.frames)),
            masks=torch.from_numpy(np.ascontiguousarray(clip.masks)).bool(),
            labels=torch.from_numpy(np.asarray(clip.labels, dtype=np.int64)),
            file_names=tuple(clip.file_names),
            position=ref.position,
        )


def keep_list(samples: list[TrainSample]) -> list[TrainSample]:
    """Collate function of the loader: micro-batches stay lists (clips differ in size)."""
    return samples


@dataclass
class TrainBatch:
    """Model inputs of one micro-batch.

    Attributes:
        frames: ``[B, T, 3, Hp, Wp]`` normalised, zero-padded to a common size divisible by 32.
        targets: B targets, masks ``[N, T, Hp, Wp]`` padded like the frames.
        file_names: per clip, the frame files.
    """

    frames: Tensor
    targets: list[VideoTarget]
    file_names: list[tuple[str, ...]]

    @property
    def num_instances(self) -> int:
        """Ground-truth instances in the micro-batch."""
        return sum(len(t.labels) for t in self.targets)


def _padded_size(sizes: Sequence[tuple[int, int]], divisibility: int) -> tuple[int, int]:
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    return -(-height // divisibility) * divisibility, -(-width // divisibility) * divisibility


def collate(
    samples: Sequence[TrainSample],
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    size_divisibility: int,
    device: torch.device | str = "cpu",
) -> TrainBatch:
    """Normalise and pad the clips of a micro-batch to one size (as detectron2's ImageList: pad after
    normalising, bottom/right, with zeros) and pad their masks the same way.

    Args:
        samples: clips with the same number of frames T.
        pixel_mean, pixel_std: RGB normalisation (0..255 scale).
        size_divisibility: the padded size is a multiple of this (32).
        device: where the tensors go.
    """
    padded = _padded_size([(int(s.frames.shape[1]), int(s.frames.shape[2])) for s in samples], size_divisibility)
    frames, targets = [], []
    for sample in samples:
        frames.append(
            normalize_and_pad(sample.frames.to(device), pixel_mean, pixel_std, size_divisibility, padded_size=padded)
        )
        height, width = sample.frames.shape[1:3]
        pad = (0, padded[1] - width, 0, padded[0] - height)
        masks = F.pad(sample.masks.to(device, torch.uint8), pad).bool()
        targets.append(VideoTarget(labels=sample.labels.to(device), masks=masks))
    return TrainBatch(torch.stack(frames), targets, [s.file_names for s in samples])

"""Splitting the global batch into micro-batches, seeded samples, and padding a micro-batch to one size."""

from __future__ import annotations

import itertools

import pytest
import torch

from ovformer_core.train.augment import VideoAugmentConfig
from ovformer_core.train.batches import (
    ClipSamples,
    MicroBatchPlan,
    MicroBatchSampler,
    SampleRef,
    TrainSample,
    check_plan,
    collate,
)
from ovformer_core.train.config import DataConfig
from ovformer_core.train.data import TrainDataset, read_train_dataset
from ovformer_core.train.sampler import SampleStream

PIXEL_MEAN = (123.675, 116.280, 103.530)
PIXEL_STD = (58.395, 57.120, 57.375)


def test_plan_splits_the_batch_over_processes() -> None:
    # 8 clips, 2 per forward pass, 2 processes: 4 micro-batches, 2 accumulated per process.
    plans = [MicroBatchPlan(batch_size=8, micro_batch_size=2, world_size=2, rank=rank) for rank in (0, 1)]
    assert all(plan.num_micro_batches == 4 and plan.accumulation == 2 for plan in plans)
    assert list(plans[0].micro_batch_indices()) == [0, 1]
    assert list(plans[1].micro_batch_indices()) == [2, 3]


def test_plan_of_one_process_accumulates_everything() -> None:
    plan = MicroBatchPlan(batch_size=8, micro_batch_size=1, world_size=1, rank=0)
    assert plan.num_micro_batches == 8 and plan.accumulation == 8
    assert list(plan.micro_batch_indices()) == list(range(8))


def test_plan_with_one_micro_batch_per_process() -> None:
    plans = [MicroBatchPlan(batch_size=8, micro_batch_size=1, world_size=8, rank=rank) for rank in range(8)]
    assert [list(plan.micro_batch_indices()) for plan in plans] == [[rank] for rank in range(8)]


@pytest.mark.parametrize(("batch_size", "micro_batch_size", "world_size"), [(8, 1, 1), (8, 2, 4), (8, 4, 2), (6, 3, 2)])
def test_check_plan_accepts_even_splits(batch_size: int, micro_batch_size: int, world_size: int) -> None:
    check_plan(batch_size, micro_batch_size, world_size)


@pytest.mark.parametrize(("batch_size", "micro_batch_size", "world_size"), [(8, 3, 1), (8, 2, 3), (8, 4, 4), (6, 4, 1)])
def test_check_plan_rejects_uneven_splits(batch_size: int, micro_batch_size: int, world_size: int) -> None:
    with pytest.raises(ValueError) as err:
        check_plan(batch_size, micro_batch_size, world_size)
    message = str(err.value)
    assert "\n" not in message
    assert f"run.batch_size {batch_size}" in message and f"({micro_batch_size})" in message
    assert f"({world_size})" in message


def _sampler(stream: SampleStream, batch_size: int, micro: int, world: int, rank: int, start: int) -> MicroBatchSampler:
    return MicroBatchSampler(stream, MicroBatchPlan(batch_size, micro, world, rank), start_iteration=start)


def _first(sampler: MicroBatchSampler, count: int) -> list[list[SampleRef]]:
    return list(itertools.islice(iter(sampler), count))


def test_sampler_gives_each_rank_its_share_of_the_global_batch() -> None:
    stream = SampleStream(num_items=5, seed=3)
    # Global batch 4, micro-batches of 1, 2 processes: each process accumulates 2 micro-batches.
    rank0 = _first(_sampler(stream, 4, 1, 2, rank=0, start=0), 4)
    rank1 = _first(_sampler(stream, 4, 1, 2, rank=1, start=0), 4)
    assert [[ref.position for ref in micro] for micro in rank0] == [[0], [1], [4], [5]]
    assert [[ref.position for ref in micro] for micro in rank1] == [[2], [3], [6], [7]]
    for micro in rank0 + rank1:
        assert all(ref.item == stream[ref.position] for ref in micro)
    # Iteration by iteration, the ranks together cover exactly the positions of the global batch.
    for iteration in (0, 1):
        together = [ref for micro in rank0[2 * iteration : 2 * iteration + 2] + rank1[2 * iteration : 2 * iteration + 2]
                    for ref in micro]  # fmt: skip
        assert sorted(ref.position for ref in together) == list(range(4 * iteration, 4 * iteration + 4))
        assert sorted(ref.item for ref in together) == sorted(stream.batch(iteration, 4))


def test_sampler_with_micro_batches_of_two() -> None:
    stream = SampleStream(num_items=7, seed=0)
    # Global batch 8 of micro-batches of 2 over 2 processes.
    rank0 = _first(_sampler(stream, 8, 2, 2, rank=0, start=0), 2)
    rank1 = _first(_sampler(stream, 8, 2, 2, rank=1, start=0), 2)
    assert [[ref.position for ref in micro] for micro in rank0] == [[0, 1], [2, 3]]
    assert [[ref.position for ref in micro] for micro in rank1] == [[4, 5], [6, 7]]


def test_sampler_resumes_where_the_uninterrupted_run_would_be() -> None:
    stream = SampleStream(num_items=5, seed=11)
    for rank in (0, 1):
        straight = _first(_sampler(stream, 4, 1, 2, rank=rank, start=0), 2 * 6)
        resumed = _first(_sampler(stream, 4, 1, 2, rank=rank, start=3), 2 * 3)
        assert resumed == straight[2 * 3 :]
        assert resumed[0][0].position == 3 * 4 + 2 * rank
    # A fresh stream object (a new process after a restart) gives the same items.
    again = _first(_sampler(SampleStream(num_items=5, seed=11), 4, 1, 2, rank=0, start=3), 6)
    assert again == _first(_sampler(stream, 4, 1, 2, rank=0, start=3), 6)


def _sample(height: int, width: int, num_instances: int, value: int, label: int = 1) -> TrainSample:
    generator = torch.Generator().manual_seed(height * 1000 + width)
    frames = torch.randint(0, 256, (2, height, width, 3), dtype=torch.uint8, generator=generator)
    frames[0, 0, 0] = torch.tensor([value, value, value], dtype=torch.uint8)
    masks = torch.zeros(num_instances, 2, height, width, dtype=torch.bool)
    masks[:, :, : height // 2] = True
    masks[:, :, -1, -1] = True  # the bottom-right pixel: the last one before the padding
    labels = torch.full((num_instances,), label, dtype=torch.int64)
    names = (f"{height}x{width}/0.png", f"{height}x{width}/1.png")
    return TrainSample(frames=frames, masks=masks, labels=labels, file_names=names, position=height)


def test_collate_pads_frames_and_masks_to_a_multiple_of_32() -> None:
    samples = [_sample(40, 50, num_instances=2, value=0, label=4), _sample(70, 33, num_instances=1, value=255)]
    batch = collate(samples, PIXEL_MEAN, PIXEL_STD, size_divisibility=32)
    assert batch.frames.shape == (2, 2, 3, 96, 64)  # max(40, 70) -> 96, max(50, 33) -> 64
    assert batch.frames.dtype == torch.float32
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    for clip, sample in zip(batch.frames, samples, strict=True):
        _, height, width, _ = sample.frames.shape
        expected = (sample.frames.permute(0, 3, 1, 2).float() - mean) / std
        torch.testing.assert_close(clip[:, :, :height, :width], expected, rtol=0, atol=1e-6)
        # Padding is zero after normalisation (detectron2 ImageList), bottom and right only.
        assert torch.count_nonzero(clip[:, :, height:, :]) == 0
        assert torch.count_nonzero(clip[:, :, :, width:]) == 0
    # The set corner pixels: 0 and 255 in every channel.
    expected_corners = [[(v - m) / s for m, s in zip(PIXEL_MEAN, PIXEL_STD, strict=True)] for v in (0, 255)]
    assert batch.frames[:, 0, :, 0, 0].tolist() == [pytest.approx(c) for c in expected_corners]
    assert batch.num_instances == 3
    for target, sample in zip(batch.targets, samples, strict=True):
        num_instances, num_frames, height, width = sample.masks.shape
        assert target.masks.shape == (num_instances, num_frames, 96, 64) and target.masks.dtype == torch.bool
        assert torch.equal(target.masks[..., :height, :width], sample.masks)
        assert not target.masks[..., height:, :].any() and not target.masks[..., :, width:].any()
        assert torch.equal(target.labels, sample.labels)
    assert batch.file_names == [samples[0].file_names, samples[1].file_names]


def test_collate_keeps_an_exact_multiple_and_a_clip_without_instances() -> None:
    samples = [_sample(64, 32, num_instances=0, value=7)]
    batch = collate(samples, PIXEL_MEAN, PIXEL_STD, size_divisibility=32)
    assert batch.frames.shape == (1, 2, 3, 64, 32)
    assert batch.targets[0].masks.shape == (0, 2, 64, 32) and batch.targets[0].labels.shape == (0,)
    assert batch.num_instances == 0


@pytest.fixture(scope="module")
def dataset(shapes) -> TrainDataset:
    return read_train_dataset(shapes["json"], shapes["root"])


def _data_cfg() -> DataConfig:
    return DataConfig(num_frames=2, frame_range=3, video_augment=VideoAugmentConfig(min_sizes=(48, 64, 80)))


def _same(a: TrainSample, b: TrainSample) -> bool:
    return (
        a.file_names == b.file_names
        and a.frames.shape == b.frames.shape
        and torch.equal(a.frames, b.frames)
        and a.masks.shape == b.masks.shape
        and torch.equal(a.masks, b.masks)
        and torch.equal(a.labels, b.labels)
    )


def test_clip_samples_depend_only_on_seed_and_position(dataset: TrainDataset) -> None:
    samples = ClipSamples(dataset, _data_cfg(), seed=5)
    assert len(samples) == len(dataset.videos) == 4
    ref = SampleRef(position=9, item=1)
    first = samples[ref]
    assert first.position == 9
    assert first.frames.dtype == torch.uint8 and first.frames.shape[0] == 2 and first.frames.shape[-1] == 3
    assert first.masks.shape[1:] == first.frames.shape[:3] and first.masks.dtype == torch.bool
    assert first.labels.shape == (first.masks.shape[0],) and first.labels.dtype == torch.int64
    assert min(first.frames.shape[1:3]) in (48, 64, 80)
    assert all(name.startswith(str(dataset.videos[1].file_names[0].rsplit("/", 1)[0])) for name in first.file_names)
    # Another reader (a loader worker, a resumed process), after other reads: the same sample.
    other = ClipSamples(dataset, _data_cfg(), seed=5)
    for position in range(5):
        other[SampleRef(position=position, item=0)]
    assert _same(other[ref], first)
    assert _same(samples[ref], first)


def test_clip_samples_differ_between_positions_and_seeds(dataset: TrainDataset) -> None:
    samples = ClipSamples(dataset, _data_cfg(), seed=5)
    first = samples[SampleRef(position=9, item=1)]
    # The same video at the next position and under another seed: other frames, size or flip.
    assert not _same(first, samples[SampleRef(position=10, item=1)])
    assert not _same(first, ClipSamples(dataset, _data_cfg(), seed=6)[SampleRef(position=9, item=1)])

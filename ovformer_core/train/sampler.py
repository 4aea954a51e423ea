"""Which training item each position of the infinite training stream holds.

Two official samplers, one class:

- LVIS image training uses detectron2's ``RepeatFactorTrainingSampler`` (configs/lvis
  ``SAMPLER_TRAIN: RepeatFactorTrainingSampler``, ``REPEAT_THRESHOLD: 0.001``): rare categories are
  over-sampled by repeating the images that contain them (see ``repeat_factors``).
- LV-VIS video training uses the plain shuffled infinite sampler: every video once per epoch.

``SampleStream`` is a pure function of ``(seed, position)``: epoch ``e`` is drawn from a generator
seeded with ``(seed, e)``, so resuming at step ``s`` or splitting batches across DDP ranks only means
computing the right positions; no sampler state is saved or shared.
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Collection, Sequence

import numpy as np

from ovformer_core.errors import TrainingError

#: detectron2 ``DATALOADER.REPEAT_THRESHOLD`` of the official LVIS config (Base-COCO-InstanceSegmentation.yaml).
LVIS_REPEAT_THRESHOLD = 0.001
#: Full epoch orders kept in memory: the current one and the one before (batches straddle epochs).
DEFAULT_CACHED_EPOCHS = 2


def repeat_factors(category_sets: Sequence[Collection[int]], threshold: float) -> np.ndarray:
    """Per-item repeat factors of the LVIS rule (Gupta et al. 2019; detectron2 RepeatFactorTrainingSampler).

    With ``f(c)`` the fraction of items that contain category ``c``, the category factor is
    ``r(c) = max(1, sqrt(threshold / f(c)))`` and an item's factor is the largest factor among its
    categories (1 for an item without categories).

    Args:
        category_sets: per item, the categories annotated in it (duplicates are ignored).
        threshold: frequency below which a category is over-sampled (0.001 for LVIS).

    Returns:
        ``[N]`` float64 factors, each >= 1.

    Raises:
        TrainingError: a threshold that is not positive.
    """
    if not threshold > 0:
        raise TrainingError(f"repeat threshold must be > 0, got {threshold}; use 0.001 (the LVIS value)")
    num_items = len(category_sets)
    item_counts: collections.Counter[int] = collections.Counter()
    for categories in category_sets:
        item_counts.update(set(categories))
    category_factor = {
        category: max(1.0, math.sqrt(threshold / (count / num_items))) for category, count in item_counts.items()
    }
    return np.array(
        [max((category_factor[c] for c in set(categories)), default=1.0) for categories in category_sets],
        dtype=np.float64,
    )


class SampleStream:
    """The infinite, shuffled (optionally repeat-factor) stream of item indices.

    Epoch ``e`` is the list of item indices, item ``i`` appearing ``floor(r_i)`` times plus once more
    with probability ``frac(r_i)`` (stochastic rounding; without ``repeat`` exactly once), shuffled.
    Epochs follow each other without a gap, so with repeat factors the epoch lengths vary and the
    epoch of a position is found from the cumulated lengths (cheap: only the rounding draws).
    """

    def __init__(
        self,
        num_items: int,
        seed: int,
        repeat: np.ndarray | None = None,
        cached_epochs: int = DEFAULT_CACHED_EPOCHS,
    ) -> None:
        """Describe the stream; nothing is drawn until a position is asked for.

        Args:
            num_items: dataset size N.
            seed: the run's seed; the same seed gives the same stream.
            repeat: ``[N]`` repeat factors (``repeat_factors``), or None for each item once per epoch.
            cached_epochs: how many epoch orders to keep in memory.

        Raises:
            TrainingError: an empty dataset, or repeat factors of the wrong length or value.
        """
        if num_items <= 0:
            raise TrainingError("the training set has no items; check the annotation file and its filtering")
        if repeat is not None:
            repeat = np.asarray(repeat, dtype=np.float64)
            if repeat.shape != (num_items,):
                raise TrainingError(
                    f"got {repeat.size} repeat factors for {num_items} items; compute them from the same dataset"
                )
            if not (np.isfinite(repeat).all() and (repeat >= 0).all() and repeat.sum() > 0):
                raise TrainingError("repeat factors must be finite, >= 0 and not all 0; use repeat_factors()")
        self.num_items = num_items
        self.seed = seed
        self.repeat = repeat
        self._cached_epochs = max(1, cached_epochs)
        self._orders: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        # _epoch_starts[e] = first position of epoch e; grown lazily (repeat factors only).
        self._epoch_starts = [0]

    def __getitem__(self, position: int) -> int:
        """The item index at global ``position`` (0, 1, 2, ... across epochs)."""
        if position < 0:
            raise IndexError(f"stream positions start at 0, got {position}")
        epoch, offset = self.locate(position)
        return int(self.epoch_order(epoch)[offset])

    def batch(self, step: int, batch_size: int) -> list[int]:
        """Item indices of positions ``[step * batch_size, (step + 1) * batch_size)``."""
        start = step * batch_size
        return [self[position] for position in range(start, start + batch_size)]

    def locate(self, position: int) -> tuple[int, int]:
        """``(epoch, offset in that epoch)`` of a global position."""
        if self.repeat is None:
            return divmod(position, self.num_items)
        while self._epoch_starts[-1] <= position:
            epoch = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[-1] + int(self._copies(epoch).sum()))
        # bisect_right skips epochs of length 0 (possible only with factors < 1).
        epoch = bisect.bisect_right(self._epoch_starts, position) - 1
        return epoch, position - self._epoch_starts[epoch]

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The shuffled item indices of one epoch, ``[L_e]`` int64 (``L_e = N`` without repeat)."""
        order = self._orders.get(epoch)
        if order is not None:
            self._orders.move_to_end(epoch)
            return order
        rng = self._rng(epoch)
        if self.repeat is None:
            order = rng.permutation(self.num_items)
        else:
            # Same generator, same draws as _copies, then the shuffle.
            copies = self._draw_copies(rng)
            order = rng.permutation(np.repeat(np.arange(self.num_items), copies))
        self._orders[epoch] = order
        while len(self._orders) > self._cached_epochs:
            self._orders.popitem(last=False)
        return order

    def _rng(self, epoch: int) -> np.random.Generator:
        # A seed sequence of (seed, epoch) gives independent, reproducible streams per epoch.
        return np.random.default_rng([self.seed, epoch])

    def _copies(self, epoch: int) -> np.ndarray:
        return self._draw_copies(self._rng(epoch))

    def _draw_copies(self, rng: np.random.Generator) -> np.ndarray:
        assert self.repeat is not None
        whole = np.floor(self.repeat)
        return (whole + (rng.random(self.num_items) < self.repeat - whole)).astype(np.int64)

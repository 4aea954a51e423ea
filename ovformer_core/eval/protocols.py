"""What the YouTube-VIS, OVIS, LV-VIS and BURST evaluators share, and the few rules where they differ.

The four official evaluators (``ytvoseval.py``, ``lvviseval.py``, ``bursteval.py``; OVIS reuses the
YouTube-VIS one) are one COCO-style video evaluator with different switches. This module names those
switches; ``ovformer_core.eval.ytvis.evaluate`` is the single implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ovformer_core.errors import OVFormerError

Benchmark = Literal["ytvis", "ovis", "lvvis", "burst"]
BENCHMARKS: tuple[str, ...] = ("ytvis", "ovis", "lvvis", "burst")

#: Names of the 12 summary numbers, in the order of the official ``summarize()``.
STAT_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@dataclass(frozen=True)
class EvalParams:
    """Thresholds and ranges of every official video evaluator (``Params.setDetParams``)."""

    # np.linspace(.5, .95, 10): the official comment warns that np.arange drifts; linspace values are kept.
    iou_thresholds: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.5, 0.95, 10))
    # np.linspace(0, 1, 101): the 101 recall points of COCO interpolated precision.
    recall_thresholds: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.0, 1.0, 101))
    max_dets: tuple[int, ...] = (1, 10, 100)
    # YouTube-VIS split 128^2 / 256^2 (not COCO's 32^2 / 96^2); 1e5 ** 2 is the official "infinity".
    area_ranges: tuple[tuple[float, float], ...] = (
        (0.0, 1e5**2),
        (0.0, 128.0**2),
        (128.0**2, 256.0**2),
        (256.0**2, 1e5**2),
    )
    area_labels: tuple[str, ...] = ("all", "small", "medium", "large")


@dataclass(frozen=True)
class CategoryGroup:
    """Categories whose ground-truth field ``field`` takes one of ``values`` (e.g. LV-VIS base)."""

    name: str
    field: str
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class BenchmarkRules:
    """Where the official evaluators differ.

    Attributes:
        name: the benchmark.
        area_mode: how a track's ``avg_area`` is made from its per-frame areas (falsy areas skipped):
            ``"mean"`` (YouTube-VIS), ``"int_mean"`` (LV-VIS truncates each area to int first) or
            ``"zero"`` (BURST sets every ``avg_area`` to 0, so every track is "small").
        crowd_is_ignored: ground truth with ``iscrowd`` is ignored in every area range (YouTube-VIS only).
        unique_matching: a ground-truth track matched at a threshold cannot be matched again (unless it
            is a crowd). BURST removed this check: several results may match one track.
        groups: category groups whose means are reported next to the overall numbers.
    """

    name: str
    area_mode: Literal["mean", "int_mean", "zero"]
    crowd_is_ignored: bool
    unique_matching: bool
    groups: tuple[CategoryGroup, ...]


def rules_for(benchmark: str) -> BenchmarkRules:
    """The official rules of ``benchmark`` (one of ``BENCHMARKS``)."""
    if benchmark in ("ytvis", "ovis"):
        return BenchmarkRules(benchmark, "mean", crowd_is_ignored=True, unique_matching=True, groups=())
    if benchmark == "lvvis":
        # evaluate/lvvis.py: partition 0/1 = base, 2/3 = novel.
        groups: tuple[CategoryGroup, ...] = (
            CategoryGroup("base", "partition", (0, 1)),
            CategoryGroup("novel", "partition", (2, 3)),
        )
        return BenchmarkRules("lvvis", "int_mean", crowd_is_ignored=False, unique_matching=True, groups=groups)
    if benchmark == "burst":
        # evaluate/burst.py: base = LVIS frequency c/f, novel = r; common/uncommon from the BURST split.
        groups = (
            CategoryGroup("base", "frequency", ("c", "f")),
            CategoryGroup("novel", "frequency", ("r",)),
            CategoryGroup("common", "split", ("common",)),
            CategoryGroup("uncommon", "split", ("uncommon",)),
        )
        return BenchmarkRules("burst", "zero", crowd_is_ignored=False, unique_matching=False, groups=groups)
    raise OVFormerError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")

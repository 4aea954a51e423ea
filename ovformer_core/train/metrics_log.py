"""Training scalars: one JSON line per logged iteration (``metrics.jsonl``) and TensorBoard events.

TensorBoard needs the ``tensorboard`` package (``pip install "ovformer[train]"``); without it the
JSON lines are still written and one warning says how to get the events.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends scalars of the main process; other processes get a log that writes nothing.

    Args:
        output_dir: run folder.
        enabled: False on every process but rank 0.
        resume_from: when resuming at this iteration, lines of later iterations (written by the
            interrupted run after its last checkpoint) are dropped so the file has each iteration once.
    """

    def __init__(self, output_dir: Path, enabled: bool, resume_from: int | None = None) -> None:
        self.enabled = enabled
        self.path = output_dir / METRICS_FILE
        self._writer: Any = None
        if not enabled:
            return
        if resume_from is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _iteration(line) <= resume_from]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_from is None:
            self.path.write_text("")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn(
                "tensorboard is not installed, so no TensorBoard events are written (scalars are in "
                f'{self.path}); install it with pip install "ovformer[train]"',
                stacklevel=2,
            )
        else:
            # Events of iterations after the checkpoint (written before the interruption) are hidden.
            purge_step = None if resume_from is None else resume_from + 1
            self._writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"), purge_step=purge_step)

    def log(self, iteration: int, scalars: Mapping[str, float]) -> None:
        """Record ``scalars`` (names like ``loss`` or ``eval/AP``) at ``iteration``."""
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            # JSON has no inf or NaN (an fp16 step the loss scaler skipped has an infinite gradient norm)
            finite = {name: value if math.isfinite(value) else None for name, value in scalars.items()}
            handle.write(json.dumps({"iteration": iteration, **finite}) + "\n")
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, iteration)
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _iteration(line: str) -> int:
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # unreadable line (cut by a kill): dropped on resume


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    """The logged lines of a run, in order."""
    path = output_dir / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

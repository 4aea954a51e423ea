"""Which device a run uses, and this process's place in a ``torchrun`` job: shared by segment and train.

``torchrun`` (``torch.distributed.run``) starts one process per GPU and tells each its place through
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. A process on CUDA uses the GPU of its local rank;
``process_group`` joins the job's collective group (NCCL on CUDA, Gloo on CPU) where a run needs
collectives (training, merging a whole-dataset run); a plain batch of inputs is only sharded by rank.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from ovformer_core.errors import OVFormerError

if TYPE_CHECKING:  # torch is imported when a device is chosen: a batch of missing inputs never needs it
    import torch

T = TypeVar("T")

#: How long a process waits in a collective: in ``segment --dataset`` ranks wait at a barrier while the
#: others finish their share, in training while rank 0 alone evaluates. NCCL's default (10 minutes) would
#: end such a job with a watchdog timeout.
COLLECTIVE_TIMEOUT = timedelta(hours=4)


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> ProcessGroup:
        """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` as set by torchrun."""
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=world_size,
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
        )

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``world_size``-th one, starting at ``rank``."""
        return list(items[self.rank :: self.world_size])


def choose_device(
    name: str | None,
    local_rank: int = 0,
    parameter: str = "device",
    error: type[OVFormerError] = OVFormerError,
    local_world_size: int = 1,
) -> torch.device:
    """The device a run uses.

    Args:
        name: ``cpu``, ``cuda``, ``cuda:N`` (or any ``torch.device`` string); None: CUDA when available.
        local_rank: the GPU that a plain ``cuda`` means (a torchrun process's ``LOCAL_RANK``).
        local_world_size: processes of the torchrun job on this machine; with more than one and several
            GPUs in sight, a GPU index is refused (they would all take that GPU, which NCCL refuses).
        parameter: the setting ``name`` came from, named in errors.
        error: the ``OVFormerError`` subclass raised.

    Raises:
        error: an unknown device, CUDA asked for on a machine without it, a GPU that is not there, or one
            GPU index for several processes.
    """
    import torch

    name = name or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise error(f"unknown device {name!r}; set `{parameter}` to cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise error(f"CUDA is not available on this machine; use `{parameter}`='cpu'")
        by_rank = device.index is None
        count = torch.cuda.device_count()
        if not by_rank and local_world_size > 1 and count > 1:
            raise error(
                f"`{parameter}`='{name}' names one GPU for all {local_world_size} processes on this machine; "
                f"use `{parameter}`='cuda' (each process takes the GPU of its LOCAL_RANK)"
            )
        if by_rank:
            # A scheduler that shows each process only its own GPU (CUDA_VISIBLE_DEVICES): that one.
            device = torch.device("cuda", 0 if count == 1 else local_rank)
        if device.index >= count:
            gpus = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            advice = (
                f"start at most {count} processes per machine (torchrun --nproc-per-node)"
                if by_rank
                else f"use `{parameter}`='cuda:0'" + ("" if count == 1 else f" (up to cuda:{count - 1})")
            )
            asked = f"LOCAL_RANK {local_rank}" if by_rank else f"`{parameter}`='{name}'"
            raise error(f"there is no GPU {device.index} ({asked}): this machine has {gpus}; {advice}")
    return device


@contextmanager
def process_group(group: ProcessGroup, device: torch.device) -> Iterator[None]:
    """Join the torchrun job's collective group for the block (NCCL on CUDA, Gloo on CPU).

    Nothing happens for a single process or when the group is already joined (then its owner leaves it).
    """
    import torch.distributed as dist

    if not group.is_distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)  # NCCL's collectives (a barrier too) run on the current GPU
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()

"""``choose_device``: which device a run uses, and one-line errors for the ones it cannot."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from ovformer_core.devices import COLLECTIVE_TIMEOUT, ProcessGroup, choose_device, process_group
from ovformer_core.errors import OVFormerError


def test_cpu_and_bad_names() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(OVFormerError, match=r"unknown device 'gpu0'; set `device` to cpu, cuda or cuda:N"):
        choose_device("gpu0")


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cuda_means_the_process_gpu(two_gpus: None) -> None:
    assert choose_device("cuda") == torch.device("cuda", 0)
    assert choose_device("cuda", local_rank=1) == torch.device("cuda", 1)  # torchrun's second process
    assert choose_device("cuda:1", local_rank=0) == torch.device("cuda", 1)


def test_a_gpu_that_is_not_there_is_one_line(two_gpus: None) -> None:
    with pytest.raises(OVFormerError) as err:
        choose_device("cuda:5")
    assert str(err.value) == (
        "there is no GPU 5 (`device`='cuda:5'): this machine has cuda:0 to cuda:1; use `device`='cuda:0' (up to cuda:1)"
    )
    with pytest.raises(OVFormerError, match=r"no GPU 3 \(LOCAL_RANK 3\).*at most 2 processes per machine"):
        choose_device("cuda", local_rank=3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda() -> None:
    with pytest.raises(OVFormerError, match=r"CUDA is not available on this machine; use `device`='cpu'"):
        choose_device("cuda")


def test_one_gpu_index_for_the_processes_of_a_machine_is_refused(two_gpus: None) -> None:
    """Every process would take cuda:1, which NCCL refuses ("Duplicate GPU detected")."""
    with pytest.raises(OVFormerError, match=r"`device`='cuda:1' names one GPU for all 2 processes on this machine"):
        choose_device("cuda:1", local_rank=0, local_world_size=2)
    assert choose_device("cuda", local_rank=1, local_world_size=2) == torch.device("cuda", 1)
    assert choose_device("cpu", local_rank=1, local_world_size=2) == torch.device("cpu")
    assert choose_device("cuda:1", local_rank=0, local_world_size=1) == torch.device("cuda", 1)  # one per machine


def test_a_process_that_sees_only_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schedulers that set CUDA_VISIBLE_DEVICES per process: its one GPU is cuda:0 whatever its LOCAL_RANK."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert choose_device("cuda", local_rank=3, local_world_size=4) == torch.device("cuda", 0)
    assert choose_device("cuda:0", local_rank=3, local_world_size=4) == torch.device("cuda", 0)


def test_process_group_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    assert ProcessGroup.from_env() == ProcessGroup(rank=5, world_size=8, local_rank=1, local_world_size=4)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")  # another launcher: assume every process on this machine
    assert ProcessGroup.from_env().local_world_size == 8


def test_process_group_joins_with_a_long_timeout_on_the_process_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    joined: list[tuple[str, object]] = []
    chosen: list[torch.device] = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: joined.append((backend, timeout)))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: None)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    with process_group(ProcessGroup(rank=1, world_size=2, local_rank=1), torch.device("cuda", 1)):
        assert joined == [("nccl", COLLECTIVE_TIMEOUT)] and chosen == [torch.device("cuda", 1)]
    with process_group(ProcessGroup(rank=1, world_size=2, local_rank=1), torch.device("cpu")):
        assert joined[-1] == ("gloo", COLLECTIVE_TIMEOUT) and len(chosen) == 1
    assert COLLECTIVE_TIMEOUT.total_seconds() > 10 * 60  # NCCL's default would kill a waiting rank

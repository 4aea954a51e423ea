"""CPU threading of the network: the OpenMP wait policy and the number of intra-op threads.

PyTorch's CPU kernels run on OpenMP (libgomp in the PyPI wheels). By default an OpenMP thread that
finishes its share of a parallel step spins, waiting for the next one. On an idle machine that saves a
few microseconds per step; on a shared one (another CPU-bound job, a CI runner) the spinning threads
compete with the thread that still has work, and every step waits for a descheduled thread. The
chunked pixel decoder runs thousands of small steps per window: measured on 2 cores with one competing
busy process, its time went from 2.1 s to 22-26 s with the default policy and 4.4 s with
``OMP_WAIT_POLICY=PASSIVE`` (issue 12; ``benchmarks/bench_load.py`` measures it again).

libgomp reads ``OMP_WAIT_POLICY`` once, when it is loaded (the first ``import torch``), so the CLI
sets it before anything imports torch; a value the user set is kept. Library users who import torch
themselves set the variable in their environment.

This module must not import torch at import time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

#: OpenMP's wait policy variable (OpenMP 5.2, section 21.2.2); read by libgomp when it loads.
WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
#: Idle OpenMP threads sleep instead of spinning (no collapse when the cores are shared).
PASSIVE_WAIT_POLICY = "PASSIVE"


def prefer_passive_wait(environ: MutableMapping[str, str] | None = None) -> bool:
    """Ask OpenMP threads to sleep when idle, unless the user chose a wait policy.

    Must run before torch is imported (libgomp reads the variable once, when it loads).

    Args:
        environ: the environment to update (default ``os.environ``).

    Returns:
        True when the passive policy is in effect for the torch this process will import: the variable
        was set here or already said PASSIVE, and torch was not imported yet.
    """
    env = os.environ if environ is None else environ
    if "torch" in sys.modules:
        return False
    env.setdefault(WAIT_POLICY_VAR, PASSIVE_WAIT_POLICY)
    return env[WAIT_POLICY_VAR].strip().upper() == PASSIVE_WAIT_POLICY


def set_threads(threads: int | None) -> int | None:
    """Set the number of intra-op CPU threads of torch (``--threads``).

    Args:
        threads: threads to use; None keeps torch's own choice (``OMP_NUM_THREADS`` when set, else the
            number of physical cores).

    Returns:
        The number of intra-op threads now in use; None when ``threads`` is None and torch is not imported
        yet (it is not imported for that: a command that fails before any model work stays quick).
    """
    if threads is None and "torch" not in sys.modules:
        return None
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()

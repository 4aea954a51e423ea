"""The OpenMP wait policy and ``--threads``: set where libgomp reads them, user choices kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.cpu_threads import prefer_passive_wait, set_threads

ROOT = Path(__file__).resolve().parents[1]


def openmp_display(extra_env: dict[str, str]) -> str:
    """stderr of a CLI command that imports torch, with libgomp printing its settings when it loads."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update({"OMP_DISPLAY_ENV": "TRUE", "PYTHONPATH": str(ROOT), **extra_env})
    # vocab-encode imports torch, then refuses the output name: no model is loaded
    done = subprocess.run(
        [sys.executable, "-m", "ovformer_cli", "vocab-encode", "a,b", "-o", "x.txt"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "must end in .vocab" in done.stderr
    if "OMP_WAIT_POLICY =" not in done.stderr:
        pytest.skip("torch's OpenMP runtime does not print its settings (not libgomp)")
    return done.stderr


def test_cli_makes_openmp_threads_wait_passively():
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in openmp_display({})


def test_cli_keeps_a_wait_policy_the_user_set():
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in openmp_display({"OMP_WAIT_POLICY": "active"})


def test_too_late_once_torch_is_imported():
    environ: dict[str, str] = {}
    assert "torch" in sys.modules
    assert prefer_passive_wait(environ) is False
    assert environ == {}


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(None) == 1  # None keeps the current setting
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="at least 1"):
        set_threads(0)


def test_segment_threads_option(tmp_path: Path):
    before = torch.get_num_threads()
    runner = CliRunner()
    try:
        # --threads is applied before the inputs are checked: a missing vocabulary still fails cleanly
        done = runner.invoke(app, ["segment", "--threads", "1", str(tmp_path / "none.mp4")])
        assert done.exit_code == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    refused = runner.invoke(app, ["segment", "--threads", "0", "x.mp4", "--vocab", "a", "-o", str(tmp_path / "o")])
    assert refused.exit_code == 2 and "--threads" in refused.output
    assert not (tmp_path / "o").exists()

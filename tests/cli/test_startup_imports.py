"""`ovformer --help` and every command's `--help` import no heavy library (torch, numpy, pycocotools, ...).

Each check runs a fresh interpreter: only there does ``sys.modules`` show what the CLI itself pulls in.
Timings belong in ``benchmarks/bench_startup.py``; these tests check what is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Libraries a command imports when it runs, never to print help (seconds of start-up between them).
HEAVY = (
    "torch",
    "numpy",
    "pycocotools",
    "open_clip",
    "timm",
    "av",
    "scipy",
    "PIL",
    "safetensors",
    "fastapi",
    "uvicorn",
)


def _run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, check=False)


def _imported_top_level(importtime_log: str) -> set[str]:
    """Top-level package names in a ``python -X importtime`` log (stderr)."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name.split(".")[0])
    return names


@pytest.mark.parametrize("command", [[], ["segment"]], ids=["ovformer", "segment"])
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    proc = _run_python("-X", "importtime", "-m", "ovformer_cli", *command, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage" in proc.stdout
    imported = _imported_top_level(proc.stderr)
    assert "typer" in imported  # the log was read: the CLI's own framework is in it
    assert sorted(imported & set(HEAVY)) == []


_EVERY_COMMAND_SCRIPT = """
import json, sys
import typer.main
from ovformer_cli.app import app

heavy = json.loads(sys.argv[1])
group = typer.main.get_command(app)
paths = []

def walk(command, path):
    paths.append(path)
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        walk(sub, [*path, name])

walk(group, [])
pulled = {}
seen = set()
for path in paths:
    label = " ".join(path) or "(top level)"
    try:
        app([*path, "--help"], prog_name="ovformer")
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            pulled[label] = [f"exit {exit_.code}"]
    new = [name for name in heavy if name in sys.modules and name not in seen]
    if new:
        pulled[label] = new
        seen.update(new)
print(json.dumps({"commands": [" ".join(p) for p in paths], "pulled": pulled}))
"""


def test_every_command_help_imports_nothing_heavy() -> None:
    """All commands and sub-commands, found from the app itself, so that a new one is covered too."""
    proc = _run_python("-c", _EVERY_COMMAND_SCRIPT, json.dumps(HEAVY))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"segment", "evaluate", "dataset", "train", "view"} <= set(report["commands"])
    assert any(command.startswith("dataset ") for command in report["commands"])
    # Each command whose help first imported a heavy library (or failed), with those libraries.
    assert report["pulled"] == {}

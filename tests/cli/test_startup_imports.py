"""`ovformer --help` and every command's `--help` import no heavy library (torch, numpy, pycocotools, ...).

``ovformer --help`` imports no command module at all (nor rich, nor pydantic), and a command's ``--help``
imports that command's module alone.

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

#: Imported by commands when they run, never to print help: rich's tables and progress bars, and pydantic
#: (Typer 0.29 converts parameter values with it; see ``ovformer_cli.lazy_commands.LazyGroup.get_help_option``).
NOT_FOR_HELP = ("rich.progress", "rich.table", "pydantic")


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


_MODULES_AFTER_SCRIPT = """
import json, runpy, sys
sys.argv = ["ovformer", *json.loads(sys.argv[1])]
try:
    runpy.run_module("ovformer_cli", run_name="__main__", alter_sys=True)
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def _modules_after(*command: str) -> list[str]:
    """Every module imported by ``ovformer COMMAND...`` (it must exit 0), in a fresh interpreter."""
    proc = _run_python("-c", _MODULES_AFTER_SCRIPT, json.dumps(command))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] in (0, None), proc.stdout[-2000:]
    return report["modules"]


def _command_modules(modules: list[str]) -> list[str]:
    return [name for name in modules if name.startswith("ovformer_cli.") and name.endswith("_cmd")]


def test_top_level_help_imports_no_command_nor_rich_nor_pydantic() -> None:
    modules = _modules_after("--help")
    assert "ovformer_cli.app" in modules  # the CLI ran in this interpreter
    assert _command_modules(modules) == []
    assert [name for name in modules if name.split(".")[0] in ("rich", "pydantic")] == []


@pytest.mark.parametrize(
    ("command", "module"),
    [
        (["segment"], "ovformer_cli.segment_cmd"),
        (["evaluate"], "ovformer_cli.evaluate_cmd"),
        (["dataset", "drop-rare"], "ovformer_cli.dataset_cmd"),
        (["weights"], "ovformer_cli.weights_cmd"),
    ],
    ids=["segment", "evaluate", "dataset drop-rare", "weights"],
)
def test_command_help_imports_that_command_alone(command: list[str], module: str) -> None:
    modules = _modules_after(*command, "--help")
    assert _command_modules(modules) == [module]
    assert sorted(set(modules) & set(NOT_FOR_HELP)) == []


_EVERY_COMMAND_SCRIPT = """
import json, sys
import typer
import typer.main
from ovformer_cli.app import app

heavy = json.loads(sys.argv[1])
group = typer.main.get_command(app)
paths = []

def walk(command, path, parent):
    # click's own API (list_commands/get_command): a lazily imported command is found as a user finds it.
    paths.append(path)
    ctx = typer.Context(command, info_name=path[-1] if path else "ovformer", parent=parent)
    for name in sorted(getattr(command, "list_commands", lambda ctx: [])(ctx)):
        walk(command.get_command(ctx, name), [*path, name], ctx)

walk(group, [], None)
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
    proc = _run_python("-c", _EVERY_COMMAND_SCRIPT, json.dumps([*HEAVY, *NOT_FOR_HELP]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"segment", "evaluate", "dataset", "train", "view"} <= set(report["commands"])
    assert any(command.startswith("dataset ") for command in report["commands"])
    # Each command whose help first imported a heavy library (or failed), with those libraries.
    assert report["pulled"] == {}


def test_segment_with_only_missing_inputs_answers_without_the_model_code(tmp_path) -> None:
    """A batch whose every input is missing needs no network: torch, timm and open_clip stay unimported."""
    missing = tmp_path / "nothere.mp4"
    proc = _run_python(
        "-X", "importtime", "-m", "ovformer_cli", "segment", str(missing), "--vocab", "cat", "-o", str(tmp_path / "o")
    )
    assert proc.returncode == 1
    assert f"{missing} does not exist; check the path" in proc.stderr
    imported = _imported_top_level(proc.stderr)
    assert "ovformer_core" in imported  # the log was read: the batch ran
    assert sorted(imported & {"torch", "timm", "open_clip", "scipy"}) == []
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())

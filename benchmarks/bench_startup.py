"""Start-up time of ``ovformer --help``, ``ovformer segment --help`` and a command's start, against a bare interpreter.

The command's start is ``ovformer evaluate`` without its options: Typer parses the arguments and stops
with a usage error (exit 2), the path every run takes before any work.

Each round runs every command once, in turn (A/B/C, A/B/C, ...: the machine is shared and noisy, so
the baseline is measured alongside, never taken from another run); the figures are medians over the
rounds. ``python -c pass`` is the baseline: the interpreter's own start-up, which no CLI can beat.
Two settings: idle, and with one competing CPU-bound process (``python -c "while True: pass"``) started
by this script and stopped at the end.

Bytecode is cached in a temporary folder (``PYTHONPYCACHEPREFIX``; ``PYTHONDONTWRITEBYTECODE`` is dropped),
as an installed package has its ``.pyc`` files: otherwise every run would compile the checkout's modules again
(``--no-bytecode-cache`` measures that case: ``PYTHONDONTWRITEBYTECODE=1``, the checkout compiled on every run).
Load averages are printed before and after: on a shared machine, they say how far to trust the figures.

Run from the repository root (the CLI of this checkout is used)::

    python benchmarks/bench_startup.py [--rounds 15] [--setting idle|loaded|both]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The goal for ``ovformer --help`` (issue 12).
TARGET_S = 0.5

#: Name -> (command line, its expected exit status).
COMMANDS = {
    "python -c pass": ([sys.executable, "-c", "pass"], 0),
    "ovformer --help": ([sys.executable, "-m", "ovformer_cli", "--help"], 0),
    "ovformer segment --help": ([sys.executable, "-m", "ovformer_cli", "segment", "--help"], 0),
    "ovformer evaluate (usage error)": ([sys.executable, "-m", "ovformer_cli", "evaluate"], 2),
}


def _environment(pycache: str | None) -> dict[str, str]:
    """The checkout first on the path; bytecode cached under ``pycache``, or never written when None."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _run(command: tuple[list[str], int], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds (user + system) of one run of ``command``."""
    argv, expected_status = command
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    if done.returncode != expected_status:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}, expected {expected_status}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(rounds: int, pycache: str | None) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per run of each command, the commands taking turns within every round."""
    env = _environment(pycache)
    for command in COMMANDS.values():  # warm the file cache and write the bytecode cache; not timed
        _run(command, env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, command in COMMANDS.items():
            times[name].append(_run(command, env))
    return times


def report(setting: str, times: dict[str, list[tuple[float, float]]]) -> None:
    walls = {name: [w for w, _ in runs] for name, runs in times.items()}
    cpus = {name: [c for _, c in runs] for name, runs in times.items()}
    baseline = statistics.median(walls["python -c pass"])
    print(f"{setting}: median of {len(walls['python -c pass'])} runs each, commands taking turns")
    for name, values in walls.items():
        median = statistics.median(values)
        line = (
            f"  {name:<31} wall {median:6.3f} s (min {min(values):.3f}, max {max(values):.3f})"
            f"  cpu {statistics.median(cpus[name]):6.3f} s"
        )
        if name != "python -c pass":
            line += f"  {median / baseline:5.1f}x the bare interpreter (+{median - baseline:.3f} s)"
        if name == "ovformer --help":
            line += f"  target <= {TARGET_S} s: {'met' if median <= TARGET_S else 'NOT met'}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--setting", choices=["idle", "loaded", "both"], default="both")
    parser.add_argument("--no-bytecode-cache", action="store_true", help="compile the checkout on every run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, checkout {ROOT}")
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("bytecode:", "not cached (compiled on every run)" if args.no_bytecode_cache else "cached")
    with tempfile.TemporaryDirectory(prefix="ovformer-pycache-") as folder:
        pycache = None if args.no_bytecode_cache else folder
        if args.setting in ("idle", "both"):
            report("idle", measure(args.rounds, pycache))
        if args.setting in ("loaded", "both"):
            competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.5)
                report("loaded (one competing CPU-bound process)", measure(args.rounds, pycache))
            finally:
                competitor.kill()
                competitor.wait()
    print("load average (1, 5, 15 min) after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()

"""One window idle and with a competing CPU-bound process, per OpenMP wait policy, alternated A/B/A/B.

Each measurement is a fresh ``bench_speed.py --variants fast`` process (the wait policy is read once,
when libgomp loads, so it cannot change inside one process). A "loaded" run starts one busy process
(``python -c "while True: pass"``) for its duration. Rounds alternate idle and loaded, policy by policy,
so a shared machine's drift hits every cell alike.

    python benchmarks/bench_load.py                                   # R50 @ 360p, fp32, 2 rounds
    python benchmarks/bench_load.py --policies default PASSIVE --rounds 3 --threads 2

Prints per-stage seconds (median over rounds) and the loaded/idle ratio per stage and window.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("fast_backbone_s", "fast_pixel_decoder_s", "fast_decoder_s", "fast_window_s")
#: Issue 12's bound: a window with one competing busy process takes at most this times its idle time.
LOADED_BOUND = 2.5


def run_window(policy: str, loaded: bool, args: argparse.Namespace) -> dict:
    """Stage seconds of one fresh ``bench_speed.py`` process under ``policy`` (``default`` = unset)."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            command = [
                sys.executable,
                str(ROOT / "benchmarks/bench_speed.py"),
                "--variants",
                "fast",
                "--configs",
                args.config,
                "--heights",
                str(args.height),
                "--precisions",
                args.precision,
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--json",
                str(out),
            ]
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            return json.loads(out.read_text())["windows"][0]
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["default", "PASSIVE"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--config", default="r50", choices=["r50", "swinb"])
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cells: dict[tuple[str, bool], list[dict]] = {}
    for round_index in range(args.rounds):
        for policy in args.policies:
            for loaded in (False, True):
                row = run_window(policy, loaded, args)
                cells.setdefault((policy, loaded), []).append(row)
                state = "loaded" if loaded else "idle"
                print(
                    f"round {round_index + 1} {policy:>8} {state:>6}: window {row['fast_window_s']:.2f} s", flush=True
                )
    print(f"\n{'policy':<9}{'state':<8}" + "".join(f"{s[5:-2]:>15}" for s in STAGES))
    medians = {
        key: {stage: statistics.median(r[stage] for r in rows) for stage in STAGES} for key, rows in cells.items()
    }
    for policy in args.policies:
        idle, loaded = medians[(policy, False)], medians[(policy, True)]
        print(f"{policy:<9}{'idle':<8}" + "".join(f"{idle[s]:>15.2f}" for s in STAGES))
        print(f"{policy:<9}{'loaded':<8}" + "".join(f"{loaded[s]:>15.2f}" for s in STAGES))
        print(f"{policy:<9}{'ratio':<8}" + "".join(f"{loaded[s] / idle[s]:>15.2f}" for s in STAGES))
        verdict = "ok" if loaded["fast_window_s"] <= LOADED_BOUND * idle["fast_window_s"] else "over"
        ratio = loaded["fast_window_s"] / idle["fast_window_s"]
        print(f"{policy}: loaded/idle window {ratio:.2f} ({verdict}, bound {LOADED_BOUND})")
    if args.json:
        table = {f"{policy}_{'loaded' if busy else 'idle'}": rows for (policy, busy), rows in cells.items()}
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()

"""The GPU check of issue 12: parity on every fixture, per-stage and end-to-end speed, memory, compile.

Run it through ``benchmarks/gpu_check.sh`` on a CUDA machine (about 6 minutes on one H100/H200); each
step runs in its own process under a time box, so one that hangs or fails costs only its own box.
``--device cpu --quick`` runs every step on tiny inputs to prove the script works without a GPU.

    python benchmarks/gpu_check.py --device cuda --out runs/gpu        # the full check
    python benchmarks/gpu_check.py --device cpu --quick               # the smoke run (minutes per step)

Steps (each prints its figures and appends one JSON object per line to ``OUT/gpu_check.jsonl``):

- ``env``: torch, device, bf16 support, what ``--precision auto`` resolves to;
- ``parity``: video_tiny per-clip raw outputs, the semi-online final result and the zero-shot
  per-frame final result on the device, fp32 to the fixtures' tolerances (TF32 off) and bf16 to the
  accuracy guard (``tests/reference_fixtures.py``); on CUDA also fp32 with PyTorch's TF32 defaults
  (cuDNN convolutions in TF32) around the library, which turns TF32 off for its fp32 network itself;
- ``guard``: the full-size random-weight R-50 network, bf16 against fp32 on one window, with the
  backbone's frozen BNs folded into its convolutions (the default) and apart;
- ``speed_r50``, ``speed_swinb``: per-stage seconds of one 5-frame window, reference path and fast
  path, at 360 and 480, fp32 and bf16 (``bench_speed.bench_window``), frames/s and peak GPU memory;
- ``e2e``: the streaming segmenter (network, association, mask upsampling, RLE) on a frame array against
  the network alone, in the caller's thread and with the mask worker (``bench_pipeline.py``);
- ``compile``: torch.compile (inductor; with CUDA graphs, ``reduce-overhead``, on CUDA) against eager on
  the R-50 window (bf16 on CUDA, fp32 on a CPU), taking turns;
- ``cpu``: the host CPU, fp32 against bf16 on one R-50 window (AMX / AVX512-BF16 hosts show the gain);
- ``profile``: the pixel decoder's kernels, fp32 and bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_speed import bench_window, fast_and_reference, print_windows  # noqa: E402
from ovformer_core.config import r50_config  # noqa: E402
from ovformer_core.inference.precision import (  # noqa: E402
    ResolvedPrecision,
    autocast_dtype,
    cpu_has_fast_bf16,
    ieee_float32,
    resolve_precision,
)
from ovformer_core.model.build import build_model  # noqa: E402
from ovformer_core.model.preprocess import normalize_and_pad  # noqa: E402

#: Seconds each step may take on the GPU (480 s together: the whole check fits in 8 minutes).
TIME_BOX = {
    "env": 20,
    "parity": 60,
    "guard": 40,
    "speed_r50": 70,
    "speed_swinb": 100,
    "e2e": 60,
    "compile": 90,
    "cpu": 40,
    "profile": 40,
}
#: Steps run with TF32 off throughout (``ieee_float32``, as the library's fp32): the fixtures and the
#: fp32/bf16 comparisons were made in true float32. ``parity`` sets it per run; ``compile`` must not
#: (inductor reads the boolean TF32 getters, which raise under the per-operator settings).
FLOAT32_EXACT_STEPS = ("guard", "speed_r50", "speed_swinb", "profile")
#: Steps run by default (``profile`` is a diagnostic, run with ``--steps profile``).
STEPS = tuple(step for step in TIME_BOX if step != "profile")


def emit(out: Path, step: str, record: dict) -> None:
    """Print one record and append it to ``out/gpu_check.jsonl``."""
    record = {"step": step, **record}
    line = json.dumps(record, default=float)  # numpy scalars
    print(line, flush=True)
    with (out / "gpu_check.jsonl").open("a") as file:
        file.write(line + "\n")


def random_r50_window(
    device: torch.device, height: int, fold_bn: bool = True
) -> tuple[torch.nn.Module, Tensor, Tensor, Tensor]:
    """A seeded random-weight fast-path R-50 and one random 5-frame window at ``height`` x 16:9.

    ``fold_bn`` (``BackboneConfig.fold_bn``) changes how the frozen BNs are applied, not the weights.

    Returns:
        model, pixels [1, 5, 3, H', W'] (normalised, padded), CLIP frame embeddings [1, 5, 512] and
        text embeddings [512, 1197] (LV-VIS's 1,196 classes and a zeroed background column).
    """
    cfg = fast_and_reference(r50_config())["fast"]
    cfg = replace(cfg, backbone=replace(cfg.backbone, fold_bn=fold_bn))
    torch.manual_seed(0)
    model = build_model(cfg).eval().to(device)
    frames = torch.randint(0, 256, (5, height, round(height * 16 / 9), 3), dtype=torch.uint8)
    pixels = normalize_and_pad(frames.to(device), cfg.pixel_mean, cfg.pixel_std, 32)[None]
    clip_embeds = torch.randn(1, 5, 512, device=device)
    text = torch.nn.functional.normalize(torch.randn(512, 1197, device=device), dim=0)
    text[:, -1] = 0
    return model, pixels, clip_embeds, text


def step_env(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    record: dict = {"torch": torch.__version__, "device": str(device), "fast_cpu_bf16": cpu_has_fast_bf16()}
    if device.type == "cuda":
        record |= {
            "gpu": torch.cuda.get_device_name(device),
            "capability": list(torch.cuda.get_device_capability(device)),
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    record["auto_precision"] = resolve_precision("auto", device)
    emit(args.out, "env", record)


def step_parity(args: argparse.Namespace) -> None:
    """Every fixture in fp32 and bf16 with TF32 off; on CUDA fp32 once more with PyTorch's TF32 defaults.

    PyTorch lets cuDNN convolutions use TF32 by default; the library turns it off around the network in
    fp32 (``ieee_float32``). In the last run the raw-clip check calls the model directly, under those
    defaults, so it shows what TF32 would cost; the final checks go through ``StreamingSegmenter`` as the
    CLI does, so they confirm that ``--precision fp32`` on a GPU passes the fixtures whatever the defaults.
    """
    from tests.inference.fixture_checks import check_video_tiny_final, check_video_tiny_raw, check_zeroshot_final

    device = torch.device(args.device)

    def check_all(precision: ResolvedPrecision, tf32: str) -> None:
        for name, check in (
            ("video_tiny raw clips", check_video_tiny_raw),
            ("video_tiny semi-online final", check_video_tiny_final),
            ("zeroshot_video_tiny per-frame final", check_zeroshot_final),
        ):
            where = {"fixture": name, "precision": precision, "tf32": tf32}
            try:
                figures = check(device, precision)
                emit(args.out, "parity", {**where, "ok": True, **figures})
            except Exception as err:  # noqa: BLE001 - report it and go on with the other fixtures
                emit(args.out, "parity", {**where, "ok": False, "error": f"{type(err).__name__}: {err}"})

    with ieee_float32(device):
        check_all("fp32", "off")
        check_all("bf16", "off")
    if device.type == "cuda":
        check_all("fp32", "pytorch default")


@torch.inference_mode()
def step_guard(args: argparse.Namespace) -> None:
    """Full-size random-weight R-50: bf16 against fp32 on one window (raw outputs, top-k pairs).

    Once with the backbone's frozen BNs folded into its convolutions (the default) and once apart,
    same weights and input: folded, the backbone's activations stay bf16 between convolutions.
    """
    for fold_bn in (True, False):
        guard_window(args, fold_bn)


def guard_window(args: argparse.Namespace, fold_bn: bool) -> None:
    """One ``step_guard`` record."""
    from ovformer_core.inference.postprocess import pair_scores, top_k_pairs

    device = torch.device(args.device)
    height = 96 if args.quick else 360
    model, pixels, clip_embeds, text = random_r50_window(device, height, fold_bn)
    outs = {}
    for precision in ("fp32", "bf16"):
        dtype = autocast_dtype(precision)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outs[precision] = model(pixels, clip_embeds, text)
    ref, low = outs["fp32"], outs["bf16"]
    record: dict = {"height": height, "fold_bn": fold_bn}
    for name in ("class_logits", "mask_logits", "query_embeds"):
        a, b = getattr(ref, name).float(), getattr(low, name).float()
        record[f"{name}_max_abs"] = (a - b).abs().max().item()
        record[f"{name}_scale"] = a.abs().max().item()
    k = 50
    sets = []
    for out in (ref, low):
        _, labels, slots = top_k_pairs(pair_scores(out.class_logits[0].float(), out.object_logits[0].float()), k)
        sets.append(set(zip(slots.tolist(), labels.tolist(), strict=True)))
    record["topk_overlap"] = len(sets[0] & sets[1]) / k
    masks = (ref.mask_logits > 0) != (low.mask_logits > 0)
    record["mask_pixels_flipped"] = masks.float().mean().item()
    emit(args.out, "guard", record)


def step_speed(args: argparse.Namespace, name: str) -> None:
    """One window through each stage, reference and fast path, at each height and precision."""
    device = torch.device(args.device)
    heights = [96] if args.quick else [360, 480]
    variants = ("fast",) if args.quick else ("reference", "fast")
    rows = []
    for height in heights:
        for precision in ("fp32", "bf16"):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            row = bench_window(name, height, precision, device, 1 if args.quick else 3, variants)
            row["fast_fps"] = 5 / row["fast_window_s"]
            rows.append(row)
            emit(args.out, f"speed_{name}", row)
    print_windows(rows)


def step_e2e(args: argparse.Namespace) -> None:
    """The window loop against the network alone (``bench_pipeline.py``), serial and with the mask worker.

    Not the ``before`` variant (the old post-processing, about 5 s per 40 frames on the host): its time
    would crowd the box, and the figure that counts is the ratio to the network alone.
    """
    command = [
        *(sys.executable, str(ROOT / "benchmarks" / "bench_pipeline.py"), "--device", args.device),
        *("--variants", "network", "serial", "pipelined"),
    ]
    sizes = ["--height", "96", "--frames", "5", "--rounds", "1"] if args.quick else ["--frames", "40", "--rounds", "2"]
    for precision in ("bf16", "fp32"):
        report = subprocess.run([*command, *sizes, "--precision", precision, "--json"], capture_output=True, text=True)
        print(report.stdout, report.stderr, flush=True)
        for line in report.stdout.splitlines():
            if line.startswith("{"):
                emit(args.out, "e2e", json.loads(line))


@torch.inference_mode()
def step_compile(args: argparse.Namespace) -> None:
    """torch.compile against eager on the R-50 window, taking turns; the first call (the compile) timed apart.

    On CUDA: bf16, inductor with CUDA graphs (``reduce-overhead``: the window is many small kernels). On a
    CPU: fp32 (bf16 pays only on AMX hosts, see ``cpu``) and plain inductor.
    """
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    height = 96 if args.quick else 360
    model, pixels, clip_embeds, text = random_r50_window(device, height)
    mode = "reduce-overhead" if cuda and not args.quick else "default"
    dtype = torch.bfloat16 if cuda else None
    compiled = torch.compile(model, mode=mode)
    rounds = 2 if args.quick else 10 if cuda else 5
    times: dict[str, list[float]] = {"eager": [], mode: []}
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        eager_out = model(pixels, clip_embeds, text)
        start = time.perf_counter()
        compiled_out = compiled(pixels, clip_embeds, text)
        sync(device)
        first = time.perf_counter() - start
        # Now: with CUDA graphs the next compiled call overwrites these outputs.
        diff = max(
            (eager_out.mask_logits - compiled_out.mask_logits).abs().max().item(),
            (eager_out.class_logits - compiled_out.class_logits).abs().max().item(),
        )
        for _ in range(rounds):
            for name, run in (("eager", model), (mode, compiled)):
                sync(device)
                start = time.perf_counter()
                run(pixels, clip_embeds, text)
                sync(device)
                times[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    for name, seconds in medians.items():
        record = {"mode": name, "height": height, "precision": "bf16" if cuda else "fp32", "window_s": seconds}
        if name != "eager":
            record |= {"first_call_s": first, "speedup": medians["eager"] / seconds, "max_abs_diff": diff}
        emit(args.out, "compile", record | {"fps": 5 / seconds})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_cpu(args: argparse.Namespace) -> None:
    """The host CPU: fp32 vs bf16 on one fast-path R-50 window, all cores first, then 2 threads."""
    height = 96 if args.quick else 360
    cpu = torch.device("cpu")
    precisions = ("fp32", "bf16") if cpu_has_fast_bf16() or args.quick else ("fp32",)
    for threads in dict.fromkeys([torch.get_num_threads(), 2]):
        torch.set_num_threads(threads)
        for precision in precisions:
            row = bench_window("r50", height, precision, cpu, 1, ("fast",))
            record = {k: v for k, v in row.items() if k.startswith("fast_")}
            emit(args.out, "cpu", {"threads": threads, "precision": precision, **record})


@torch.inference_mode()
def step_profile(args: argparse.Namespace) -> None:
    """The kernels that take the time in the pixel decoder, fp32 and bf16 (R-50, default config)."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(args.device)
    height = 96 if args.quick else 360
    cfg = r50_config()
    torch.manual_seed(0)
    model = build_model(cfg).eval().to(device)
    frames = torch.randint(0, 256, (5, height, round(height * 16 / 9), 3), dtype=torch.uint8)
    pixels = normalize_and_pad(frames.to(device), cfg.pixel_mean, cfg.pixel_std, 32)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for precision in ("fp32", "bf16"):
        dtype = autocast_dtype(precision)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            features = model.backbone(pixels.contiguous(memory_format=torch.channels_last))
            model.pixel_decoder(features)
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with profile(activities=activities) as prof:
                model.pixel_decoder(features)
                sync(device)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"pixel decoder, {precision}:\n" + prof.key_averages().table(sort_by=key, row_limit=12), flush=True)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        record = {"precision": precision, "peak_gpu_mib": peak}
        if device.type == "cuda":
            record |= memory_diagnosis(model.pixel_decoder, features, precision, dtype, activities)
        emit(args.out, "profile", record)


def memory_diagnosis(
    pixel_decoder: torch.nn.Module,
    features: dict[str, Tensor],
    precision: str,
    dtype: torch.dtype | None,
    activities: list,
) -> dict:
    """Where the pixel decoder's peak GPU memory goes: the ops that allocate most, and the peak without cuDNN.

    The fp32 pixel decoder peaked at 34-35 GB on an H200 against 1.5 GB in bf16 (issue 12); a cuDNN
    convolution algorithm with a huge workspace is one suspect, which the peak with cuDNN off confirms
    or rules out.
    """
    from torch.profiler import profile

    device = next(pixel_decoder.parameters()).device
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        with profile(activities=activities, profile_memory=True) as prof:
            pixel_decoder(features)
            sync(device)
        table = prof.key_averages().table(sort_by="self_device_memory_usage", row_limit=8)
        print(f"pixel decoder, {precision}, by GPU memory allocated:\n{table}", flush=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        # cuDNN off by its own switch: ``cudnn.flags()`` would read the boolean TF32 getter, which raises
        # once the per-operator TF32 settings differ (``ieee_float32``, around this step)
        was_enabled = torch.backends.cudnn.enabled
        torch.backends.cudnn.enabled = False
        try:
            pixel_decoder(features)
            sync(device)
        finally:
            torch.backends.cudnn.enabled = was_enabled
    return {"peak_gpu_mib_without_cudnn": torch.cuda.max_memory_allocated(device) / 2**20}


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_steps(args: argparse.Namespace) -> int:
    """Every requested step in its own process under its time box; the number that failed."""
    # A step runs in a process group of its own (below), out of reach of a signal sent to ours: SIGTERM
    # (a time limit) and SIGHUP must unwind through the ``finally`` that stops the step's group.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _exit_on_signal)
    failed = 0
    scale = 1 if args.device != "cpu" else 8  # a shared 2-core CPU takes minutes even on tiny inputs
    for step in args.steps:
        if step == "compile" and args.device == "cpu" and args.quick:
            print("== compile: skipped on CPU (inductor compiles C++; the GPU run covers it)", flush=True)
            continue
        box = TIME_BOX[step] * scale
        print(f"== {step} (time box {box} s)", flush=True)
        command = [sys.executable, __file__, "--step", step, "--device", args.device, "--out", str(args.out)]
        start = time.perf_counter()
        # A process group of its own, so that a step stopped at its box takes the processes it started
        # (``e2e`` runs ``bench_pipeline.py``) along instead of leaving them on the GPU.
        step_process = subprocess.Popen(command + (["--quick"] if args.quick else []), start_new_session=True)
        try:
            returncode = step_process.wait(timeout=box)
            status = "ok" if returncode == 0 else f"failed (exit {returncode})"
        except subprocess.TimeoutExpired:
            status = f"stopped at its {box} s time box"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(step_process.pid, signal.SIGKILL)
            step_process.wait()
        failed += status != "ok"
        print(f"== {step}: {status} in {time.perf_counter() - start:.0f} s", flush=True)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny inputs: a smoke run of every step")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check_out")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(TIME_BOX))
    parser.add_argument("--step", choices=list(TIME_BOX), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step is None:
        raise SystemExit(1 if run_steps(args) else 0)
    steps: dict[str, Callable[[argparse.Namespace], None]] = {
        "env": step_env,
        "parity": step_parity,
        "guard": step_guard,
        "speed_r50": lambda a: step_speed(a, "r50"),
        "speed_swinb": lambda a: step_speed(a, "swinb"),
        "e2e": step_e2e,
        "compile": step_compile,
        "cpu": step_cpu,
        "profile": step_profile,
    }
    exact = args.step in FLOAT32_EXACT_STEPS
    with ieee_float32(torch.device(args.device)) if exact else contextlib.nullcontext():
        steps[args.step](args)


if __name__ == "__main__":
    main()

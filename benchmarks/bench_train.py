"""Training step cost: seconds per iteration and peak memory, per deformable-attention implementation.

One iteration = forward with deep supervision, the official criterion (Hungarian matching on every
head, 12,544 points per mask), backward, full-model clipping and AdamW, on a synthetic 2-frame clip
batch with a few instances (random weights of the official shapes). Compares the reference
deformable attention (the official algorithm, grid_sample) with the gather fast path and checks that
their gradients agree.

    python benchmarks/bench_train.py                                   # CPU, R50, 360x640, batch 1
    python benchmarks/bench_train.py --device cuda --configs r50 swinb --batch 2 --amp
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovformer_core.config import ModelConfig, r50_config, swinb_config  # noqa: E402
from ovformer_core.model.build import build_model  # noqa: E402
from ovformer_core.train.criterion import LossConfig, SetCriterion, weighted_total  # noqa: E402
from ovformer_core.train.matcher import VideoTarget  # noqa: E402
from ovformer_core.train.optim import OptimConfig, build_optimizer, clip_gradients  # noqa: E402


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_batch(batch: int, frames: int, height: int, width: int, num_classes: int, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, frames, 3, height, width, generator=generator).to(device)
    clip_embeds = torch.randn(batch, frames, 512, generator=generator).to(device)
    text = torch.nn.functional.normalize(torch.randn(512, num_classes + 1, generator=generator), dim=0)
    text[:, -1] = 0
    targets = []
    for b in range(batch):
        masks = torch.zeros(3, frames, height, width, dtype=torch.bool)
        for n in range(3):
            top, left = 20 + 60 * n, 40 + 100 * n + 10 * b
            masks[n, :, top : top + 80, left : left + 120] = True
        targets.append(VideoTarget(labels=torch.tensor([1, 5, 9]).to(device), masks=masks.to(device)))
    return pixels, clip_embeds, text.to(device), targets


def run(cfg: ModelConfig, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    criterion = SetCriterion(cfg.num_classes, LossConfig())
    optimizer = build_optimizer(model, OptimConfig())
    pixels, clip_embeds, text, targets = synthetic_batch(
        args.batch, args.frames, args.height, args.width, cfg.num_classes, device
    )

    def step(update: bool = True) -> None:
        generator = torch.Generator(device).manual_seed(0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            out = model(pixels, clip_embeds, text, with_aux=True)
        loss = weighted_total(criterion(out, targets, out.aux, generator=generator), criterion.config)
        loss.backward()
        clip_gradients(model, 0.01)
        if update:
            optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    # Gradients of one step, for the comparison between implementations (no update).
    step(update=False)
    optimizer.zero_grad(set_to_none=True)
    generator = torch.Generator(device).manual_seed(0)
    out = model(pixels, clip_embeds, text, with_aux=True)
    weighted_total(criterion(out, targets, out.aux, generator=generator), criterion.config).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    optimizer.zero_grad(set_to_none=True)
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    # CUDA: this run's peak allocation. CPU: the process's peak so far (the second run's figure
    # includes the first run's peak, so it is an upper bound).
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        memory = peak_rss_mib()
    return {"seconds_per_iteration": statistics.median(times), "peak_mib": memory, "grads": grads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+", default=["r50"], choices=["r50", "swinb"])
    parser.add_argument("--batch", type=int, default=1, help="clips per micro-batch")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.configs:
        base = r50_config() if name == "r50" else swinb_config()
        results = {}
        for impl in ("reference", "gather"):
            cfg = replace(base, pixel_decoder=replace(base.pixel_decoder, deform_attn_impl=impl))
            results[impl] = run(cfg, args, device)
        grads_ref, grads_fast = results["reference"].pop("grads"), results["gather"].pop("grads")
        max_rel = max(
            float((grads_ref[k] - grads_fast[k]).norm() / grads_ref[k].norm().clamp_min(1e-12)) for k in grads_ref
        )
        ref_s = results["reference"]["seconds_per_iteration"]
        fast_s = results["gather"]["seconds_per_iteration"]
        rows.append(
            {
                "config": name,
                "device": str(device),
                "batch": args.batch,
                "frames": args.frames,
                "size": f"{args.height}x{args.width}",
                "reference_s": ref_s,
                "gather_s": fast_s,
                "speedup": ref_s / fast_s,
                "reference_peak_mib": results["reference"]["peak_mib"],
                "gather_peak_mib": results["gather"]["peak_mib"],
                "max_relative_grad_diff": max_rel,
            }
        )
    print(
        "| config | device | clips x frames | size | reference s/it | gather s/it | ratio "
        "| peak MiB (ref / both) | grad rel. diff |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['config']} | {r['device']} | {r['batch']} x {r['frames']} | {r['size']} | {r['reference_s']:.2f} | "
            f"{r['gather_s']:.2f} | {r['speedup']:.2f}x | {r['reference_peak_mib']:.0f} / {r['gather_peak_mib']:.0f} | "
            f"{r['max_relative_grad_diff']:.1e} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

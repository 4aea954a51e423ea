"""Per-stage timing of one semi-online window, reference path vs fast path, on CPU or CUDA.

For each requested config (R50 / Swin-B video models, random weights of the official shapes) and
input height, one window of 5 frames goes through: CLIP frame embeddings, backbone, pixel decoder
(with each deformable-attention implementation), decoder + classifier, association, mask upsampling
+ RLE. The fast path's outputs are checked against the reference path's in the same run.

    python benchmarks/bench_speed.py                          # CPU, R50 @ 360p, fp32
    python benchmarks/bench_speed.py --device cuda --configs r50 swinb --heights 360 480 --precisions fp32 bf16

Prints a table and, with --json, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovformer_core.config import ModelConfig, r50_config, swinb_config  # noqa: E402
from ovformer_core.inference.mask_store import MaskStore  # noqa: E402
from ovformer_core.inference.postprocess import masks_to_original  # noqa: E402
from ovformer_core.inference.tracker import QueryTracks  # noqa: E402
from ovformer_core.model.build import build_model  # noqa: E402
from ovformer_core.model.preprocess import PreprocessInfo, normalize_and_pad  # noqa: E402

#: Parity tolerance between paths (the fixtures' float tolerance); bf16 gets a wider documented one.
TOLERANCE = {"fp32": 1e-3, "bf16": 0.25, "fp16": 0.1}


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Median wall-clock seconds of ``repeats`` calls (after one warm-up) and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def with_impl(cfg: ModelConfig, impl: str) -> ModelConfig:
    return replace(cfg, pixel_decoder=replace(cfg.pixel_decoder, deform_attn_impl=impl))


@torch.inference_mode()
def bench_window(name: str, height: int, precision: str, device: torch.device, repeats: int) -> dict:
    width = int(round(height * 16 / 9))
    base = r50_config() if name == "r50" else swinb_config()
    torch.manual_seed(0)
    model = build_model(with_impl(base, "reference")).eval().to(device)
    frames = torch.randint(0, 256, (5, height, width, 3), dtype=torch.uint8)
    pixels = normalize_and_pad(frames.to(device), base.pixel_mean, base.pixel_std, 32)
    clip_embeds = torch.randn(1, 5, 512, device=device)
    text = torch.nn.functional.normalize(torch.randn(512, 1197, device=device), dim=0)
    text[:, -1] = 0
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    row: dict = {"config": name, "height": height, "width": width, "precision": precision, "device": str(device)}
    with autocast():
        row["backbone_s"], features = timed(lambda: model.backbone(pixels), device, repeats)
    impls = ["reference", "gather"]
    outputs = {}
    for impl in impls:
        for module in model.pixel_decoder.encoder_layers:
            module.self_attn.impl = impl
        with autocast():
            seconds, decoded = timed(lambda: model.pixel_decoder(features), device, repeats)
        row[f"pixel_decoder_{impl}_s"] = seconds
        outputs[impl] = decoded
    with autocast():
        row["decoder_s"], out = timed(
            lambda: model.decoder(outputs["gather"].multi_scale, outputs["gather"].mask_features, clip_embeds, text),
            device,
            repeats,
        )
    diffs = [
        (outputs["reference"].mask_features - outputs["gather"].mask_features).abs().max().item(),
        *[(a - b).abs().max().item() for a, b in zip(outputs["reference"].multi_scale, outputs["gather"].multi_scale)],
    ]
    row["fast_vs_reference_max_abs"] = max(diffs)
    row["parity_ok"] = row["fast_vs_reference_max_abs"] <= TOLERANCE[precision] * max(
        1.0, outputs["reference"].mask_features.abs().max().item()
    )

    tracks = QueryTracks()
    embeds = out.query_embeds[0].float()
    tracks.update(embeds, out.final.class_logits[0].float(), out.final.object_logits[0].float())
    row["association_s"], _ = timed(
        lambda: tracks.update(embeds, out.final.class_logits[0].float(), out.final.object_logits[0].float()),
        device,
        repeats,
    )
    info = PreprocessInfo((height, width), (height, width), tuple(pixels.shape[-2:]))

    def masks_and_rle() -> None:
        masks = masks_to_original(out.final.mask_logits[0].float(), info).cpu().numpy()
        store = MaskStore(masks.shape[0])
        for t in range(masks.shape[1]):
            store.append_frame(masks[:, t])
        store.close()

    row["masks_rle_s"], _ = timed(masks_and_rle, device, max(1, repeats // 2))
    row["window_reference_s"] = row["backbone_s"] + row["pixel_decoder_reference_s"] + row["decoder_s"]
    row["window_fast_s"] = row["backbone_s"] + row["pixel_decoder_gather_s"] + row["decoder_s"]
    row["speedup"] = row["window_reference_s"] / row["window_fast_s"]
    row["peak_host_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+", default=["r50"], choices=["r50", "swinb"])
    parser.add_argument("--heights", nargs="+", type=int, default=[360])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the reference timing used 2)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [
        bench_window(c, h, p, device, args.repeats) for c in args.configs for h in args.heights for p in args.precisions
    ]
    header = (
        f"{'config':<7}{'size':>9}{'prec':>6}{'backbone':>10}{'pixdec ref':>12}{'pixdec fast':>13}"
        f"{'decoder':>9}{'assoc':>8}{'mask+rle':>10}{'window ref':>12}{'window fast':>13}{'ratio':>7}"
        f"{'maxdiff':>10}{'parity':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['config']:<7}{r['height']:>4}x{r['width']:<4}{r['precision']:>6}{r['backbone_s']:>10.3f}"
            f"{r['pixel_decoder_reference_s']:>12.3f}{r['pixel_decoder_gather_s']:>13.3f}{r['decoder_s']:>9.3f}"
            f"{r['association_s']:>8.4f}{r['masks_rle_s']:>10.3f}{r['window_reference_s']:>12.3f}"
            f"{r['window_fast_s']:>13.3f}{r['speedup']:>7.2f}{r['fast_vs_reference_max_abs']:>10.2e}"
            f"{'ok' if r['parity_ok'] else 'FAIL':>8}"
        )
    baseline = json.loads((ROOT / "tests/fixtures/reference/timing_cpu.json").read_text())
    official = baseline["full_r50_video_config"]["median_s"]
    for r in rows:
        if r["config"] == "r50" and r["height"] == 360 and r["device"] == "cpu":
            print(
                f"official R50@360x640 forward on this CPU class: {official:.2f} s/window; "
                f"ours: reference {r['window_reference_s']:.2f} s, fast {r['window_fast_s']:.2f} s "
                f"({official / r['window_fast_s']:.2f}x the official)"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if not all(r["parity_ok"] for r in rows):
        raise SystemExit("fast path disagrees with the reference path beyond tolerance")


if __name__ == "__main__":
    main()

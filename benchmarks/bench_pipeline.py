"""End to end against the network alone: is the window loop bound by the network (issue 12, goal 4)?

Four variants of the streaming segmenter on the same random frames, taking turns round by round
(A/B/C/D, A/B/C/D...) so a shared machine's drift hits each alike:

- ``network``: preprocessing + the forward pass of each window, nothing after it (the ceiling);
- ``before``: the previous post-processing, in the loop: every query's mask of every frame upsampled to
  the original size, then ``encode_rles`` (a transposing copy per frame);
- ``serial``: today's post-processing (empty maps skipped, masks transposed on the device, encoded
  without a copy) in the caller's thread;
- ``pipelined``: the same on the mask worker thread, overlapped with the next window's network.

    python benchmarks/bench_pipeline.py                          # R-50, 360x640, 15 frames, CPU, 2 rounds
    python benchmarks/bench_pipeline.py --device cuda --precision bf16 --frames 60 --rounds 3
    python benchmarks/bench_pipeline.py --height 720 --network-height 360   # an HD video, resized

Prints median seconds and frames/s per variant, each as a fraction of the network's own throughput,
and how long the caller waited for the mask worker. Random weights: the fraction of empty maps (skipped)
differs from a trained model's; it is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_speed import fast_and_reference  # noqa: E402
from ovformer_core.config import r50_config  # noqa: E402
from ovformer_core.inference.mask_store import MaskStore  # noqa: E402
from ovformer_core.inference.postprocess import masks_to_original  # noqa: E402
from ovformer_core.inference.segment import SegmentOptions, StreamingSegmenter  # noqa: E402
from ovformer_core.model.build import build_model  # noqa: E402

VARIANTS = ("network", "before", "serial", "pipelined")


class BeforeSegmenter(StreamingSegmenter):
    """The post-processing as it was: all maps upsampled, one transposing encode per frame, in the loop."""

    @torch.inference_mode()
    def _add_clip(self, query_embeds, class_logits, object_logits, mask_logits, info) -> None:  # type: ignore[no-untyped-def]
        query_embeds, class_logits, object_logits = query_embeds.float(), class_logits.float(), object_logits.float()
        perm = self.tracks.update(query_embeds, class_logits, object_logits)
        mask_logits = mask_logits.float()[torch.from_numpy(perm).to(mask_logits.device)]
        masks = masks_to_original(mask_logits, info).cpu().numpy()
        if self.before_store is None:
            self.before_store = MaskStore(masks.shape[0])
        for t in range(masks.shape[1]):
            self.before_store.append_frame(masks[:, t])

    def finish(self):  # type: ignore[no-untyped-def]
        assert self.before_store is not None
        self.before_store.close()
        return []


class NetworkOnly(StreamingSegmenter):
    """Preprocessing and forward passes only."""

    def add_window(self, frames, clip_embeds) -> None:  # type: ignore[no-untyped-def]
        pixels, _ = self._preprocess(frames)
        out = self._forward(pixels[None], torch.as_tensor(clip_embeds).to(self.device)[None])
        out.mask_logits.float().sum().item()  # wait for the device

    def finish(self):  # type: ignore[no-untyped-def]
        return []


def run(variant: str, model, cfg, text, frames, embeds, options, device) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    """Seconds for the whole frame array through one variant, and its mask-writer figures."""
    if variant == "network":
        segmenter: StreamingSegmenter = NetworkOnly(model, cfg, text, options)
    elif variant == "before":
        segmenter = BeforeSegmenter(model, cfg, text, options)
        segmenter.before_store = None  # type: ignore[attr-defined]
    else:
        segmenter = StreamingSegmenter(model, cfg, text, options, background_masks=variant == "pipelined")
    started = time.perf_counter()
    try:
        for first in range(0, len(frames), options.window):
            segmenter.add_window(frames[first : first + options.window], embeds[first : first + options.window])
        segmenter.finish()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    finally:
        segmenter.close()
    figures = {"wait_s": segmenter.masks.wait_seconds, "work_s": segmenter.masks.work_seconds}
    return seconds, figures


def present_fraction(model, cfg, text, frames, embeds, options) -> float:  # type: ignore[no-untyped-def]
    """Fraction of (query, frame) maps of the first window with any positive logit (the rest are skipped)."""
    segmenter = StreamingSegmenter(model, cfg, text, options)
    try:
        pixels, _ = segmenter._preprocess(frames[: options.window])
        out = segmenter._forward(pixels[None], torch.as_tensor(embeds[: options.window]).to(segmenter.device)[None])
        return float((out.mask_logits[0] > 0).flatten(2).any(-1).float().mean())
    finally:
        segmenter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--height", type=int, default=360, help="video frame height (16:9)")
    parser.add_argument("--network-height", type=int, default=None, help="min_size (default: --height)")
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--json", action="store_true", help="also print one JSON line of the medians")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = fast_and_reference(r50_config())["fast"]
    torch.manual_seed(0)
    model = build_model(cfg).eval().to(device)
    rng = np.random.default_rng(0)
    width = round(args.height * 16 / 9)
    frames = rng.integers(0, 256, (args.frames, args.height, width, 3), dtype=np.uint8)
    embeds = rng.standard_normal((args.frames, 512)).astype(np.float32)
    text = torch.nn.functional.normalize(torch.randn(512, 41), dim=0)
    text[:, -1] = 0
    options = SegmentOptions(top_k=50, min_size=args.network_height or args.height, precision=args.precision)
    print(
        f"R-50 random weights, {args.frames} frames {args.height}x{width} -> network {options.min_size}, "
        f"{args.precision}, {device}, {torch.get_num_threads()} threads; maps with any foreground: "
        f"{present_fraction(model, cfg, text, frames, embeds, options):.0%}",
        flush=True,
    )
    run("serial", model, cfg, text, frames[: options.window], embeds, options, device)  # warm-up
    seconds: dict[str, list[float]] = {v: [] for v in args.variants}
    waits: dict[str, list[float]] = {v: [] for v in args.variants}
    works: dict[str, list[float]] = {v: [] for v in args.variants}
    for round_ in range(args.rounds):
        for variant in args.variants:
            s, figures = run(variant, model, cfg, text, frames, embeds, options, device)
            seconds[variant].append(s)
            waits[variant].append(figures["wait_s"])
            works[variant].append(figures["work_s"])
            print(f"round {round_ + 1} {variant:>9}: {s:7.2f} s", flush=True)
    network = statistics.median(seconds["network"]) if "network" in seconds else None
    print(f"\n{'variant':>9} {'median s':>9} {'frames/s':>9} {'of network':>11} {'mask work s':>12} {'waited s':>9}")
    for variant in args.variants:
        s = statistics.median(seconds[variant])
        share = f"{network / s:.0%}" if network else "-"
        work = f"{statistics.median(works[variant]):.2f}" if variant in ("serial", "pipelined") else "-"
        wait = f"{statistics.median(waits[variant]):.2f}" if variant == "pipelined" else "-"
        print(f"{variant:>9} {s:9.2f} {args.frames / s:9.2f} {share:>11} {work:>12} {wait:>9}")
    medians = {variant: statistics.median(values) for variant, values in seconds.items()}
    if "before" in medians and "pipelined" in medians:
        print(f"pipelined vs before: {medians['before'] / medians['pipelined']:.2f}x")
    if args.json:
        record = {"precision": args.precision, "height": args.height, "frames": args.frames, "seconds": medians}
        record["fps"] = {variant: args.frames / s for variant, s in medians.items()}
        print(json.dumps(record))


if __name__ == "__main__":
    main()

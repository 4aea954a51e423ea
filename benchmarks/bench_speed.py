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
from ovformer_core.inference.tracker import QueryTracks  # noqa: E402
from ovformer_core.model.build import build_model  # noqa: E402
from ovformer_core.model.preprocess import PreprocessInfo, normalize_and_pad  # noqa: E402

#: The two whole-pipeline variants (see ``fast_and_reference``).
VARIANTS = ("reference", "fast")
#: Official forward / our reference path, both measured side by side on the 2-core CPU (issue 12).
OFFICIAL_OVER_REFERENCE = 1.16
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


def time_stages(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    clip_embeds: torch.Tensor,
    text: torch.Tensor,
    device: torch.device,
    repeats: int,
) -> tuple[dict[str, float], object]:
    """Median seconds of backbone, pixel decoder and decoder on one window; the decoder's output."""
    stages = {}
    stages["backbone"], features = timed(lambda: model.backbone(pixels), device, repeats)
    stages["pixel_decoder"], decoded = timed(lambda: model.pixel_decoder(features), device, repeats)
    stages["decoder"], out = timed(
        lambda: model.decoder(decoded.multi_scale, decoded.mask_features, clip_embeds, text, with_aux=False),
        device,
        repeats,
    )
    return stages, out


@torch.inference_mode()
def bench_window(
    name: str, height: int, precision: str, device: torch.device, repeats: int, variants: tuple[str, ...] = VARIANTS
) -> dict:
    """One 5-frame window through each stage, reference path then fast path (same weights)."""
    width = int(round(height * 16 / 9))
    base = r50_config() if name == "r50" else swinb_config()
    torch.manual_seed(0)
    state = build_model(base).state_dict()
    frames = torch.randint(0, 256, (5, height, width, 3), dtype=torch.uint8)
    pixels = normalize_and_pad(frames.to(device), base.pixel_mean, base.pixel_std, 32)
    clip_embeds = torch.randn(1, 5, 512, device=device)
    text = torch.nn.functional.normalize(torch.randn(512, 1197, device=device), dim=0)
    text[:, -1] = 0
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    row: dict = {"config": name, "height": height, "width": width, "precision": precision, "device": str(device)}
    finals = {}
    for variant, cfg in fast_and_reference(base).items():
        if variant not in variants:
            continue
        model = build_model(cfg).eval()
        model.load_state_dict(state)
        model.to(device)
        with autocast():
            images = pixels.contiguous(memory_format=torch.channels_last) if model.channels_last else pixels
            stages, out = time_stages(model, images, clip_embeds, text, device, repeats)
        row.update({f"{variant}_{stage}_s": seconds for stage, seconds in stages.items()})
        row[f"{variant}_window_s"] = sum(stages.values())
        finals[variant] = out
    fast = finals["fast"]
    if "reference" in finals:
        ref = finals["reference"]
        compare_paths(row, ref, fast, precision)

    tracks = QueryTracks()
    embeds = fast.query_embeds[0].float()
    tracks.update(embeds, fast.final.class_logits[0].float(), fast.final.object_logits[0].float())
    row["association_s"], _ = timed(
        lambda: tracks.update(embeds, fast.final.class_logits[0].float(), fast.final.object_logits[0].float()),
        device,
        repeats,
    )
    info = PreprocessInfo((height, width), (height, width), tuple(pixels.shape[-2:]))

    # Imported here: the GPU check's steps that time no masks then run without pycocotools.
    from ovformer_core.inference.mask_writer import MaskWriter

    def masks_and_rle() -> None:
        # The window loop's own path (inference/mask_writer.py), in this thread so the time is all its own.
        writer = MaskWriter(device, background=False)
        try:
            writer.submit(fast.final.mask_logits[0].float(), info)
            writer.finish()
        finally:
            writer.close()

    row["masks_rle_s"], _ = timed(masks_and_rle, device, max(1, repeats // 2))
    row["peak_host_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def compare_paths(row: dict, ref: object, fast: object, precision: str) -> None:
    """Largest difference between the two paths' outputs and whether it is within tolerance."""
    row["fast_vs_reference_max_abs"] = max(
        (ref.final.class_logits - fast.final.class_logits).abs().max().item(),
        (ref.final.mask_logits - fast.final.mask_logits).abs().max().item(),
        (ref.query_embeds - fast.query_embeds).abs().max().item(),
    )
    row["parity_ok"] = row["fast_vs_reference_max_abs"] <= TOLERANCE[precision] * max(
        1.0, ref.final.mask_logits.abs().max().item()
    )
    row["speedup"] = row["reference_window_s"] / row["fast_window_s"]


def fast_and_reference(cfg: ModelConfig) -> dict[str, ModelConfig]:
    """The two whole-pipeline variants compared end to end."""
    reference = replace(
        cfg,
        backbone=replace(cfg.backbone, channels_last=False, fold_bn=False),
        pixel_decoder=replace(cfg.pixel_decoder, deform_attn_impl="reference"),
        decoder=replace(cfg.decoder, attention_masks="full"),
    )
    fast = replace(
        cfg,
        backbone=replace(cfg.backbone, channels_last=True, fold_bn=True),
        # auto: the embedding_bag gather on CPU, grid_sample on CUDA (measured faster on an H200 in bf16:
        # pixel decoder 0.016 s against 0.072 s per R-50 360p window)
        pixel_decoder=replace(cfg.pixel_decoder, deform_attn_impl="auto"),
        decoder=replace(cfg.decoder, attention_masks="level"),
    )
    return {"reference": reference, "fast": fast}


def bench_end_to_end(name: str, height: int, precision: str, device: torch.device, num_frames: int) -> dict:
    """Decode, CLIP, and the whole ``Predictor.segment`` on a synthetic video, reference vs fast."""
    import tempfile

    from ovformer_core.io.video import open_source
    from ovformer_core.model.clip import ClipArchitecture, ClipFrameEncoder, build_clip
    from ovformer_core.predictor import Predictor, segment_options_for
    from ovformer_core.vocab import Vocabulary
    from tests.conftest import write_video

    width = int(round(height * 16 / 9))
    base = r50_config() if name == "r50" else swinb_config()
    torch.manual_seed(0)
    clip = ClipFrameEncoder.from_clip(build_clip(ClipArchitecture())).to(device)
    vocab = Vocabulary(
        names=tuple(f"class{i}" for i in range(40)),
        synonyms=tuple((f"class{i}",) for i in range(40)),
        templates=("{}",),
        clip_model_id="bench",
        embeddings=torch.nn.functional.normalize(torch.randn(40, 512), dim=-1),
    )
    row: dict = {"config": name, "height": height, "precision": precision, "device": str(device), "frames": num_frames}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.mp4"
        write_video(video, num_frames=num_frames, height=height, width=width, fps=25.0)
        source = open_source(video)
        start = time.perf_counter()
        frames = [frame.image for frame in source.iter_frames()]
        row["decode_s"] = time.perf_counter() - start
        start = time.perf_counter()
        clip(frames)
        row["clip_s"] = time.perf_counter() - start
        state = build_model(base).state_dict()
        for variant, cfg in fast_and_reference(base).items():
            model = build_model(cfg).eval()
            model.load_state_dict(state)
            model.to(device)
            options = segment_options_for(cfg).updated(min_size=height, precision=precision, score_threshold=0.0)
            predictor = Predictor(model, cfg, clip, None, options=options)
            start = time.perf_counter()
            result = predictor.segment(video, vocab)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            row[f"{variant}_s"] = seconds
            row[f"{variant}_fps"] = num_frames / seconds
            row[f"{variant}_scores"] = sorted(t.score for t in result.tracks)
    row["e2e_speedup"] = row["reference_s"] / row["fast_s"]
    row["e2e_max_score_diff"] = max(
        abs(a - b) for a, b in zip(row["reference_scores"], row["fast_scores"], strict=True)
    )
    row["peak_host_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def _cell(row: dict, key: str, width: int, spec: str) -> str:
    return f"{row[key]:>{width}{spec}}" if key in row else f"{'-':>{width}}"


def print_windows(rows: list[dict]) -> None:
    """Per-stage seconds of each variant, their ratio, association and mask+RLE time, parity."""
    print(
        f"{'config':<7}{'size':>9}{'prec':>6} | {'ref: backbone':>13}{'pixdec':>8}{'decoder':>8}{'window':>8} | "
        f"{'fast: backbone':>14}{'pixdec':>8}{'decoder':>8}{'window':>8} | {'ratio':>6}{'assoc':>7}{'mask+rle':>9}"
        f"{'maxdiff':>9}{'parity':>7}"
    )
    for r in rows:
        parity = "-" if "parity_ok" not in r else "ok" if r["parity_ok"] else "FAIL"
        print(
            f"{r['config']:<7}{r['height']:>4}x{r['width']:<4}{r['precision']:>6} | "
            + _cell(r, "reference_backbone_s", 13, ".3f")
            + _cell(r, "reference_pixel_decoder_s", 8, ".3f")
            + _cell(r, "reference_decoder_s", 8, ".3f")
            + _cell(r, "reference_window_s", 8, ".3f")
            + " | "
            + _cell(r, "fast_backbone_s", 14, ".3f")
            + _cell(r, "fast_pixel_decoder_s", 8, ".3f")
            + _cell(r, "fast_decoder_s", 8, ".3f")
            + _cell(r, "fast_window_s", 8, ".3f")
            + " | "
            + _cell(r, "speedup", 6, ".2f")
            + _cell(r, "association_s", 7, ".4f")
            + _cell(r, "masks_rle_s", 9, ".3f")
            + _cell(r, "fast_vs_reference_max_abs", 9, ".1e")
            + f"{parity:>7}"
        )
    for r in rows:
        if "reference_window_s" in r:
            # The official forward took 1.16x our reference path when both ran side by side (issue 12);
            # a stored official timing from another day is not comparable on a shared machine.
            official = OFFICIAL_OVER_REFERENCE * r["reference_window_s"]
            print(
                f"{r['config']}@{r['height']} {r['precision']}: fast {r['fast_window_s']:.2f} s/window; "
                f"official estimated at {OFFICIAL_OVER_REFERENCE} x reference = {official:.2f} s "
                f"({official / r['fast_window_s']:.2f}x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+", default=["r50"], choices=["r50", "swinb"])
    parser.add_argument("--heights", nargs="+", type=int, default=[360])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the reference timing used 2)")
    parser.add_argument("--e2e-frames", type=int, default=0, help="also run the whole pipeline on N frames")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = tuple(args.variants)
    rows = [
        bench_window(c, h, p, device, args.repeats, variants)
        for c in args.configs
        for h in args.heights
        for p in args.precisions
    ]
    print_windows(rows)
    e2e = []
    if args.e2e_frames:
        e2e = [
            bench_end_to_end(c, h, p, device, args.e2e_frames)
            for c in args.configs
            for h in args.heights
            for p in args.precisions
        ]
        print(
            f"{'config':<7}{'height':>7}{'prec':>6}{'frames':>7}{'decode s':>9}{'clip s':>8}"
            f"{'ref fps':>9}{'fast fps':>9}{'ratio':>7}{'score diff':>11}"
        )
        for r in e2e:
            print(
                f"{r['config']:<7}{r['height']:>7}{r['precision']:>6}{r['frames']:>7}{r['decode_s']:>9.2f}"
                f"{r['clip_s']:>8.2f}{r['reference_fps']:>9.2f}{r['fast_fps']:>9.2f}{r['e2e_speedup']:>7.2f}"
                f"{r['e2e_max_score_diff']:>11.2e}"
            )
    if args.json:
        args.json.write_text(json.dumps({"windows": rows, "end_to_end": e2e}, indent=1))
    if not all(r.get("parity_ok", True) for r in rows):
        raise SystemExit("fast path disagrees with the reference path beyond tolerance")


if __name__ == "__main__":
    main()

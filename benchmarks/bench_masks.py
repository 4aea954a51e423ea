"""One clip's masks to the original size, transposed for RLE: today's ``mask_columns`` against the previous way.

The previous way upsampled 64 maps at a time, joined them, thresholded and then made a transposing copy of
the whole clip; today's thresholds each small chunk straight into its transposed place while its floats are
still in the cache (``postprocess.CPU_CHUNK_PIXELS``). Both run on the same logits, taking turns; their
outputs are compared for equality, and the RLE encoding after them is timed too.

    python benchmarks/bench_masks.py                     # 360p, 720p and 1080p videos, network at 360p
    python benchmarks/bench_masks.py --sizes 720x1280 --rounds 5

The logits are smooth random blobs (``[100, 5, 96, 160]``, a quarter of the padded 384x640 input), about
28% foreground, every map non-empty (no map is skipped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovformer_core.inference.postprocess import mask_columns, masks_to_original  # noqa: E402
from ovformer_core.io.rle import encode_columns  # noqa: E402
from ovformer_core.model.preprocess import PreprocessInfo  # noqa: E402


def previous_columns(mask_logits: torch.Tensor, info: PreprocessInfo) -> torch.Tensor:
    """The way before: ``masks_to_original`` (64 maps per step, joined, thresholded), then one transposing copy."""
    present = (mask_logits > 0).flatten(2).any(-1).T.contiguous()
    maps = mask_logits.transpose(0, 1)[present][:, None]
    return masks_to_original(maps, info)[:, 0].mT.contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["360x640", "720x1280", "1080x1920"], help="video HxW")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    blobs = torch.randn(100, 5, 12, 20)
    logits = F.interpolate(blobs, size=(96, 160), mode="bicubic", align_corners=False) * 3 - 1.5
    print(f"threads {args.threads}; clip of 100 queries x 5 frames, foreground {(logits > 0).float().mean():.0%}")
    print(f"{'video':>10} {'previous s':>11} {'now s':>7} {'speed-up':>9} {'RLE encode s':>13}")
    for size in args.sizes:
        height, width = map(int, size.split("x"))
        info = PreprocessInfo((height, width), (360, 640), (384, 640))
        times: dict[str, list[float]] = {"previous": [], "now": [], "encode": []}
        for _ in range(args.rounds):
            start = time.perf_counter()
            before = previous_columns(logits, info)
            times["previous"].append(time.perf_counter() - start)
            start = time.perf_counter()
            now, _ = mask_columns(logits, info)
            times["now"].append(time.perf_counter() - start)
            if not torch.equal(before, now):
                raise SystemExit(f"{size}: the two ways give different masks")
            start = time.perf_counter()
            encode_columns(now.numpy(), height)
            times["encode"].append(time.perf_counter() - start)
        previous, current, encode = (statistics.median(times[k]) for k in ("previous", "now", "encode"))
        print(f"{size:>10} {previous:11.3f} {current:7.3f} {previous / current:8.2f}x {encode:13.3f}")


if __name__ == "__main__":
    main()

"""ResNet-50 backbone with each frozen BN folded into the convolution before it, against BNs kept apart.

Both networks hold the same random weights and BN statistics and run the same 5-frame 360x640 window
(channels-last), taking turns in one process; prints the medians, their ratio and the largest
difference of the features relative to each level's magnitude.

    python benchmarks/bench_backbone.py [--rounds 6] [--threads 2] [--height 360]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.ops.misc import FrozenBatchNorm2d

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovformer_core.model.backbone import ResNet50Backbone  # noqa: E402


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=360)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    apart = ResNet50Backbone(fold_bn=False).eval()
    for module in apart.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    folded = ResNet50Backbone(fold_bn=True).eval()
    folded.load_state_dict(apart.state_dict())
    apart.to(memory_format=torch.channels_last)
    folded.to(memory_format=torch.channels_last)
    width = round(args.height * 16 / 9)
    images = torch.randn(5, 3, args.height, width).contiguous(memory_format=torch.channels_last)
    expected, got = apart(images), folded(images)  # also the warm-up
    worst = max(float((got[k] - expected[k]).abs().max() / expected[k].abs().max()) for k in expected)
    times: dict[str, list[float]] = {"apart": [], "folded": []}
    for round_ in range(args.rounds):
        for name, network in (("apart", apart), ("folded", folded)):
            start = time.perf_counter()
            network(images)
            times[name].append(time.perf_counter() - start)
        print(f"round {round_ + 1}: apart {times['apart'][-1]:.2f} s, folded {times['folded'][-1]:.2f} s", flush=True)
    a, f = statistics.median(times["apart"]), statistics.median(times["folded"])
    print(f"5 frames at {args.height}x{width}, {args.threads} threads, medians of {args.rounds} rounds taking turns:")
    print(f"BNs apart {a:.2f} s, folded {f:.2f} s: {a / f:.2f}x; largest difference {worst:.1e} of a level's magnitude")


if __name__ == "__main__":
    main()

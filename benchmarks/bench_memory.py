"""Peak host memory of the streaming segmenter on a short and a long synthetic video of the same size.

Each length runs in a fresh process (peak RSS = VmHWM of that child), through the public
``Predictor.segment`` path: PyAV decoding, CLIP frame embeddings, the network window by window,
Hungarian association and per-frame RLE. The model is the tiny reference-fixture network and a tiny
CLIP, so the figures measure the pipeline's own memory behaviour, not a large model's weights.

    python benchmarks/bench_memory.py [--short 100] [--long 2000] [--size 240x320] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    """Peak resident memory of this process image (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries the parent's peak across fork + exec into it, and the
    parent here has just held a whole synthetic video in memory while writing it.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def child(video: str, weights: str, clip: str, mode: str) -> None:
    """Run one segmentation and print peak RSS (MiB) and timing as JSON."""
    sys.path.insert(0, str(ROOT))
    import torch

    from ovformer_core.checkpoints import read_checkpoint
    from ovformer_core.inference.segment import SegmentOptions
    from ovformer_core.model.build import build_model
    from ovformer_core.model.clip import ClipFrameEncoder, load_clip
    from ovformer_core.predictor import Predictor
    from ovformer_core.vocab import Vocabulary

    torch.set_num_threads(2)
    checkpoint = read_checkpoint(weights)
    cfg = checkpoint.config
    model = build_model(cfg).eval()
    model.load_state_dict(checkpoint.state_dict)
    encoder = ClipFrameEncoder.from_clip(load_clip(clip))
    vocab = Vocabulary(
        names=tuple(f"class{i}" for i in range(12)),
        synonyms=tuple((f"class{i}",) for i in range(12)),
        templates=("{}",),
        clip_model_id="bench",
        embeddings=torch.nn.functional.normalize(checkpoint.text_classifier[:, :-1].T, dim=-1),
    )
    options = SegmentOptions(mode=mode, top_k=50, min_size=None)
    predictor = Predictor(model, cfg, encoder, None, options=options)
    started = time.perf_counter()
    result = predictor.segment(video, vocab)
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    print(json.dumps({"frames": result.num_frames, "tracks": len(result.tracks), "seconds": seconds, "peak_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=2000)
    parser.add_argument("--size", default="240x320", help="HxW of the synthetic video")
    parser.add_argument("--mode", default="semi-online", choices=["semi-online", "per-frame"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, mode=args.mode)
        return

    sys.path.insert(0, str(ROOT))
    from ovformer_core.checkpoints import load_weights, save_checkpoint
    from ovformer_core.model.build import build_model
    from tests.clip_fixtures import save_safetensors, tiny_clip
    from tests.conftest import write_video
    from tests.reference_fixtures import VIDEO_TINY, tiny_config

    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = tiny_config(video=args.mode == "semi-online")
        model = build_model(cfg)
        loaded = load_weights(model, cfg, VIDEO_TINY / "model.pth")
        save_checkpoint(folder / "tiny.pt", model, cfg, loaded.text_classifier)
        save_safetensors(tiny_clip(), folder / "clip.safetensors")
        figures = {}
        for label, frames in (("short", args.short), ("long", args.long)):
            video = folder / f"{label}.mp4"
            write_video(video, num_frames=frames, height=height, width=width, fps=25.0)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--mode",
                    args.mode,
                    "--child",
                    str(video),
                    str(folder / "tiny.pt"),
                    str(folder / "clip.safetensors"),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            figures[label] = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = figures["long"]["peak_mib"] / figures["short"]["peak_mib"]
    print(f"{'video':<8}{'frames':>8}{'tracks':>8}{'seconds':>10}{'frames/s':>10}{'peak RSS MiB':>14}")
    for label, fig in figures.items():
        rate = fig["frames"] / fig["seconds"]
        print(
            f"{label:<8}{fig['frames']:>8}{fig['tracks']:>8}{fig['seconds']:>10.1f}{rate:>10.1f}{fig['peak_mib']:>14.1f}"
        )
    print(f"peak memory ratio long/short: {ratio:.3f} (requirement: <= 1.5)")
    if args.json:
        args.json.write_text(
            json.dumps({"size": [height, width], "mode": args.mode, **figures, "ratio": ratio}, indent=1)
        )


if __name__ == "__main__":
    main()

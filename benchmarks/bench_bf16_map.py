"""bf16 against fp32 inference on a trained model, by mAP (issue 12's accuracy guard, goal 2).

Trains the tiny model of the training test on the synthetic shapes videos (tests/train/synthetic.py),
then segments the split in fp32 and in bf16 and scores both with our YouTube-VIS evaluator.
The same check runs as a test (``tests/train/test_engine.py::test_tiny_model_learns_the_shapes``,
bound 0.01 AP); this prints the figures.

    python benchmarks/bench_bf16_map.py                 # 60 iterations, as the test
    python benchmarks/bench_bf16_map.py --iters 200     # a better-trained model
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ovformer_core.inference.mask_writer as mask_writer  # noqa: E402
from ovformer_core.checkpoints import read_checkpoint  # noqa: E402
from ovformer_core.model.build import build_model  # noqa: E402
from ovformer_core.train.config import config_from_overrides  # noqa: E402
from ovformer_core.train.engine import train  # noqa: E402
from tests.train.conftest import evaluate_on_shapes, tiny_train_overrides  # noqa: E402
from tests.train.synthetic import write_shapes_task  # noqa: E402


class MapCounter:
    """Counts the (query, frame) mask maps with any foreground, i.e. those the mask writer upsamples."""

    def __init__(self) -> None:
        self.present = 0
        self.total = 0
        self._columns = mask_writer.mask_columns

    def __call__(self, mask_logits, info):
        columns, present = self._columns(mask_logits, info)
        self.present += int(present.sum())
        self.total += present.numel()
        return columns, present


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        shapes = write_shapes_task(tmp / "shapes")
        overrides = tiny_train_overrides(shapes, tmp / "run", checkpoint_period=10**6, log_period=10**6)
        overrides["optim"]["max_iter"] = args.iters
        cfg = config_from_overrides(overrides)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = train(cfg)
        print(f"trained {args.iters} iterations in {time.perf_counter() - started:.0f} s")
        assert outcome.final_model is not None
        final = read_checkpoint(outcome.final_model)
        model = build_model(cfg.model)
        model.load_state_dict(final.state_dict)
        counter = MapCounter()
        mask_writer.mask_columns = counter
        for precision in ("fp32", "bf16", "fp32", "bf16"):  # twice each: evaluation is deterministic
            started = time.perf_counter()
            stats = evaluate_on_shapes(model, cfg.model, shapes, tmp / f"eval_{precision}", precision)
            print(
                f"{precision}: AP {stats['AP']:.4f} AP50 {stats['AP50']:.4f} AR10 {stats['AR10']:.4f} "
                f"({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
        print(
            f"mask maps with any foreground (upsampled; the rest skipped): {counter.present} of {counter.total} "
            f"({counter.present / max(counter.total, 1):.0%}; {cfg.model.decoder.num_queries} queries)"
        )


if __name__ == "__main__":
    main()

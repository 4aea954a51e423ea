"""Video instance segmentation metrics (YouTube-VIS, OVIS, LV-VIS, BURST) and dataset tools."""

from ovformer_core.eval.ground_truth import GroundTruth, load_ground_truth
from ovformer_core.eval.protocols import BENCHMARKS, STAT_NAMES, EvalParams
from ovformer_core.eval.summary import EvalResult
from ovformer_core.eval.ytvis import EvaluationWarning, evaluate

__all__ = [
    "BENCHMARKS",
    "STAT_NAMES",
    "EvalParams",
    "EvalResult",
    "EvaluationWarning",
    "GroundTruth",
    "evaluate",
    "load_ground_truth",
]

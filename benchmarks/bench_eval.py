"""Speed of ``ovformer_core.eval.evaluate`` against a plain per-(video, category) Python loop.

The plain loop below follows the official evaluators' algorithm step by step (IoU by per-frame
``merge`` + ``area``, greedy matching loops per (category, area range, video), accumulation loops per
(category, area range, max detections)), without any vectorisation: it is the speed baseline and an
independent check that both give the same numbers.

Cases: the reference fixture ``case3_large`` (in process) and a synthetic LV-VIS-sized case (837
videos, 1,196 categories, 1-5 ground-truth tracks and 50 results per video, 41,850 results, 10-30
frames of 48x64, fixed seed), where ``ovformer evaluate`` and the official algorithm (``json.load`` of
both files, then the plain loops) each run as a fresh process, taking turns A/B/A/B; the figure is
the ratio of the medians, and the numbers of both are compared bit for bit.

With ``--official-repo DIR`` (a checkout of github.com/fanghaook/OVFormer, which this project does not
ship), the official evaluator itself joins the turns, run as its ``mAP.py`` runs it: the dataset class
from the file, ``loadRes``, ``evaluate``, ``accumulate``, ``summarize`` (``evaluate/lvvis.py`` +
``lvviseval.py``, ``evaluate/burst.py`` + ``bursteval.py``, or ``ytvis_api/ytvos.py`` + ``ytvoseval.py``
for ytvis and ovis). Its modules import matplotlib for drawing only; where matplotlib is not installed,
empty stand-ins take its place. Without torch, detectron2 and matplotlib imports, it starts faster than
``mAP.py`` does.

Run: ``python benchmarks/bench_eval.py [--rounds 2] [--data DIR] [--benchmark lvvis] [--skip-case3]
[--official-repo DIR]`` (``--data DIR`` keeps the generated files, about 70 MB, for the next run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ovformer_core.eval import evaluate  # noqa: E402
from ovformer_core.eval.protocols import STAT_NAMES, EvalParams  # noqa: E402

CASE3 = ROOT / "tests" / "fixtures" / "reference" / "eval" / "case3_large"

# ----------------------------------------------------------------------------------------------------
# The plain loop (official algorithm, no vectorisation).
# ----------------------------------------------------------------------------------------------------

_PLAIN_RULES = {
    # benchmark: (area rule, crowd ground truth ignored, a ground truth can be matched only once)
    "ytvis": ("mean", True, True),
    "ovis": ("mean", True, True),
    "lvvis": ("int_mean", False, True),
    "burst": ("zero", False, False),
}
_PLAIN_GROUPS = {
    "ytvis": {},
    "ovis": {},
    "lvvis": {"base": ("partition", (0, 1)), "novel": ("partition", (2, 3))},
    "burst": {
        "base": ("frequency", ("c", "f")),
        "novel": ("frequency", ("r",)),
        "common": ("split", ("common",)),
        "uncommon": ("split", ("uncommon",)),
    },
}


def _plain_rle(seg: Any, height: int, width: int) -> Any:
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, height, width)
    return seg


def _plain_avg_area(areas: list[Any], rule: str) -> float:
    if rule == "zero":
        return 0
    kept = [int(a) if rule == "int_mean" else a for a in areas if a]
    return np.array(kept).mean() if kept else 0


def _plain_seq_iou(dt_segs: list[Any], gt_segs: list[Any]) -> float:
    inter = 0.0
    union = 0.0
    for d, g in zip(dt_segs, gt_segs, strict=False):  # the official zip stops at the shorter
        if d and g:
            inter += mask_utils.area(mask_utils.merge([d, g], True))
            union += mask_utils.area(mask_utils.merge([d, g], False))
        elif d:
            union += mask_utils.area(d)
        elif g:
            union += mask_utils.area(g)
    return inter / union if union > 0 else 0.0


def plain_evaluate(gt: dict[str, Any], results: list[dict[str, Any]], benchmark: str) -> dict[str, Any]:
    """The official algorithm as plain loops; returns stats, group_stats, precision, recall, scores."""
    area_rule, crowd_ignored, unique = _PLAIN_RULES[benchmark]
    p = EvalParams()
    thresholds = np.array(p.iou_thresholds)
    rec_thr = np.array(p.recall_thresholds)
    video_ids = sorted(v["id"] for v in gt["videos"])
    video_by_id = {v["id"]: v for v in gt["videos"]}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    cat_set = set(cat_ids)

    gts: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for ann in gt["annotations"]:
        if ann["video_id"] not in video_by_id or ann["category_id"] not in cat_set:
            continue
        video = video_by_id[ann["video_id"]]
        segs = [_plain_rle(s, video["height"], video["width"]) if s else None for s in ann["segmentations"]]
        areas = ann.get("areas") or [int(mask_utils.area(s)) if s else None for s in segs]
        gts[ann["video_id"], ann["category_id"]].append(
            {
                "id": ann["id"],
                "segs": segs,
                "avg_area": _plain_avg_area(areas, area_rule),
                "crowd": bool(ann.get("iscrowd", 0)),
            }
        )
    dts: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for i, res in enumerate(results):
        if res["category_id"] not in cat_set:
            continue
        areas = [int(mask_utils.area(s)) if s else None for s in res["segmentations"]]
        dts[res["video_id"], res["category_id"]].append(
            {
                "id": i + 1,
                "score": res["score"],
                "segs": res["segmentations"],
                "avg_area": _plain_avg_area(areas, area_rule),
            }
        )

    max_det = p.max_dets[-1]
    ious: dict[tuple[int, int], list[list[float]]] = {}
    for v in video_ids:
        for c in cat_ids:
            g_list, d_list = gts[v, c], dts[v, c]
            if not g_list or not d_list:
                continue
            d_sorted = sorted(d_list, key=lambda d: -d["score"])[:max_det]
            ious[v, c] = [[_plain_seq_iou(d["segs"], g["segs"]) for g in g_list] for d in d_sorted]

    evals: dict[tuple[int, int, int], dict[str, Any] | None] = {}
    for k, c in enumerate(cat_ids):
        for a, (lo, hi) in enumerate(p.area_ranges):
            for vi, v in enumerate(video_ids):
                g_list, d_list = gts[v, c], dts[v, c]
                if not g_list and not d_list:
                    evals[k, a, vi] = None
                    continue
                g_ignore = [(crowd_ignored and g["crowd"]) or g["avg_area"] < lo or g["avg_area"] > hi for g in g_list]
                g_order = sorted(range(len(g_list)), key=lambda j: g_ignore[j])
                d_sorted = sorted(d_list, key=lambda d: -d["score"])[:max_det]
                num_t = len(thresholds)
                gt_taken = np.zeros((num_t, len(g_list)))
                dt_match = np.zeros((num_t, len(d_sorted)))
                dt_ignore = np.zeros((num_t, len(d_sorted)), dtype=bool)
                for t, thr in enumerate(thresholds):
                    for di, d in enumerate(d_sorted):
                        best = min(thr, 1 - 1e-10)
                        m = -1
                        for gi in g_order:
                            g = g_list[gi]
                            if unique and gt_taken[t, gi] > 0 and not g["crowd"]:
                                continue
                            if m > -1 and not g_ignore[m] and g_ignore[gi]:
                                break
                            if ious[v, c][di][gi] < best:
                                continue
                            best = ious[v, c][di][gi]
                            m = gi
                        if m == -1:
                            continue
                        dt_ignore[t, di] = g_ignore[m]
                        dt_match[t, di] = g_list[m]["id"]
                        gt_taken[t, m] = d["id"]
                for di, d in enumerate(d_sorted):
                    outside = d["avg_area"] < lo or d["avg_area"] > hi
                    for t in range(num_t):
                        if dt_match[t, di] == 0 and outside:
                            dt_ignore[t, di] = True
                evals[k, a, vi] = {
                    "scores": [d["score"] for d in d_sorted],
                    "match": dt_match,
                    "ignore": dt_ignore,
                    "gt_ignore": g_ignore,
                }

    num_t, num_r, num_k = len(thresholds), len(rec_thr), len(cat_ids)
    num_a, num_m = len(p.area_ranges), len(p.max_dets)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    scores = -np.ones((num_t, num_r, num_k, num_a, num_m))
    for k in range(num_k):
        for a in range(num_a):
            for mi, limit in enumerate(p.max_dets):
                entries = [evals[k, a, vi] for vi in range(len(video_ids))]
                entries = [e for e in entries if e is not None]
                if not entries:
                    continue
                all_scores = np.concatenate([np.array(e["scores"][:limit], dtype=float) for e in entries])
                order = np.argsort(-all_scores, kind="mergesort")
                sorted_scores = all_scores[order]
                match = np.concatenate([e["match"][:, :limit] for e in entries], axis=1)[:, order]
                ignore = np.concatenate([e["ignore"][:, :limit] for e in entries], axis=1)[:, order]
                num_regular = sum(1 for e in entries for ig in e["gt_ignore"] if not ig)
                if num_regular == 0:
                    continue
                tp_sum = np.cumsum(np.logical_and(match, ~ignore), axis=1).astype(np.float64)
                fp_sum = np.cumsum(np.logical_and(~match.astype(bool), ~ignore), axis=1).astype(np.float64)
                for t in range(num_t):
                    tp, fp = tp_sum[t], fp_sum[t]
                    n = len(tp)
                    rc = tp / num_regular
                    pr = (tp / (fp + tp + np.spacing(1))).tolist()
                    recall[t, k, a, mi] = rc[-1] if n else 0
                    for i in range(n - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    q = np.zeros(num_r)
                    ss = np.zeros(num_r)
                    for ri, pi in enumerate(np.searchsorted(rc, rec_thr, side="left")):
                        if pi >= n:
                            break
                        q[ri] = pr[pi]
                        ss[ri] = sorted_scores[pi]
                    precision[t, :, k, a, mi] = q
                    scores[t, :, k, a, mi] = ss

    def stats_for(positions: np.ndarray | None) -> dict[str, float]:
        out = []
        for is_ap, iou, area, limit in (
            (True, None, "all", 100),
            (True, 0.5, "all", 100),
            (True, 0.75, "all", 100),
            (True, None, "small", 100),
            (True, None, "medium", 100),
            (True, None, "large", 100),
            (False, None, "all", 1),
            (False, None, "all", 10),
            (False, None, "all", 100),
            (False, None, "small", 100),
            (False, None, "medium", 100),
            (False, None, "large", 100),
        ):
            arr = precision if is_ap else recall
            if iou is not None:
                arr = arr[np.where(thresholds == iou)[0]]
            a_sel = [p.area_labels.index(area)]
            m_sel = [p.max_dets.index(limit)]
            arr = arr[:, :, :, a_sel, m_sel] if is_ap else arr[:, :, a_sel, m_sel]
            if positions is not None:
                arr = arr[:, :, positions] if is_ap else arr[:, positions]
            kept = arr[arr > -1]
            out.append(float(np.mean(kept)) if kept.size else -1.0)
        return dict(zip(STAT_NAMES, out, strict=True))

    position = {c: k for k, c in enumerate(cat_ids)}
    group_stats = {}
    for name, (field, values) in _PLAIN_GROUPS[benchmark].items():
        members = np.array([position[c["id"]] for c in gt["categories"] if c[field] in values], dtype=np.int64)
        group_stats[name] = stats_for(members)
    return {
        "stats": stats_for(None),
        "group_stats": group_stats,
        "precision": precision,
        "recall": recall,
        "scores": scores,
    }


# ----------------------------------------------------------------------------------------------------
# A synthetic LV-VIS-sized case.
# ----------------------------------------------------------------------------------------------------


def _box_track_rles(
    rng: np.random.Generator, num_frames: int, height: int, width: int, base: np.ndarray | None
) -> tuple[list[Any], np.ndarray]:
    """Per-frame RLEs of a moving box (or a jittered copy of ``base`` boxes [T, 4]); some frames absent."""
    if base is None:
        size = rng.uniform([6, 8], [height * 0.6, width * 0.6])
        start = rng.uniform([0, 0], [height - size[0], width - size[1]])
        velocity = rng.normal(0, 1.0, 2)
        pos = start[None, :] + velocity[None, :] * np.arange(num_frames)[:, None]
        boxes = np.concatenate([pos, pos + size[None, :]], axis=1)
    else:
        boxes = base + rng.normal(0, 2.0, base.shape)
    boxes = np.clip(np.round(boxes), 0, [height, width, height, width]).astype(np.int64)
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    masks = (
        (rows >= boxes[:, 0, None, None])
        & (rows < boxes[:, 2, None, None])
        & (cols >= boxes[:, 1, None, None])
        & (cols < boxes[:, 3, None, None])
    )
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    absent = rng.random(num_frames) < 0.1
    segs = [None if absent[f] else {"size": r["size"], "counts": r["counts"].decode()} for f, r in enumerate(encoded)]
    return segs, boxes


def make_synthetic_case(
    num_videos: int = 837,
    num_categories: int = 1196,
    results_per_video: int = 50,
    seed: int = 0,
    height: int = 48,
    width: int = 64,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth and results shaped like LV-VIS val (fixed seed): 837 videos, 50 results each (41,850)."""
    rng = np.random.default_rng(seed)
    categories = [
        {
            "id": k + 1,
            "name": f"category_{k + 1}",
            "partition": int(rng.integers(0, 4)),
            "frequency": str(rng.choice(["r", "c", "f"])),
            "split": str(rng.choice(["common", "uncommon"])),
        }
        for k in range(num_categories)
    ]
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for v in range(1, num_videos + 1):
        num_frames = int(rng.integers(10, 31))
        videos.append(
            {
                "id": v,
                "width": width,
                "height": height,
                "length": num_frames,
                "file_names": [f"video_{v:04d}/{f:05d}.jpg" for f in range(num_frames)],
            }
        )
        tracks = []
        for _ in range(int(rng.integers(1, 6))):
            category = int(rng.integers(1, num_categories + 1))
            segs, boxes = _box_track_rles(rng, num_frames, height, width, None)
            areas = [int(mask_utils.area(s)) if s else None for s in segs]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": v,
                    "category_id": category,
                    "iscrowd": 0,
                    "height": height,
                    "width": width,
                    "length": 1,
                    "segmentations": segs,
                    "areas": areas,
                }
            )
            tracks.append((category, boxes))
        for _ in range(results_per_video):
            if rng.random() < 0.5:
                category, boxes = tracks[int(rng.integers(len(tracks)))]
                if rng.random() < 0.3:
                    category = int(rng.integers(1, num_categories + 1))
                segs, _ = _box_track_rles(rng, num_frames, height, width, boxes)
            else:
                category = int(rng.integers(1, num_categories + 1))
                segs, _ = _box_track_rles(rng, num_frames, height, width, None)
            # Scores on a 1e-3 grid so that exact ties occur, as in real top-k outputs.
            score = round(float(rng.random()), 3)
            results.append({"video_id": v, "category_id": category, "score": score, "segmentations": segs})
    gt = {"videos": videos, "categories": categories, "annotations": annotations}
    return gt, results


def _max_difference(ours: Any, plain: dict[str, Any]) -> float:
    diffs = [abs(ours.stats[n] - plain["stats"][n]) for n in STAT_NAMES]
    for group, values in plain["group_stats"].items():
        diffs += [abs(ours.group_stats[group][n] - values[n]) for n in STAT_NAMES]
    diffs.append(float(np.abs(ours.precision - plain["precision"]).max()))
    diffs.append(float(np.abs(ours.recall - plain["recall"]).max()))
    diffs.append(float(np.abs(ours.scores - plain["scores"]).max()))
    return max(diffs)


def _time_both(name: str, gt: dict[str, Any], results: list[dict[str, Any]], benchmark: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        ours = evaluate(gt, results, benchmark)
        ours_s = time.perf_counter() - start
    start = time.perf_counter()
    plain = plain_evaluate(gt, results, benchmark)
    plain_s = time.perf_counter() - start
    print(
        f"{name:<34} {benchmark:<6} ours {ours_s:8.3f} s   plain loop {plain_s:8.2f} s   "
        f"speed-up {plain_s / ours_s:6.1f}x   max |diff| {_max_difference(ours, plain):.1e}"
    )


def _run_plain_file(gt_path: Path, results_path: Path, benchmark: str, out: Path) -> None:
    """The baseline as the official tool runs: read both files with ``json.load``, evaluate, save the numbers."""
    with open(gt_path) as gt_file, open(results_path) as results_file:
        gt, results = json.load(gt_file), json.load(results_file)
    plain = plain_evaluate(gt, results, benchmark)
    np.savez(out, precision=plain["precision"], recall=plain["recall"], scores=plain["scores"])
    out.with_suffix(".json").write_text(json.dumps({"stats": plain["stats"], "groups": plain["group_stats"]}))


def _official_classes(repo: Path, benchmark: str) -> tuple[Any, Any]:
    """The official dataset and evaluator classes of ``benchmark`` from a checkout of the official code."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # used by the official modules' drawing helpers only
        import types

        for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.collections", "matplotlib.patches"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["matplotlib.collections"].PatchCollection = object  # type: ignore[attr-defined]
        sys.modules["matplotlib.patches"].Polygon = object  # type: ignore[attr-defined]
    import importlib

    if benchmark in ("ytvis", "ovis"):
        sys.path.insert(0, str(repo / "ovformer" / "data_video" / "datasets"))  # not ovformer/: needs detectron2
        return importlib.import_module("ytvis_api.ytvos").YTVOS, importlib.import_module(
            "ytvis_api.ytvoseval"
        ).YTVOSeval
    sys.path.insert(0, str(repo))
    if benchmark == "lvvis":
        return importlib.import_module("evaluate.lvvis").LVVIS, importlib.import_module("evaluate.lvviseval").LVVISeval
    return importlib.import_module("evaluate.burst").BURST, importlib.import_module("evaluate.bursteval").BURSTeval


def _run_official_file(repo: Path, gt_path: Path, results_path: Path, benchmark: str, out: Path) -> None:
    """The official evaluator as its ``mAP.py`` runs it; saves its stats and arrays for the comparison."""
    dataset, evaluator = _official_classes(repo, benchmark)
    gt = dataset(str(gt_path))
    run = evaluator(gt, gt.loadRes(str(results_path)), "segm")
    run.evaluate()
    run.accumulate()
    run.summarize()
    arrays = {name: run.eval[name] for name in ("precision", "recall", "scores")}
    np.savez(out, stats=np.asarray(run.stats, dtype=np.float64), **arrays)


def _child_run(command: list[str]) -> tuple[float, float, str]:
    """Wall-clock seconds, CPU seconds (user + system) and stdout of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=_child_environment())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def compare_lvvis_sized(folder: Path, benchmark: str, rounds: int, official_repo: Path | None = None) -> None:
    """``ovformer evaluate`` against the official algorithm, each a fresh process on the same files.

    The contestants take turns, A/B/A/B (or A/B/C with ``official_repo``): the plain loop of the official
    algorithm (``json.load`` + loops), the official evaluator itself if a checkout is given, and
    ``ovformer evaluate --json``. The machine is shared and noisy, so a ratio is only ever taken within
    one run. Each counts its interpreter start-up and imports, as a user running it would.
    """
    gt_path, results_path = folder / "gt.json", folder / "results.json"
    if not (gt_path.exists() and results_path.exists()):
        start = time.perf_counter()
        gt, results = make_synthetic_case()
        gt_path.write_text(json.dumps(gt))
        results_path.write_text(json.dumps(results))
        print(f"wrote the synthetic case to {folder} in {time.perf_counter() - start:.0f} s")
    with open(gt_path) as gt_file, open(results_path) as results_file:
        gt, results = json.load(gt_file), json.load(results_file)
    print(
        f"synthetic LV-VIS-sized case: {len(gt['videos'])} videos, {len(gt['categories'])} categories, "
        f"{len(gt['annotations'])} ground-truth tracks, {len(results)} results "
        f"({results_path.stat().st_size / 1e6:.0f} MB of results JSON)"
    )
    del gt, results
    script = [sys.executable, str(Path(__file__).resolve())]
    files = [str(gt_path), str(results_path), "--benchmark", benchmark]
    plain_out, official_out = folder / "plain.npz", folder / "official.npz"
    contestants = {"plain loop": [*script, "--run-plain", *files, "--out", str(plain_out)]}
    if official_repo is not None:
        contestants["official"] = [*script, "--run-official", str(official_repo), *files, "--out", str(official_out)]
    contestants["ours"] = [sys.executable, "-m", "ovformer_cli", "evaluate", "--gt", str(gt_path), "--results"]
    contestants["ours"] += [str(results_path), "--benchmark", benchmark, "--json"]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contestants}
    printed = ""
    for r in range(rounds):
        for name, command in contestants.items():
            wall, cpu, stdout = _child_run(command)
            times[name].append((wall, cpu))
            printed = stdout if name == "ours" else printed
            print(f"  round {r + 1} {name:<10} wall {wall:7.2f} s  cpu {cpu:7.2f} s", flush=True)

    def median(name: str, column: int) -> float:
        return statistics.median(t[column] for t in times[name])

    ours_wall, ours_cpu = median("ours", 0), median("ours", 1)
    print(
        f"{benchmark}, {rounds} rounds taking turns, medians: ovformer evaluate wall {ours_wall:.2f} s, "
        f"cpu {ours_cpu:.2f} s"
    )
    for name in contestants:
        if name != "ours":
            wall, cpu = median(name, 0), median(name, 1)
            print(
                f"  {name:<10} wall {wall:.2f} s, cpu {cpu:.2f} s: ours is {wall / ours_wall:.1f}x faster by wall "
                f"clock, {cpu / ours_cpu:.1f}x by CPU time"
            )
    # Bit for bit: the CLI's printed numbers (JSON floats round-trip exactly) and, in process, the arrays.
    metrics = json.loads(printed)
    expected = json.loads(plain_out.with_suffix(".json").read_text())
    same_numbers = metrics["stats"] == expected["stats"] and metrics["groups"] == expected["groups"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(gt_path, results_path, benchmark)
    names = ("precision", "recall", "scores")
    arrays = np.load(plain_out)
    same_arrays = all(np.array_equal(getattr(result, name), arrays[name]) for name in names)
    print(
        f"against the plain loop: stats and group stats identical bit for bit: {'yes' if same_numbers else 'NO'}; "
        f"precision/recall/scores arrays identical: {'yes' if same_arrays else 'NO'}"
    )
    if official_repo is not None:
        official = np.load(official_out)
        ours_stats = np.array([result.stats[name] for name in STAT_NAMES])
        same_stats = np.array_equal(official["stats"], ours_stats)
        same_arrays = all(np.array_equal(getattr(result, name), official[name]) for name in names)
        print(
            f"against the official evaluator: stats identical bit for bit: {'yes' if same_stats else 'NO'}; "
            f"precision/recall/scores arrays identical: {'yes' if same_arrays else 'NO'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default="lvvis", choices=["ytvis", "ovis", "lvvis", "burst"])
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds on the LV-VIS-sized case")
    parser.add_argument(
        "--data", type=Path, default=None, help="folder for the synthetic case's files, kept and reused (default: temp)"
    )
    parser.add_argument("--skip-case3", action="store_true", help="only the LV-VIS-sized comparison")
    parser.add_argument(
        "--official-repo",
        type=Path,
        default=None,
        help="a checkout of the official code: its evaluator joins the turns",
    )
    parser.add_argument("--run-plain", nargs=2, type=Path, metavar=("GT", "RESULTS"), help=argparse.SUPPRESS)
    parser.add_argument("--run-official", nargs=3, type=Path, metavar=("REPO", "GT", "RESULTS"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_plain:
        _run_plain_file(*args.run_plain, args.benchmark, args.out)
        return
    if args.run_official:
        _run_official_file(*args.run_official, args.benchmark, args.out)
        return
    if args.official_repo is not None and not (args.official_repo / "evaluate" / "lvviseval.py").is_file():
        parser.error(
            f"{args.official_repo} is not a checkout of github.com/fanghaook/OVFormer (no evaluate/lvviseval.py)"
        )

    if not args.skip_case3:
        gt3 = json.loads((CASE3 / "gt.json").read_text())
        res3 = json.loads((CASE3 / "results.json").read_text())
        for benchmark in ("lvvis", "ytvis", "burst"):
            _time_both("case3_large", gt3, res3, benchmark)
    if args.data is not None:
        args.data.mkdir(parents=True, exist_ok=True)
        compare_lvvis_sized(args.data, args.benchmark, args.rounds, args.official_repo)
        return
    with tempfile.TemporaryDirectory() as folder:
        compare_lvvis_sized(Path(folder), args.benchmark, args.rounds, args.official_repo)


if __name__ == "__main__":
    main()

"""The reference fixtures checked on any device and precision (used by tests and benchmarks/gpu_check.py).

fp32 is held to the fixtures' own tolerances, bf16 to the accuracy guard. Each check asserts and
returns its figures.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ovformer_core.checkpoints import load_weights
from ovformer_core.inference.precision import ResolvedPrecision, autocast_dtype
from ovformer_core.inference.segment import SegmentOptions, StreamingSegmenter, TrackResult
from ovformer_core.model.build import build_model
from ovformer_core.model.ovformer import OVFormer
from ovformer_core.model.preprocess import normalize_and_pad
from tests.reference_fixtures import (
    BF16_MASK_PIXEL_FRACTION,
    BF16_RAW_RELATIVE,
    BF16_SCORE_ATOL,
    BF16_TOPK_OVERLAP,
    FLOAT_ATOL,
    FLOAT_RTOL,
    MASK_PIXEL_FRACTION,
    SCORE_ATOL,
    VIDEO_TINY,
    ZEROSHOT_TINY,
    tiny_config,
)


def tiny_model(video: bool, device: torch.device) -> tuple[OVFormer, torch.Tensor]:
    cfg = tiny_config(video=video)
    model = build_model(cfg).eval()
    checkpoint = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    return model.to(device), checkpoint.text_classifier


@torch.inference_mode()
def check_video_tiny_raw(device: torch.device, precision: ResolvedPrecision) -> dict:
    """Per-clip raw outputs of video_tiny against the official ones."""
    cfg = tiny_config(video=True)
    model, text = tiny_model(True, device)
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    expected = np.load(VIDEO_TINY / "clip_outputs.npz")
    pixels = normalize_and_pad(torch.from_numpy(inputs["frames"]).to(device), cfg.pixel_mean, cfg.pixel_std, 32)
    embeds = torch.from_numpy(inputs["clip_embeddings"]).to(device)
    dtype = autocast_dtype(precision)
    worst = 0.0
    for i, (start, stop) in enumerate(expected["clip_ranges"]):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(pixels[None, start:stop], embeds[None, start:stop], text.to(device))
        for name, value in (
            ("pred_logits", out.class_logits),
            ("pred_object_logits", out.object_logits),
            ("pred_masks", out.mask_logits),
            ("pred_embds", out.query_embeds),
        ):
            reference = expected[f"clip{i}_{name}"]
            actual = value[0].float().cpu().numpy()
            scale = max(1.0, float(np.abs(reference).max()))
            if precision == "fp32":
                np.testing.assert_allclose(actual, reference, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, err_msg=name)
            else:
                assert np.abs(actual - reference).max() <= BF16_RAW_RELATIVE * scale, name
            worst = max(worst, float(np.abs(actual - reference).max()) / scale)
    return {"max_abs_over_scale": worst}


def _segment(video: bool, device: torch.device, options: SegmentOptions, window: int) -> list[TrackResult]:
    model, text = tiny_model(video, device)
    inputs = np.load(VIDEO_TINY / "inputs.npz")
    segmenter = StreamingSegmenter(model, tiny_config(video=video), text, options)
    for start in range(0, len(inputs["frames"]), window):
        stop = start + window
        segmenter.add_window(inputs["frames"][start:stop], inputs["clip_embeddings"][start:stop])
    results = segmenter.finish()
    segmenter.close()
    return results


def _compare(
    ours: dict[tuple[int, int], TrackResult],
    theirs: dict[tuple[int, int], int],
    scores: np.ndarray,
    masks: np.ndarray,
    precision: ResolvedPrecision,
) -> dict:
    common = set(ours) & set(theirs)
    overlap = len(common) / len(theirs)
    score_diff = max(abs(ours[key].score - scores[theirs[key]]) for key in common)
    differing = total = 0
    for key in common:
        decoded = np.stack([mask_utils.decode(rle) for rle in ours[key].rles]).astype(bool)
        differing += int((decoded != masks[theirs[key]]).sum())
        total += masks[theirs[key]].size
    figures = {"topk_overlap": overlap, "max_score_diff": score_diff, "mask_pixels_flipped": differing / total}
    if precision == "fp32":
        assert overlap == 1.0 and len(ours) == len(theirs), figures
        assert score_diff < SCORE_ATOL and differing <= MASK_PIXEL_FRACTION * total, figures
    else:
        assert overlap >= BF16_TOPK_OVERLAP and score_diff <= BF16_SCORE_ATOL, figures
        assert differing <= BF16_MASK_PIXEL_FRACTION * total, figures
    return figures


def check_video_tiny_final(device: torch.device, precision: ResolvedPrecision) -> dict:
    """The semi-online final result of video_tiny, results keyed by (query, label)."""
    options = SegmentOptions(mode="semi-online", top_k=50, min_size=None, precision=precision)
    results = _segment(True, device, options, window=5)
    final = np.load(VIDEO_TINY / "final.npz")
    theirs = {
        (int(q), int(c)): i for i, (q, c) in enumerate(zip(final["topk_query"], final["pred_labels"], strict=True))
    }
    ours = {(r.slot, r.label): r for r in results}
    return _compare(ours, theirs, final["pred_scores"], final["pred_masks"], precision)


def check_zeroshot_final(device: torch.device, precision: ResolvedPrecision) -> dict:
    """The per-frame (zero-shot) final result of zeroshot_video_tiny, results keyed by (rank, label)."""
    options = SegmentOptions(mode="per-frame", top_k=10, min_size=None, window=3, precision=precision)
    results = sorted(_segment(False, device, options, window=4), key=lambda r: -r.score)
    final = np.load(ZEROSHOT_TINY / "final.npz")
    order = np.argsort(-final["scores"], kind="stable")
    # the official result holds no query index: key each result by (label, its rank among that label's results)
    theirs = _label_ranks([int(final["pred_classes"][j]) for j in order], [int(j) for j in order])
    ours = {key: results[i] for key, i in _label_ranks([r.label for r in results], list(range(len(results)))).items()}
    return _compare(ours, theirs, final["scores"], final["masks"], precision)


def _label_ranks(labels: list[int], values: list[int]) -> dict[tuple[int, int], int]:
    """``{(label, n): value}`` where n counts earlier entries with the same label (input in score order)."""
    seen: dict[int, int] = {}
    keyed = {}
    for label, value in zip(labels, values, strict=True):
        keyed[(label, seen.get(label, 0))] = value
        seen[label] = seen.get(label, 0) + 1
    return keyed

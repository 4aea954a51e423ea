"""Results in YouTube-VIS format, checked entry by entry against the ground truth.

A results file is a list of ``{"video_id", "category_id", "score", "segmentations"}`` with one
segmentation (compressed RLE or null) per video frame. The first bad entry stops the evaluation with a
one-line ``ResultsError`` naming it; nothing is silently dropped except results whose category id is
absent from the ground truth, which the official evaluators ignore too (they are counted).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import eq, itemgetter
from typing import Any

import numpy as np

from ovformer_core.errors import ResultsError
from ovformer_core.eval.full_results import is_full_result, ytvis_results_of
from ovformer_core.eval.ground_truth import GroundTruth
from ovformer_core.eval.results_typed import ResultColumns, decode_result_columns
from ovformer_core.eval.rle import FlatMasks, Rle, SegmentationError, SizedCounts, normalise_track
from ovformer_core.io.dataset_json import MAX_ID, is_id
from ovformer_core.io.json_input import brief, finite_float, parse_json_text, read_json, read_json_bytes
from ovformer_core.io.rle import scan_rles

_RESULT_KEYS = ("video_id", "category_id", "score", "segmentations")


@dataclass(frozen=True)
class Detections:
    """The results that take part in the evaluation (category known to the ground truth).

    Attributes:
        video: int64 ``[D]`` video index (into ``GroundTruth.video_ids``).
        category: int64 ``[D]`` category index (into ``GroundTruth.category_ids``).
        score: float64 ``[D]``.
        file_index: int64 ``[D]`` position in the results list (ties keep this order).
        masks: the per-frame masks of the D results.
        num_results: length of the results list.
        num_unknown_category: results ignored because the ground truth has no such category.
    """

    video: np.ndarray
    category: np.ndarray
    score: np.ndarray
    file_index: np.ndarray
    masks: FlatMasks
    num_results: int
    num_unknown_category: int


def load_results(source: str | os.PathLike[str] | list[Any]) -> list[Any]:
    """The results list from a file path, or ``source`` itself when it already is a list.

    A full ovformer result file (``NAME.json``, ``NAME.reviewed.json``) is read as its YouTube-VIS list.
    """
    if isinstance(source, (str, os.PathLike)):
        return _results_list(read_json(source, "results file", ResultsError), str(source))
    return _results_list(source, "results")


def read_checked_results(source: str | os.PathLike[str] | list[Any], gt: GroundTruth) -> Detections:
    """``check_results(load_results(source), gt)``; a file of the usual shape is decoded straight to columns.

    Raises:
        ResultsError: as ``load_results`` and ``check_results``.
    """
    if not isinstance(source, (str, os.PathLike)):
        return check_results(_results_list(source, "results", gt), gt)
    data, where = read_json_bytes(source, "results file", ResultsError)
    detections = _typed_detections(data, gt)
    if detections is not None:
        return detections
    return check_results(_results_list(parse_json_text(data, where, ResultsError), str(source), gt), gt)


def _typed_detections(data: bytes, gt: GroundTruth) -> Detections | None:
    """The Detections of a results file of the usual shape, decoded straight to columns; else None.

    None also when memory runs out: the generic path then says so in one line. Everything decoded here
    is freed on return, before the generic path parses the text again.
    """
    try:
        columns = decode_result_columns(data)
        if columns is None:
            return None
        sizes, counts = columns.sizes, columns.counts
        return _detections_in_bulk(
            columns, gt, tuple, lambda keep: SizedCounts(list(compress(sizes, keep)), list(compress(counts, keep)))
        )
    except MemoryError:
        return None


def _results_list(results: Any, where: str, gt: GroundTruth | None = None) -> list[Any]:
    if is_full_result(results):
        results = ytvis_results_of(results, where, None if gt is None else gt.video_names)
    if not isinstance(results, list):
        raise ResultsError(
            f"results must be a list of per-video predictions, not {type(results).__name__}; "
            "write them in YouTube-VIS results format"
        )
    return results


def _entry_error(index: int, message: str) -> ResultsError:
    return ResultsError(f"results entry {index}: {message}")


def _check_entry(
    i: int, entry: Any, gt: GroundTruth, video_pos: dict[int, int]
) -> tuple[int, int, float, list[Rle], list[int]]:
    """(video index, category id, score, masks, frames) of one entry, or a ResultsError naming it."""
    if not isinstance(entry, dict):
        raise _entry_error(i, f"is a {type(entry).__name__}, not an object")
    for key in _RESULT_KEYS:
        if key not in entry:
            raise _entry_error(i, f"has no '{key}'; every entry needs {', '.join(_RESULT_KEYS)}")
    video_id, category_id, score = entry["video_id"], entry["category_id"], entry["score"]
    if not is_id(video_id) or int(video_id) not in video_pos:
        raise _entry_error(i, f"video_id {brief(video_id)} is not in the ground truth; check the files match")
    if not is_id(category_id):
        raise _entry_error(i, f"category_id {brief(category_id)} is not an integer")
    if finite_float(score) is None:
        raise _entry_error(i, f"score {brief(score)} is not a finite number")
    v = video_pos[int(video_id)]
    segs = entry["segmentations"]
    num_frames = int(gt.num_frames[v])
    if not isinstance(segs, list) or len(segs) != num_frames:
        got = f"{len(segs)} segmentations" if isinstance(segs, list) else f"a {type(segs).__name__}"
        raise _entry_error(
            i, f"has {got} but video {video_id} has {num_frames} frames; give one mask (or null) per frame"
        )
    height, width = int(gt.heights[v]), int(gt.widths[v])
    try:
        rles, frames = normalise_track(segs, height, width, allow_polygons=False)
    except SegmentationError as err:
        raise _entry_error(i, str(err)) from None
    return v, int(category_id), float(score), rles, frames


def check_results(results: list[Any], gt: GroundTruth) -> Detections:
    """Check every entry of ``results`` against ``gt`` and keep those with a known category.

    The dictionaries are not modified (the official ``loadRes`` rewrites them in place). The usual
    file (every entry well formed, masks as compressed RLE with str counts) is checked in bulk; any
    other goes entry by entry, which names the first bad one.

    Raises:
        ResultsError: for the first malformed entry: a missing key, an unknown video id, a non-finite
            score, a wrong number of frames, a bad RLE or a mask whose size is not the video's.
    """
    checked = _check_in_bulk(results, gt)
    if checked is not None:
        return checked
    return _check_entry_by_entry(results, gt)


_RESULT_FIELDS = itemgetter(*_RESULT_KEYS)


def _check_in_bulk(results: list[Any], gt: GroundTruth) -> Detections | None:
    """``check_results`` for results that pass every check, with C-speed list passes; else None.

    Accepts exactly what ``_check_entry_by_entry`` accepts when every entry is a dict with int ids, a
    float or int score and a list of one segmentation per frame, each falsy (absent) or a dict whose
    ``size`` equals the video's and whose ``counts`` is a non-empty str; returns the same Detections.
    Anything else (including every error) returns None, so that the entry-by-entry check decides.
    """
    if set(map(type, results)) - {dict}:
        return None
    try:
        fields = list(map(_RESULT_FIELDS, results))
    except KeyError:
        return None
    video_ids, category_ids, scores, segs = (
        (list(column) for column in zip(*fields, strict=True)) if fields else ([],) * 4
    )
    if set(map(type, video_ids)) - {int} or set(map(type, category_ids)) - {int} or set(map(type, segs)) - {list}:
        return None
    if set(map(type, scores)) - {float, int}:
        return None
    flat = list(chain.from_iterable(segs))
    is_present = np.fromiter(map(bool, flat), dtype=bool, count=len(flat))
    present = list(compress(flat, is_present.tolist()))
    if set(map(type, present)) - {dict}:
        return None
    try:
        sizes = list(map(itemgetter("size"), present))
        counts = list(map(itemgetter("counts"), present))
    except KeyError:
        return None
    if set(map(type, counts)) - {str}:
        return None
    columns = ResultColumns(
        video_ids=video_ids,
        category_ids=category_ids,
        scores=scores,
        num_frames=np.fromiter(map(len, segs), dtype=np.int64, count=len(segs)),
        is_present=is_present,
        sizes=sizes,
        counts=counts,
    )
    return _detections_in_bulk(columns, gt, list, lambda keep: list(compress(present, keep)))


def _detections_in_bulk(
    columns: ResultColumns,
    gt: GroundTruth,
    size_type: type[list[int]] | type[tuple[int, ...]],
    masks_kept: Callable[[list[bool]], Sequence[Rle]],
) -> Detections | None:
    """The Detections of well-typed columns when every value passes its check, else None.

    Args:
        size_type: ``list`` (sizes read from dicts) or ``tuple`` (decoded by msgspec): each mask's size
            is compared with its video's frame size written as that type (``[1, 2] != (1, 2)``).
        masks_kept: given one keep flag per mask (``columns.counts`` order), the RLE dicts of the masks
            kept, in order.
    """
    video_ids, category_ids = columns.video_ids, columns.category_ids
    if category_ids and not (-MAX_ID - 1 <= min(category_ids) and max(category_ids) <= MAX_ID):
        return None
    video_of = list(map(gt.video_index().get, video_ids))
    if None in video_of:
        return None
    try:
        score = np.array(list(map(float, columns.scores)), dtype=np.float64)  # float() as finite_float converts
    except OverflowError:
        return None
    video = np.array(video_of, dtype=np.int64)
    num_frames, is_present = columns.num_frames, columns.is_present
    if not np.isfinite(score).all() or not np.array_equal(num_frames, gt.num_frames[video]):
        return None
    entry_start = np.concatenate([[0], np.cumsum(num_frames)])
    present_before = np.concatenate([[0], np.cumsum(is_present)])
    per_entry = present_before[entry_start[1:]] - present_before[entry_start[:-1]]  # [N]
    owner = np.repeat(np.arange(len(video_ids)), per_entry)
    frame_sizes = [size_type((int(h), int(w))) for h, w in zip(gt.heights.tolist(), gt.widths.tolist(), strict=True)]
    expected = chain.from_iterable(map(repeat, map(frame_sizes.__getitem__, video.tolist()), per_entry.tolist()))
    if not all(columns.counts) or not all(map(eq, columns.sizes, expected)):
        return None
    scan = scan_rles(columns.counts, (gt.heights * gt.widths)[video[owner]])
    if scan.problem is not None:
        return None

    category_of = list(map(gt.category_index().get, category_ids))
    known = np.array([c is not None for c in category_of], dtype=bool)
    keep = known[owner]
    kept_per_entry = per_entry[known]
    frame = (np.flatnonzero(is_present) - np.repeat(entry_start[:-1], per_entry))[keep]
    return Detections(
        video=video[known],
        category=np.array([c for c in category_of if c is not None], dtype=np.int64),
        score=score[known],
        file_index=np.flatnonzero(known).astype(np.int64),
        masks=FlatMasks(
            rles=masks_kept(keep.tolist()),
            frame=frame.astype(np.int64),
            area=scan.areas[keep],
            track_start=np.concatenate([[0], np.cumsum(kept_per_entry)]).astype(np.int64),
        ),
        num_results=len(video_ids),
        num_unknown_category=int(len(video_ids) - known.sum()),
    )


def _check_entry_by_entry(results: list[Any], gt: GroundTruth) -> Detections:
    """``check_results`` one entry at a time: the first bad entry raises a ResultsError naming it."""
    video_pos = gt.video_index()
    category_pos = gt.category_index()
    frame_pixels = gt.heights * gt.widths
    videos: list[int] = []
    categories: list[int] = []
    scores: list[float] = []
    file_index: list[int] = []
    rles: list[Rle] = []
    frames: list[int] = []
    track_start = [0]
    unknown_category = 0
    for i, entry in enumerate(results):
        try:
            v, category_id, score, entry_rles, entry_frames = _check_entry(i, entry, gt, video_pos)
        except ResultsError:
            # Mask contents are checked in bulk; a bad one in an earlier entry is the first error.
            _checked_areas(rles, frames, track_start, file_index, frame_pixels[videos])
            raise
        c = category_pos.get(category_id)
        if c is None:
            # Never evaluated, but still checked so that a corrupt file is reported whatever its ids.
            try:
                _checked_areas(entry_rles, entry_frames, [0, len(entry_rles)], [i], frame_pixels[[v]])
            except ResultsError:
                _checked_areas(rles, frames, track_start, file_index, frame_pixels[videos])  # an earlier one first
                raise
            unknown_category += 1
            continue
        rles.extend(entry_rles)
        frames.extend(entry_frames)
        track_start.append(len(rles))
        videos.append(v)
        categories.append(c)
        scores.append(score)
        file_index.append(i)
    areas = _checked_areas(rles, frames, track_start, file_index, frame_pixels[videos])
    return Detections(
        video=np.array(videos, dtype=np.int64),
        category=np.array(categories, dtype=np.int64),
        score=np.array(scores, dtype=np.float64),
        file_index=np.array(file_index, dtype=np.int64),
        masks=FlatMasks(
            rles=rles,
            frame=np.array(frames, dtype=np.int64),
            area=areas,
            track_start=np.array(track_start, dtype=np.int64),
        ),
        num_results=len(results),
        num_unknown_category=unknown_category,
    )


def _checked_areas(
    rles: list[Rle], frames: list[int], track_start: list[int], file_index: list[int], track_pixels: np.ndarray
) -> np.ndarray:
    """Pixel counts of ``rles`` (int64 ``[E]``), measured while their counts strings are checked.

    Args:
        rles, frames: masks and their frame indices, track after track (``track_start`` offsets).
        file_index: results-list position of each track, for the error message.
        track_pixels: int ``[N]`` pixels of a frame of each track's video.

    Raises:
        ResultsError: for the first mask whose counts string pycocotools cannot decode exactly (see
            ``scan_rles``): corrupt, or runs that do not cover its frame exactly.
    """
    starts = np.asarray(track_start, dtype=np.int64)
    owner = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    scan = scan_rles([rle["counts"] for rle in rles], np.asarray(track_pixels, dtype=np.int64)[owner])
    if scan.problem is not None:
        bad = scan.problem
        raise _entry_error(file_index[owner[bad.index]], f"frame {frames[bad.index]} has a bad RLE: {bad.reason}")
    return scan.areas

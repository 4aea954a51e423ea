"""The result of segmenting one video, and its files.

``VideoResult`` holds a video's tracks; each ``Track`` keeps one compressed RLE per processed frame
(decoded only when asked, ``Track.mask``). Files, all written atomically:

- the full ovformer result (``write_result_json`` / ``load_results``): everything, read back by
  ``ovformer export``;
- YouTube-VIS / LV-VIS results (``write_ytvis_json``): the list the official evaluators load;
- COCO-style per-frame annotations (``write_coco_json``);
- per-frame PNG id masks (``ovformer_core.io.png_masks``).

Conventions: ``track_id`` >= 1 (0 is the background value of PNG id masks); ``frame_indices`` are
source frame numbers (with a stride they skip), strictly increasing; ``frame_times`` (seconds on the
source timeline, strictly increasing) go with them; every track has exactly ``num_frames``
segmentations, one per entry of ``frame_indices``. Width, height and masks are in display orientation.
Results written before ``frame_times`` and ``decode`` existed load with both set to ``None``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ovformer_core.errors import ResultsError
from ovformer_core.io.atomic import write_text_atomic
from ovformer_core.io.dataset_json import MAX_ID, MAX_VIDEO_FRAMES, check_ids
from ovformer_core.io.decode_report import DecodeReport
from ovformer_core.io.json_input import brief, finite_float, is_int, read_json
from ovformer_core.io.rle import Rle, decode_rle, encode_rles, first_bad_rle, frame_size_problem, rle_area, rle_bbox

#: ``format`` value of the full ovformer result file, and its schema version.
RESULT_FORMAT = "ovformer-results"
RESULT_VERSION = 1


@dataclass(frozen=True)
class Track:
    """One object followed through a video.

    Attributes:
        track_id: id >= 1, unique within the video.
        label: 0-based index into the vocabulary the model was run with.
        category_name: the vocabulary name of ``label``.
        category_id: the id written to result files (YouTube-VIS style, usually ``label + 1``).
        score: confidence in [0, 1].
        segmentations: per processed frame, a compressed RLE (``{"size": [h, w], "counts": str}``),
            possibly of an empty mask, or ``None`` where the object is absent.
        query_slot: the decoder query that followed the object (set by the predictor; not saved in
            result files, so None for a track read from one).
    """

    track_id: int
    label: int
    category_name: str
    category_id: int
    score: float
    segmentations: list[Rle | None] = field(repr=False)
    query_slot: int | None = field(default=None, compare=False)

    @classmethod
    def from_masks(
        cls,
        track_id: int,
        label: int,
        category_name: str,
        category_id: int,
        score: float,
        masks: np.ndarray,
        empty_as_none: bool = False,
    ) -> Track:
        """Build a track from dense masks.

        Args:
            masks: bool ``[T, H, W]``, one mask per processed frame.
            empty_as_none: write ``None`` instead of an empty-mask RLE for frames without pixels.
                Off by default: the official LV-VIS/YouTube-VIS results carry an RLE for every frame.
        """
        rles: list[Rle | None] = list(encode_rles(masks))
        if empty_as_none:
            rles = [None if not masks[t].any() else rle for t, rle in enumerate(rles)]
        return cls(
            track_id=int(track_id),
            label=int(label),
            category_name=str(category_name),
            category_id=int(category_id),
            score=float(score),
            segmentations=rles,
        )

    @property
    def num_frames(self) -> int:
        """Number of processed frames (entries of ``segmentations``)."""
        return len(self.segmentations)

    def mask(self, frame: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Decode the mask at position ``frame`` (0-based among processed frames).

        Args:
            frame: position in ``segmentations`` (not a source frame number).
            shape: ``(H, W)`` of the all-false mask returned where the segmentation is ``None``;
                defaults to the size of any other frame's RLE.

        Returns:
            bool ``[H, W]``.
        """
        rle = self.segmentations[frame]
        if rle is not None:
            return decode_rle(rle)
        if shape is None:
            present = next((r for r in self.segmentations if r is not None), None)
            if present is None:
                raise ValueError(f"track {self.track_id} has no segmentation; pass shape=(H, W)")
            shape = (int(present["size"][0]), int(present["size"][1]))
        return np.zeros(shape, dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the track entry of the full result file)."""
        return {
            "track_id": int(self.track_id),
            "label": int(self.label),
            "category_name": str(self.category_name),
            "category_id": int(self.category_id),
            "score": float(self.score),
            "segmentations": list(self.segmentations),
        }


@dataclass(frozen=True)
class VideoResult:
    """Everything ``ovformer segment`` found in one video.

    Attributes:
        video_name: the source's name (file stem or folder name).
        video_path: the source path as given.
        video_id: id written to YouTube-VIS results (1-based input position, or the dataset's id).
        width: frame width in pixels, in display orientation (masks are this size).
        height: frame height.
        num_frames: number of processed frames.
        fps: average frame rate of the source (not divided by any stride).
        frame_indices: ``[num_frames]`` source frame number of each processed frame, increasing.
        tracks: the tracks, in any order.
        categories: the vocabulary as ``[{"id": category_id, "name": ...}, ...]``.
        model_id: which model/weights produced this (free text, e.g. ``"ovformer-r50-lvvis"``).
        metadata: anything else JSON-serialisable (read options, thresholds, timings).
        frame_times: ``[num_frames]`` seconds on the source timeline of each processed frame,
            increasing (variable frame rate kept); ``None`` in results from older versions.
        decode: how reading the source went (frames decoded of declared, truncation, damage,
            orientation); ``None`` in results from older versions. ``decode.complete`` is False for a
            truncated or damaged source.
    """

    video_name: str
    video_path: str
    video_id: int
    width: int
    height: int
    num_frames: int
    fps: float
    frame_indices: list[int]
    tracks: list[Track]
    categories: list[dict[str, Any]]
    model_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    frame_times: list[float] | None = None
    decode: DecodeReport | None = None

    def __post_init__(self) -> None:
        problem = _result_problem(self)
        if problem:
            raise ValueError(f"invalid VideoResult for {self.video_name}: {problem}")

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.height, self.width

    def track_span(self, track: Track) -> tuple[int, int] | None:
        """The source frame numbers of the first and last frame where ``track`` has a non-empty mask; None if none."""
        present = [i for i, rle in enumerate(track.segmentations) if rle is not None and rle_area(rle) > 0]
        return (self.frame_indices[present[0]], self.frame_indices[present[-1]]) if present else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (one entry of the full result file's ``videos``).

        ``frame_times`` and ``decode`` are written only when set, so older readers see the old layout.
        """
        data: dict[str, Any] = {
            "video_name": str(self.video_name),
            "video_path": str(self.video_path),
            "video_id": int(self.video_id),
            "width": int(self.width),
            "height": int(self.height),
            "num_frames": int(self.num_frames),
            "fps": float(self.fps),
            "frame_indices": [int(i) for i in self.frame_indices],
        }
        if self.frame_times is not None:
            data["frame_times"] = [float(t) for t in self.frame_times]
        if self.decode is not None:
            data["decode"] = self.decode.to_dict()
        data.update(
            {
                "categories": [{"id": int(c["id"]), "name": str(c["name"])} for c in self.categories],
                "model_id": str(self.model_id),
                "metadata": self.metadata,
                "tracks": [track.to_dict() for track in self.tracks],
            }
        )
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "result") -> VideoResult:
        """Inverse of ``to_dict``; raises a one-line ``ResultsError`` naming ``where`` if malformed."""
        return _video_result_from_dict(data, where)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> VideoResult:
        """Read a full result file holding exactly one video."""
        return load_result(path)


def _result_problem(result: VideoResult) -> str | None:
    """What is inconsistent in ``result``, or None.

    Checks the invariants every consumer relies on: a frame size a video can have, one strictly
    increasing frame index per frame, unique track ids >= 1, finite scores in [0, 1], one segmentation
    per frame, and every mask a well-formed RLE of the frame size (checked in bulk: ``first_bad_rle``).
    """
    size_problem = frame_size_problem(result.height, result.width)
    if size_problem is not None:
        return f"frame size {size_problem}"
    fps = finite_float(result.fps)
    if fps is None or fps <= 0:
        return f"fps {brief(result.fps)} is not a positive number"
    if len(result.frame_indices) != result.num_frames:
        return f"{len(result.frame_indices)} frame indices for {result.num_frames} frames"
    if any(b <= a for a, b in zip(result.frame_indices, result.frame_indices[1:], strict=False)):
        return "frame indices are not strictly increasing"
    if result.frame_times is not None:
        if len(result.frame_times) != result.num_frames:
            return f"{len(result.frame_times)} frame times for {result.num_frames} frames"
        if not all(math.isfinite(t) for t in result.frame_times):
            return "frame times are not all finite numbers"
        if any(b <= a for a, b in zip(result.frame_times, result.frame_times[1:], strict=False)):
            return "frame times are not strictly increasing"
    seen: set[int] = set()
    counts: list[str] = []
    owners: list[tuple[int, int]] = []
    for track in result.tracks:
        if track.track_id < 1:
            return f"track id {track.track_id} is below 1 (0 is the background of PNG masks)"
        if track.track_id in seen:
            return f"track id {track.track_id} appears twice"
        seen.add(track.track_id)
        score = finite_float(track.score)
        if score is None or not 0 <= score <= 1:
            return f"track {track.track_id} score {brief(track.score)} is not a number in [0, 1]"
        if track.num_frames != result.num_frames:
            return f"track {track.track_id} has {track.num_frames} segmentations for {result.num_frames} frames"
        for t, rle in enumerate(track.segmentations):
            if rle is None:
                continue
            if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str):
                return f"track {track.track_id} frame {t} is not a compressed RLE with string counts"
            size = rle.get("size")
            if size != [result.height, result.width]:
                shown = f"{size[1]}x{size[0]}" if isinstance(size, list) and len(size) == 2 else brief(size)
                return f"track {track.track_id} frame {t} mask is {shown}, not {result.width}x{result.height}"
            counts.append(rle["counts"])
            owners.append((track.track_id, t))
    bad = first_bad_rle(counts, result.height * result.width)
    if bad is not None:
        track_id, t = owners[bad.index]
        return f"track {track_id} frame {t} has a bad RLE: {bad.reason}"
    return None


#: Lowest and highest frame rate a result may claim. The overlay writes its rate as an FFmpeg rational
#: (32-bit numerator and denominator) with a denominator of at most 1001 (``io/overlay.py``), so a slower
#: rate rounds to zero and a faster one overflows the numerator.
MIN_FPS = 1 / 1001
MAX_FPS = (2**31 - 1) / 1001
#: Highest track id a result file may hold: PNG id masks (``io/png_masks.py``) store ids as 16-bit pixels,
#: so a larger one could be segmented but not exported.
MAX_TRACK_ID = 2**16 - 1
#: Deepest nesting of ``metadata`` objects and lists: written results nest two levels; a deeper one
#: would only be a way to make writing the file back fail.
MAX_METADATA_DEPTH = 32


def _fail(where: str, message: str) -> ResultsError:
    return ResultsError(f"{where}: {message}; write it again with `write_result_json()` or fix the file")


def _get(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ResultsError(f"{where}: missing key '{key}'; pass a file written by `write_result_json()`")
    return data[key]


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = _get(data, key, where)
    if not isinstance(value, str):
        raise _fail(where, f"'{key}' has the wrong type ({type(value).__name__}), not a string")
    return value


def _integer(data: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = _get(data, key, where)
    if not is_int(value):
        raise _fail(where, f"'{key}' has the wrong type ({type(value).__name__}), not an integer")
    if not low <= value <= high:
        raise _fail(where, f"'{key}' is {brief(value)}, outside [{low}, {high}]")
    return value


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """True if lists/objects in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _track_from_dict(data: Any, where: str, num_categories: int) -> Track:
    if not isinstance(data, dict):
        raise _fail(where, f"a track must be an object, not {type(data).__name__}")
    segmentations = _get(data, "segmentations", where)
    if not isinstance(segmentations, list):
        raise _fail(where, f"'segmentations' has the wrong type ({type(segmentations).__name__}), not a list")
    score = _get(data, "score", where)
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        raise _fail(where, f"'score' has the wrong type ({type(score).__name__}), not a number")
    if not 0 <= score <= 1:
        raise _fail(where, f"score {brief(score)} is not a number in [0, 1]")
    return Track(
        track_id=_integer(data, "track_id", where, 1, MAX_TRACK_ID),
        label=_integer(data, "label", where, 0, max(num_categories - 1, 0)),
        category_name=_text(data, "category_name", where),
        category_id=_integer(data, "category_id", where, -MAX_ID - 1, MAX_ID),
        score=float(score),
        segmentations=segmentations,
    )


def _video_result_from_dict(data: Any, where: str) -> VideoResult:
    if not isinstance(data, dict):
        raise _fail(where, f"a video result must be an object, not {type(data).__name__}")
    width, height = _integer(data, "width", where, 1, MAX_ID), _integer(data, "height", where, 1, MAX_ID)
    size_problem = frame_size_problem(height, width)
    if size_problem is not None:
        raise _fail(where, f"frame size {size_problem}")
    fps = _get(data, "fps", where)
    if not isinstance(fps, (int, float)) or isinstance(fps, bool):
        raise _fail(where, f"'fps' has the wrong type ({type(fps).__name__}), not a number")
    if finite_float(fps) is None or not MIN_FPS <= fps <= MAX_FPS:
        raise _fail(where, f"fps {brief(fps)} is not a frame rate in [1/1001, {MAX_FPS:.0f}]")
    num_frames = _integer(data, "num_frames", where, 0, MAX_VIDEO_FRAMES)
    frame_indices = _get(data, "frame_indices", where)
    if not isinstance(frame_indices, list) or not all(type(i) is int for i in frame_indices):
        raise _fail(where, "'frame_indices' must be a list of integers")
    if frame_indices and (min(frame_indices) < 0 or max(frame_indices) > MAX_VIDEO_FRAMES):
        raise _fail(where, f"'frame_indices' must lie in [0, {MAX_VIDEO_FRAMES}]")
    categories = _get(data, "categories", where)
    if not isinstance(categories, list):
        raise _fail(where, "'categories' must be a list of {id, name}")
    check_ids(categories, "categories", ResultsError, where, required=True)
    for i, category in enumerate(categories):
        if not isinstance(category.get("name"), str):
            raise _fail(where, f"categories[{i}] needs a string 'name'")
    metadata = _get(data, "metadata", where)
    if not isinstance(metadata, dict):
        raise _fail(where, f"'metadata' has the wrong type ({type(metadata).__name__}), not an object")
    if _nesting_exceeds(metadata, MAX_METADATA_DEPTH):
        raise _fail(where, f"'metadata' nests deeper than {MAX_METADATA_DEPTH} levels")
    tracks_data = _get(data, "tracks", where)
    if not isinstance(tracks_data, list):
        raise _fail(where, f"'tracks' has the wrong type ({type(tracks_data).__name__}), not a list")
    tracks = [_track_from_dict(track, f"{where} track {i}", len(categories)) for i, track in enumerate(tracks_data)]
    frame_times = data.get("frame_times")
    if frame_times is not None:
        if not isinstance(frame_times, list) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and finite_float(t) is not None for t in frame_times
        ):
            raise _fail(where, "'frame_times' must be a list of finite numbers (seconds)")
        frame_times = [float(t) for t in frame_times]
    decode = data.get("decode")
    try:
        return VideoResult(
            video_name=_text(data, "video_name", where),
            video_path=_text(data, "video_path", where),
            video_id=_integer(data, "video_id", where, -MAX_ID - 1, MAX_ID),
            width=width,
            height=height,
            num_frames=num_frames,
            fps=float(fps),
            frame_indices=frame_indices,
            tracks=tracks,
            categories=[{"id": c["id"], "name": c["name"]} for c in categories],
            model_id=_text(data, "model_id", where),
            metadata=metadata,
            frame_times=frame_times,
            decode=None if decode is None else DecodeReport.from_dict(decode, f"{where} decode"),
        )
    except ValueError as err:
        raise _fail(where, str(err).split(": ", 1)[-1]) from err


def _dumps(value: Any) -> str:
    # Compact: these files are mostly RLE strings, and indentation would double their size.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def write_result_json(path: str | os.PathLike[str], results: VideoResult | Sequence[VideoResult]) -> None:
    """Write the full ovformer result file (one or several videos); atomic.

    Layout: ``{"format": "ovformer-results", "version": 1, "videos": [VideoResult.to_dict(), ...]}``.
    Video ids must be distinct: ``load_results`` refuses a file that repeats one, so none is written.
    """
    videos = [results] if isinstance(results, VideoResult) else list(results)
    if _repeated_video_id(videos) is not None:
        ids = [video.video_id for video in videos]
        raise ValueError(f"video ids repeat in {ids}; give each video of a result file its own id")
    document = {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "videos": [video.to_dict() for video in videos],
    }
    write_text_atomic(path, _dumps(document))


def load_results(path: str | os.PathLike[str]) -> list[VideoResult]:
    """Read a full ovformer result file (all its videos).

    Raises:
        ResultsError: the file is missing, not JSON, a YouTube-VIS list, another format or version,
            or any entry is malformed.
    """
    path = Path(path)
    data = read_json(path, "result file", ResultsError)
    if isinstance(data, list):
        raise ResultsError(
            f"{path} is a YouTube-VIS results list (as `segment --dataset` and `-f ytvis` write for evaluation), "
            "not a full ovformer result; pass a video's own NAME.json, which `segment VIDEO` writes"
        )
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        raise ResultsError(f"{path} is not an ovformer result file; pass a file written by `write_result_json()`")
    if data.get("version") != RESULT_VERSION:
        raise ResultsError(
            f"{path} has result format version {brief(data.get('version'))}, this ovformer reads version "
            f"{RESULT_VERSION}; write it again with `write_result_json()` or upgrade ovformer"
        )
    videos = _get(data, "videos", str(path))
    if not isinstance(videos, list):
        raise _fail(str(path), "'videos' must be a list")
    results = [_video_result_from_dict(video, f"{path} video {i}") for i, video in enumerate(videos)]
    repeated = _repeated_video_id(results)
    if repeated is not None:
        video_id, first, again = repeated
        raise _fail(str(path), f"video id {video_id} appears twice (videos {first} and {again})")
    return results


def _repeated_video_id(videos: Sequence[VideoResult]) -> tuple[int, int, int] | None:
    """The first video id that repeats, with the positions of its two videos, or None when all differ."""
    seen: dict[int, int] = {}
    for i, video in enumerate(videos):
        if video.video_id in seen:
            return video.video_id, seen[video.video_id], i
        seen[video.video_id] = i
    return None


def load_result(path: str | os.PathLike[str]) -> VideoResult:
    """Read a full ovformer result file that holds exactly one video (see ``load_results``)."""
    results = load_results(path)
    if len(results) != 1:
        raise ResultsError(f"{path} holds {len(results)} videos, expected exactly one; use a per-video result file")
    return results[0]


def ytvis_entries(result: VideoResult, extra_keys: bool = True) -> list[dict[str, Any]]:
    """The YouTube-VIS / LV-VIS result entries of one video, one per track.

    Each entry is ``{video_id, category_id, score, segmentations}`` (+ ``category_name`` and
    ``track_id`` with ``extra_keys``; the official ``loadRes`` only reads the first four, so the
    extras are harmless). ``segmentations`` has one item per processed frame: for evaluation run on
    every frame (stride 1, no start/end time), since the evaluators index it by the dataset's frames.
    """
    entries = []
    for track in result.tracks:
        entry: dict[str, Any] = {
            "video_id": int(result.video_id),
            "category_id": int(track.category_id),
            "score": float(track.score),
            "segmentations": list(track.segmentations),
        }
        if extra_keys:
            entry["category_name"] = str(track.category_name)
            entry["track_id"] = int(track.track_id)
        entries.append(entry)
    return entries


def write_ytvis_json(
    path: str | os.PathLike[str], results: VideoResult | Sequence[VideoResult], extra_keys: bool = True
) -> None:
    """Write the YouTube-VIS / LV-VIS results list for all ``results``; atomic."""
    videos = [results] if isinstance(results, VideoResult) else list(results)
    entries = [entry for video in videos for entry in ytvis_entries(video, extra_keys)]
    write_text_atomic(path, _dumps(entries))


def coco_document(results: Sequence[VideoResult]) -> dict[str, Any]:
    """COCO-style per-frame annotations of several videos.

    ``images`` are frames (``id`` 1-based over all videos, ``video_id``, ``frame_index`` = source frame
    number, ``file_name`` = ``<video_name>/<frame_index:06d>.jpg``, ``width``, ``height``);
    ``annotations`` are non-empty masks (``segmentation`` compressed RLE, ``area``, ``bbox`` [x, y, w, h],
    ``score``, ``track_id``, ``category_id``, ``iscrowd`` 0); ``categories`` are the union over videos.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: dict[int, str] = {}
    videos = []
    for result in results:
        videos.append(
            {
                "id": int(result.video_id),
                "name": result.video_name,
                "width": result.width,
                "height": result.height,
                "length": result.num_frames,
            }
        )
        for category in result.categories:
            categories.setdefault(int(category["id"]), str(category["name"]))
        first_image_id = len(images) + 1
        for position, frame_index in enumerate(result.frame_indices):
            images.append(
                {
                    "id": first_image_id + position,
                    "video_id": int(result.video_id),
                    "frame_index": int(frame_index),
                    "file_name": f"{result.video_name}/{frame_index:06d}.jpg",
                    "width": result.width,
                    "height": result.height,
                }
            )
        for track in result.tracks:
            categories.setdefault(int(track.category_id), str(track.category_name))
            for position, rle in enumerate(track.segmentations):
                if rle is None:
                    continue
                area = rle_area(rle)
                if area == 0:
                    continue
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": first_image_id + position,
                        "video_id": int(result.video_id),
                        "category_id": int(track.category_id),
                        "track_id": int(track.track_id),
                        "segmentation": rle,
                        "area": area,
                        "bbox": rle_bbox(rle),
                        "score": float(track.score),
                        "iscrowd": 0,
                    }
                )
    return {
        "info": {"description": "ovformer per-frame instance masks"},
        "videos": videos,
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for cid, name in sorted(categories.items())],
    }


def write_coco_json(path: str | os.PathLike[str], results: VideoResult | Sequence[VideoResult]) -> None:
    """Write COCO-style per-frame annotations (see ``coco_document``); atomic."""
    videos = [results] if isinstance(results, VideoResult) else list(results)
    write_text_atomic(path, _dumps(coco_document(videos)))

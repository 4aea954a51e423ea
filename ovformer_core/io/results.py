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
from ovformer_core.io.decode_report import DecodeReport
from ovformer_core.io.rle import Rle, decode_rle, encode_rles, invalid_rles, rle_area, rle_bbox

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
    """

    track_id: int
    label: int
    category_name: str
    category_id: int
    score: float
    segmentations: list[Rle | None] = field(repr=False)

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
    """What is inconsistent in ``result``, or None."""
    if result.width < 1 or result.height < 1:
        return f"frame size {result.width}x{result.height} is not positive"
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
    for track in result.tracks:
        if track.track_id < 1:
            return f"track id {track.track_id} is below 1 (0 is the background of PNG masks)"
        if track.track_id in seen:
            return f"track id {track.track_id} appears twice"
        seen.add(track.track_id)
        if track.num_frames != result.num_frames:
            return f"track {track.track_id} has {track.num_frames} segmentations for {result.num_frames} frames"
        present = [(t, rle) for t, rle in enumerate(track.segmentations) if rle is not None]
        malformed = invalid_rles([rle for _, rle in present])  # one pass: results hold 100,000s of masks
        for (t, rle), bad in zip(present, malformed, strict=True):
            if bad:
                return f"track {track.track_id} frame {t} is not a compressed RLE with string counts"
            if list(rle["size"]) != [result.height, result.width]:
                return (
                    f"track {track.track_id} frame {t} mask is {rle['size'][1]}x{rle['size'][0]}, "
                    f"not {result.width}x{result.height}"
                )
    return None


def _require(data: Any, key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ResultsError(f"{where}: missing key '{key}'; pass a file written by `ovformer segment`")
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        raise ResultsError(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _track_from_dict(data: Any, where: str) -> Track:
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: a track must be an object, got {type(data).__name__}")
    segmentations = _require(data, "segmentations", list, where)
    present = [t for t, rle in enumerate(segmentations) if rle is not None]
    malformed = invalid_rles([segmentations[t] for t in present])
    if malformed.any():
        raise ResultsError(
            f"{where}: frame {present[int(np.argmax(malformed))]} is not a well-formed compressed RLE "
            "({size, counts}) or null; re-run `ovformer segment` to regenerate the file"
        )
    return Track(
        track_id=_require(data, "track_id", int, where),
        label=_require(data, "label", int, where),
        category_name=_require(data, "category_name", str, where),
        category_id=_require(data, "category_id", int, where),
        score=float(_require(data, "score", (int, float), where)),
        segmentations=segmentations,
    )


def _video_result_from_dict(data: Any, where: str) -> VideoResult:
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: a video result must be an object, got {type(data).__name__}")
    tracks = [
        _track_from_dict(track, f"{where} track {i}") for i, track in enumerate(_require(data, "tracks", list, where))
    ]
    categories = _require(data, "categories", list, where)
    for category in categories:
        _require(category, "id", int, f"{where} categories")
        _require(category, "name", str, f"{where} categories")
    frame_indices = _require(data, "frame_indices", list, where)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in frame_indices):
        raise ResultsError(f"{where}: 'frame_indices' must be a list of integers")
    frame_times = data.get("frame_times")
    if frame_times is not None:
        if not isinstance(frame_times, list) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in frame_times
        ):
            raise ResultsError(f"{where}: 'frame_times' must be a list of numbers (seconds)")
        try:
            frame_times = [float(t) for t in frame_times]
        except OverflowError:
            raise ResultsError(f"{where}: 'frame_times' holds a number too large for seconds") from None
    decode = data.get("decode")
    try:
        return VideoResult(
            video_name=_require(data, "video_name", str, where),
            video_path=_require(data, "video_path", str, where),
            video_id=_require(data, "video_id", int, where),
            width=_require(data, "width", int, where),
            height=_require(data, "height", int, where),
            num_frames=_require(data, "num_frames", int, where),
            fps=float(_require(data, "fps", (int, float), where)),
            frame_indices=frame_indices,
            tracks=tracks,
            categories=[{"id": c["id"], "name": c["name"]} for c in categories],
            model_id=_require(data, "model_id", str, where),
            metadata=_require(data, "metadata", dict, where),
            frame_times=frame_times,
            decode=None if decode is None else DecodeReport.from_dict(decode, f"{where} decode"),
        )
    except ValueError as err:
        raise ResultsError(f"{where}: {str(err).split(': ', 1)[-1]}") from err


def _dumps(value: Any) -> str:
    # Compact: these files are mostly RLE strings, and indentation would double their size.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def write_result_json(path: str | os.PathLike[str], results: VideoResult | Sequence[VideoResult]) -> None:
    """Write the full ovformer result file (one or several videos); atomic.

    Layout: ``{"format": "ovformer-results", "version": 1, "videos": [VideoResult.to_dict(), ...]}``.
    """
    videos = [results] if isinstance(results, VideoResult) else list(results)
    document = {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "videos": [video.to_dict() for video in videos],
    }
    write_text_atomic(path, _dumps(document))


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ResultsError(f"{path} does not exist; pass a results file written by `ovformer segment`") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read {path} ({err}); pass a readable results file") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultsError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "pass a file written by `ovformer segment`"
        ) from err


def load_results(path: str | os.PathLike[str]) -> list[VideoResult]:
    """Read a full ovformer result file (all its videos).

    Raises:
        ResultsError: the file is missing, not JSON, a YouTube-VIS list, another format or version,
            or any entry is malformed.
    """
    path = Path(path)
    data = _read_json(path)
    if isinstance(data, list):
        raise ResultsError(
            f"{path} is a list (a YouTube-VIS results file?), not a full ovformer result; "
            "pass the .json written by `ovformer segment` as its full result"
        )
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        raise ResultsError(f"{path} is not an ovformer result file; pass a file written by `ovformer segment`")
    if data.get("version") != RESULT_VERSION:
        raise ResultsError(
            f"{path} has result format version {data.get('version')!r}, this ovformer reads version "
            f"{RESULT_VERSION}; re-run `ovformer segment` or upgrade ovformer"
        )
    videos = _require(data, "videos", list, str(path))
    return [_video_result_from_dict(video, f"{path} video {i}") for i, video in enumerate(videos)]


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

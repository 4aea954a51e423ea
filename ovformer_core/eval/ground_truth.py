"""YouTube-VIS-format ground truth (also OVIS, LV-VIS and BURST converted by b2y), read and checked once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from ovformer_core.errors import ResultsError
from ovformer_core.eval.rle import FlatMasks, Rle, SegmentationError, normalise_track
from ovformer_core.io.dataset_json import check_dataset, is_id
from ovformer_core.io.json_input import brief, finite_float, read_json
from ovformer_core.io.rle import scan_rles

#: Prefix of every ground-truth error.
WHERE = "ground truth"
_ANNOTATION_KEYS = ("id", "video_id", "category_id", "segmentations")


@dataclass(frozen=True)
class GroundTruth:
    """Videos, categories and ground-truth tracks, in the orders the official evaluators use.

    Attributes:
        video_ids: int64 ``[V]`` ascending (the evaluators sort video ids).
        heights, widths, num_frames: int64 ``[V]``.
        category_ids: int64 ``[K]`` ascending.
        categories: the category dicts in file order (groups such as LV-VIS base/novel read them).
        track_video, track_category: int64 ``[G]`` video index / category index of each track, tracks
            in file order.
        track_ids: int64 ``[G]`` annotation ids.
        track_crowd: bool ``[G]`` ``iscrowd``.
        track_area_lists: each track's ``areas`` field (per-frame areas or null), ``None`` when the
            annotation has none (the mask areas are used instead).
        masks: the tracks' per-frame masks.
        num_skipped: annotations skipped because their video or category is not listed (the official
            evaluators select annotations by listed video and category ids).
        video_names: video id -> name, where the file gives one (``name``, else the folder of the first
            of ``file_names``): full ovformer results are matched to videos by it.
    """

    video_ids: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    num_frames: np.ndarray
    category_ids: np.ndarray
    categories: tuple[Mapping[str, Any], ...]
    track_video: np.ndarray
    track_category: np.ndarray
    track_ids: np.ndarray
    track_crowd: np.ndarray
    track_area_lists: tuple[list[Any] | None, ...]
    masks: FlatMasks
    num_skipped: int
    video_names: Mapping[int, str] = field(default_factory=dict)

    def video_index(self) -> dict[int, int]:
        """Video id -> position in ``video_ids``."""
        return {int(v): i for i, v in enumerate(self.video_ids)}

    def category_index(self) -> dict[int, int]:
        """Category id -> position in ``category_ids``."""
        return {int(c): i for i, c in enumerate(self.category_ids)}


def _video_names(videos: list[dict[str, Any]]) -> dict[int, str]:
    """Video id -> its name (``name``, else the folder of its first frame file), for the videos that have one."""
    names: dict[int, str] = {}
    for video in videos:
        name = video.get("name")
        if not isinstance(name, str):
            files = video.get("file_names")
            first = files[0] if isinstance(files, list) and files and isinstance(files[0], str) else ""
            name = PurePosixPath(first).parent.name
        if name:
            names[int(video["id"])] = name
    return names


def _fail(message: str) -> ResultsError:
    return ResultsError(f"{WHERE}: {message}")


def _read_videos(videos: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ids (ascending), heights, widths and frame counts of videos already checked by ``check_dataset``."""
    rows = {
        int(video["id"]): (
            int(video["height"]),
            int(video["width"]),
            int(video["length"]) if video.get("length") is not None else len(video["file_names"]),
        )
        for video in videos
    }
    ids = np.array(sorted(rows), dtype=np.int64)
    table = np.array([rows[int(v)] for v in ids], dtype=np.int64).reshape(-1, 3)
    return ids, table[:, 0], table[:, 1], table[:, 2]


def load_ground_truth(source: str | os.PathLike[str] | Mapping[str, Any]) -> GroundTruth:
    """Read and check a ground-truth file (path) or an already parsed dataset dict (not modified).

    Segmentations may be compressed RLE, uncompressed RLE or polygons; each must have the video's size
    and every track one entry per video frame.

    Raises:
        ResultsError: unreadable, not JSON, a missing key or a malformed annotation (one line).
    """
    dataset = read_json(source, "ground truth file", ResultsError) if isinstance(source, (str, os.PathLike)) else source
    if isinstance(dataset, Mapping) and not isinstance(dataset, dict):
        dataset = dict(dataset)
    check_dataset(
        dataset,
        WHERE,
        ResultsError,
        need_file_names=False,
        need_sizes=True,
        need_category_names=False,
        need_categories=False,
        need_annotations=True,
    )
    videos, categories, annotations = dataset["videos"], dataset["categories"], dataset["annotations"]
    video_ids, heights, widths, num_frames = _read_videos(videos)
    category_ids = np.array(sorted(int(category["id"]) for category in categories), dtype=np.int64)
    video_pos = {int(v): i for i, v in enumerate(video_ids)}
    category_pos = {int(c): i for i, c in enumerate(category_ids)}

    track_video: list[int] = []
    track_category: list[int] = []
    track_ids: list[int] = []
    track_crowd: list[bool] = []
    area_lists: list[list[Any] | None] = []
    rles: list[Rle] = []
    frames: list[int] = []
    track_start = [0]
    skipped = 0
    for i, ann in enumerate(annotations):
        for key in _ANNOTATION_KEYS:
            if key not in ann:
                raise _fail(f"annotations[{i}] has no '{key}'")
        for key in ("video_id", "category_id"):
            if not is_id(ann[key]):
                raise _fail(f"annotations[{i}] '{key}' must be an integer, not {brief(ann[key])}")
        v = video_pos.get(int(ann["video_id"]))
        c = category_pos.get(int(ann["category_id"]))
        if v is None or c is None:
            skipped += 1
            continue
        segs = ann["segmentations"]
        if not isinstance(segs, list) or len(segs) != num_frames[v]:
            got = len(segs) if isinstance(segs, list) else type(segs).__name__
            raise _fail(
                f"annotations[{i}] (id {ann['id']}) has {got} segmentations but video {ann['video_id']} "
                f"has {num_frames[v]} frames"
            )
        areas = ann.get("areas")
        if areas is not None and (
            not isinstance(areas, list) or not all(a is None or finite_float(a) is not None for a in areas)
        ):
            raise _fail(f"annotations[{i}] (id {ann['id']}) 'areas' must be a list of numbers or nulls")
        try:
            track_rles, track_frames = normalise_track(segs, int(heights[v]), int(widths[v]), allow_polygons=True)
        except SegmentationError as err:
            raise _fail(f"annotations[{i}] (id {ann['id']}) {err}") from None
        rles.extend(track_rles)
        frames.extend(track_frames)
        track_start.append(len(rles))
        track_video.append(v)
        track_category.append(c)
        track_ids.append(int(ann["id"]))
        track_crowd.append(bool(ann.get("iscrowd", 0)))
        area_lists.append(areas)

    track_owner = np.repeat(np.arange(len(track_ids)), np.diff(track_start))
    pixels = (heights * widths)[np.array(track_video, dtype=np.int64)][track_owner]
    scan = scan_rles([rle["counts"] for rle in rles], pixels)
    if scan.problem is not None:
        bad = scan.problem
        track = int(track_owner[bad.index])
        raise _fail(f"annotation id {track_ids[track]} frame {frames[bad.index]} has a bad RLE: {bad.reason}")
    masks = FlatMasks(
        rles=rles,
        frame=np.array(frames, dtype=np.int64),
        area=scan.areas,
        track_start=np.array(track_start, dtype=np.int64),
    )
    return GroundTruth(
        video_ids=video_ids,
        heights=heights,
        widths=widths,
        num_frames=num_frames,
        category_ids=category_ids,
        categories=tuple(categories),
        track_video=np.array(track_video, dtype=np.int64),
        track_category=np.array(track_category, dtype=np.int64),
        track_ids=np.array(track_ids, dtype=np.int64),
        track_crowd=np.array(track_crowd, dtype=bool),
        track_area_lists=tuple(area_lists),
        masks=masks,
        num_skipped=skipped,
        video_names=_video_names(videos),
    )

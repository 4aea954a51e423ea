"""Training annotations made from results: reviewed (or raw) ``ovformer segment`` output as a dataset.

``ovformer train`` reads YouTube-VIS video json with frame files (``train.data``); a result names a
video and holds masks of its processed frames. ``write_training_set`` decodes those frames to
``OUT/frames/<video_name>/<frame_index:06d>.jpg`` (the file naming of the COCO export) and writes
``OUT/annotations.json`` with one video per result and one annotation per track, so a corrected
result trains like any annotation file: ``data.train_json = OUT/annotations.json``,
``data.train_root = OUT/frames``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ovformer_core.errors import TrainingError
from ovformer_core.io.atomic import atomic_dir
from ovformer_core.io.results import VideoResult
from ovformer_core.io.rle import rle_area, rle_bbox
from ovformer_core.io.video import open_source

#: JPEG quality of the extracted frames (training reads them back; near-lossless).
FRAME_JPEG_QUALITY = 95
ANNOTATIONS_FILE = "annotations.json"
FRAMES_FOLDER = "frames"


def _categories(results: Sequence[VideoResult]) -> list[dict[str, Any]]:
    by_id: dict[int, str] = {}
    for result in results:
        for category in result.categories:
            cat_id, name = int(category["id"]), str(category["name"])
            if by_id.setdefault(cat_id, name) != name:
                raise TrainingError(
                    f"category id {cat_id} is {by_id[cat_id]!r} in one result and {name!r} in {result.video_name}; "
                    "convert results made with the same vocabulary together"
                )
    return [{"id": cat_id, "name": name} for cat_id, name in sorted(by_id.items())]


def _extract_frames(result: VideoResult, folder: Path, source: Path) -> list[str]:
    """Write the processed frames of ``result`` as JPEG; returns their names relative to the frames folder."""
    wanted = set(result.frame_indices)
    names: list[str] = []
    video = open_source(source)
    if (video.info.width, video.info.height) != (result.width, result.height):
        raise TrainingError(
            f"{source} is {video.info.width}x{video.info.height} but the result of {result.video_name} is "
            f"{result.width}x{result.height}; give the video the result was made from"
        )
    (folder / result.video_name).mkdir(parents=True, exist_ok=True)
    for decoded in video.iter_frames():
        index, frame = decoded.frame_index, decoded.image
        if index in wanted:
            name = f"{result.video_name}/{index:06d}.jpg"
            Image.fromarray(frame).save(folder / name, format="JPEG", quality=FRAME_JPEG_QUALITY)
            names.append(name)
        if index >= result.frame_indices[-1]:
            break
    if len(names) != result.num_frames:
        raise TrainingError(
            f"{source} has {len(names)} of the {result.num_frames} frames the result of {result.video_name} "
            "names; give the video the result was made from"
        )
    return names


def write_training_set(results: Sequence[tuple[VideoResult, Path]], out_dir: str | os.PathLike[str]) -> int:
    """Write ``out_dir/annotations.json`` and ``out_dir/frames/`` from results and their source videos.

    Args:
        results: each result with the path of its source video (usually its recorded ``video_path``).
        out_dir: a new folder (written atomically: it appears complete or not at all).

    Returns:
        The number of annotations (tracks) written.

    Raises:
        TrainingError: names clash (two videos of one name, one category id with two names), or a
            source video is missing, of another size, or shorter than its result.
        OutputError: ``out_dir`` exists or cannot be written.
    """
    names = [result.video_name for result, _ in results]
    if len(set(names)) != len(names):
        raise TrainingError("two results have the same video name; convert them separately")
    categories = _categories([result for result, _ in results])
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    with atomic_dir(out_dir) as staging:
        for video_id, (result, source) in enumerate(results, start=1):
            if not source.exists():
                raise TrainingError(
                    f"the source video {source} of {result.video_name} is not there; pass results whose videos exist"
                )
            file_names = _extract_frames(result, staging / FRAMES_FOLDER, source)
            videos.append(
                {
                    "id": video_id,
                    "name": result.video_name,
                    "file_names": file_names,
                    "height": result.height,
                    "width": result.width,
                    "length": result.num_frames,
                }
            )
            for track in result.tracks:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "video_id": video_id,
                        "category_id": track.category_id,
                        "segmentations": track.segmentations,
                        "areas": [None if rle is None else rle_area(rle) for rle in track.segmentations],
                        "bboxes": [None if rle is None else rle_bbox(rle) for rle in track.segmentations],
                        "iscrowd": 0,
                        "score": track.score,
                        "track_id": track.track_id,
                    }
                )
        document = {"videos": videos, "annotations": annotations, "categories": categories}
        (staging / ANNOTATIONS_FILE).write_text(json.dumps(document, separators=(",", ":")) + "\n")
    return len(annotations)

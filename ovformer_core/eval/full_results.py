"""Full ovformer result files (``NAME.json``, ``NAME.reviewed.json``) given where YouTube-VIS results are read.

``ovformer segment`` writes the full result; ``ovformer view`` writes its reviewed copy in the same
format. The evaluator reads YouTube-VIS results lists, so such a document is turned into one: an entry
per track, one segmentation per frame. Only results of every frame qualify (the evaluators index
segmentations by the dataset's frames); a result made with a stride or a start time is refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeGuard

from ovformer_core.errors import ResultsError
from ovformer_core.io.results import RESULT_FORMAT, RESULT_VERSION, VideoResult, ytvis_entries


def is_full_result(document: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a parsed JSON document is a full ovformer result (``{"format": "ovformer-results", ...}``)."""
    return isinstance(document, dict) and document.get("format") == RESULT_FORMAT


def ytvis_results_of(
    document: dict[str, Any], where: str = "results", gt_names: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """The YouTube-VIS results list of a full ovformer result document (all its videos).

    ``segment`` numbers videos by their place among its inputs, so the id of a result says little about
    which ground-truth video it is: a video whose name is not that of the ground-truth video of its
    id, but is the name of exactly one other, takes that video's id.

    Args:
        document: the parsed file (``is_full_result``).
        where: names the file in errors.
        gt_names: the ground truth's video id -> name (``GroundTruth.video_names``); None: ids as they are.

    Raises:
        ResultsError: another format version, a malformed video, or a video not segmented on every frame.
    """
    if document.get("version") != RESULT_VERSION:
        raise ResultsError(
            f"{where} has result format version {document.get('version')!r}, this ovformer reads version "
            f"{RESULT_VERSION}; write it again with `write_result_json()` or upgrade ovformer"
        )
    videos = document.get("videos")
    if not isinstance(videos, list):
        raise ResultsError(f"{where} has no 'videos' list; pass a file written by `write_result_json()`")
    uses = Counter((gt_names or {}).values())
    id_of_name = {name: video_id for video_id, name in (gt_names or {}).items() if uses[name] == 1}
    name_of_id: dict[int, str] = {}
    entries: list[dict[str, Any]] = []
    for i, data in enumerate(videos):
        video = VideoResult.from_dict(data, f"{where} video {i}")
        if video.frame_indices != list(range(video.num_frames)):
            raise ResultsError(
                f"{where}: video {video.video_name} was segmented on frames {video.frame_indices[:3]}..., not on "
                "every frame from the first; evaluate a result made without `stride`, start or end time"
            )
        if gt_names is not None and gt_names.get(video.video_id) != video.video_name:
            video = replace(video, video_id=id_of_name.get(video.video_name, video.video_id))
        other = name_of_id.setdefault(video.video_id, video.video_name)
        if other != video.video_name:
            raise ResultsError(
                f"{where}: videos {other!r} and {video.video_name!r} would both be scored as ground-truth video "
                f"{video.video_id} (matched by name, or by id where the name is not in the ground truth); "
                "give each its ground-truth video's name or id"
            )
        entries.extend(ytvis_entries(video, extra_keys=False))
    return entries

"""Tracks read back from annotation tools, and the YouTube-VIS style dataset they become.

Every annotation-tool reader (``cvat_video``, ``mots``, ``datumaro_format``) collects ``ImportedTrack``\\ s
and calls ``assemble_result``, so all three give a ``VideoResult`` with the same conventions:

- positions follow the video's frames (``frame_indices``: source frame numbers); a track is ``None``
  where it is absent;
- categories are the file's labels in the file's order, ids ``1..K`` (``merge_vocabulary`` renumbers
  them by name against a vocabulary);
- track ids are the file's; CVAT numbers tracks from 0 and ovformer from 1 (0 is the background of
  id masks), so a video whose file uses id 0 has all its ids shifted up by one.

``dataset_document`` turns results into the YouTube-VIS dataset that ``ovformer evaluate --gt`` and
``ovformer train`` read; ``results_from_dataset`` is its inverse (for exporting a dataset again).
Frame names are ``frame_NNNNNN`` (``FRAME_NAME``): the names CVAT gives the frames of a video task, so
items of MOTS and Datumaro exports match the task's frames.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ovformer_core.errors import AnnotationError
from ovformer_core.io.dataset_json import file_name_problem
from ovformer_core.io.results import Track, VideoResult
from ovformer_core.io.rle import Rle, decode_rle, encode_rle, frame_size_problem, is_valid_rle, rle_area, rle_bbox
from ovformer_core.io.video import NOMINAL_FPS
from ovformer_core.vocab import normalize_name

#: Item / image name of a video frame in CVAT (``frame_000042`` for source frame 42).
FRAME_NAME = "frame_{:06d}"
#: Default ``file_names`` of an imported dataset, relative to the training frame root (as in our COCO export).
DEFAULT_FRAME_PATTERN = "{video}/{frame:06d}.jpg"
#: The attribute that carries a track's confidence through the annotation tools.
SCORE_ATTRIBUTE = "score"

_FRAME_NUMBER = re.compile(r"(\d+)$")
_MAX_FRAME_DIGITS = 18
#: Largest frame an import decodes masks at (8K video is 33 M pixels): a file claiming more is refused
#: rather than allowed to allocate gigabytes per mask.
MAX_FRAME_PIXELS = 2**27
#: Most frames one imported video may declare (about 150 hours at 30 frames/s).
MAX_FRAMES = 2**24


def check_frame_size(width: int, height: int, where: str) -> None:
    """Refuse a frame size that is not positive or too large to decode masks at.

    Raises:
        AnnotationError: names the size.
    """
    if width < 1 or height < 1 or width * height > MAX_FRAME_PIXELS:
        raise AnnotationError(
            f"{where}: frame size {width}x{height} is not a video frame ovformer can hold "
            f"(positive, at most {MAX_FRAME_PIXELS} pixels); check the file"
        )
    problem = frame_size_problem(height, width)  # the bound every result is held to (FFmpeg's)
    if problem is not None:
        raise AnnotationError(f"{where}: frame size {problem}; check the file")


def check_video_name(name: str, where: str) -> None:
    """A video name becomes a folder of frame file names: one plain path component only.

    Raises:
        AnnotationError: empty, ``.``/``..``, or with a path separator or NUL.
    """
    if name in ("", ".", "..") or any(char in name for char in "/\\\0") or file_name_problem(f"{name}/f"):
        raise AnnotationError(
            f"{where}: video name {name!r} cannot name a folder of frames (it would reach outside the frame root); "
            "rename the task or the subset"
        )


def frame_number(name: str) -> int | None:
    """The source frame number at the end of a frame name (``frame_000042`` -> 42), or None."""
    found = _FRAME_NUMBER.search(name)
    # More digits than any frame count needs is no frame number (and int() refuses over 4,300 digits).
    return int(found[1]) if found and len(found[1]) <= _MAX_FRAME_DIGITS else None


@dataclass
class ImportedTrack:
    """One object as an annotation file describes it.

    Attributes:
        track_id: the file's id (>= 0).
        label: the file's label name.
        score: confidence (the ``score`` attribute; 1.0 for people's annotations).
        masks: position among the video's frames -> compressed RLE of a non-empty mask.
    """

    track_id: int
    label: str
    score: float = 1.0
    masks: dict[int, Rle] = field(default_factory=dict)


def parse_score(value: Any, where: str) -> float:
    """A ``score`` attribute as a float in [0, 1].

    Raises:
        AnnotationError: not a number in [0, 1].
    """
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = float("nan")
    if not 0.0 <= score <= 1.0:
        raise AnnotationError(f"{where}: score {value!r} is not a number in [0, 1]; fix or delete the attribute")
    return score


def assemble_result(
    video_name: str,
    video_path: str,
    width: int,
    height: int,
    frame_indices: Sequence[int],
    tracks: Sequence[ImportedTrack],
    labels: Sequence[str],
    where: str,
) -> VideoResult:
    """A ``VideoResult`` from the tracks of one video (see the module docstring for the conventions).

    Args:
        video_path: the source video as the file records it (CVAT's ``<source>``), or "".
        labels: the file's label names in its order (categories ``1..K``); every track's label is one.
        where: the file, for messages.

    Raises:
        AnnotationError: a label is not among ``labels``, a track id repeats, or the frames are not
            strictly increasing.
    """
    check_frame_size(width, height, where)
    check_video_name(video_name, where)
    if any(b <= a for a, b in zip(frame_indices, frame_indices[1:], strict=False)):
        raise AnnotationError(f"{where}: frame numbers are not strictly increasing; fix the frame names")
    if frame_indices and frame_indices[0] < 0:
        raise AnnotationError(f"{where}: frame number {frame_indices[0]} is negative; frames count from 0")
    label_index = {name: i for i, name in enumerate(labels)}
    shift = 1 if any(track.track_id == 0 for track in tracks) else 0
    seen: set[int] = set()
    built = []
    for track in sorted(tracks, key=lambda t: t.track_id):
        if track.label not in label_index:
            raise AnnotationError(
                f"{where}: track {track.track_id} has label {track.label!r}, which the file does not declare; "
                "add the label to the task or fix the track"
            )
        if track.track_id < 0:
            raise AnnotationError(f"{where}: track id {track.track_id} is negative; ids must be 0 or more")
        if track.track_id in seen:
            raise AnnotationError(f"{where}: track id {track.track_id} is used twice; give each track its own id")
        seen.add(track.track_id)
        if not track.masks:
            continue
        label = label_index[track.label]
        built.append(
            Track(
                track_id=track.track_id + shift,
                label=label,
                category_name=track.label,
                category_id=label + 1,
                score=track.score,
                segmentations=[track.masks.get(t) for t in range(len(frame_indices))],
            )
        )
    return VideoResult(
        video_name=video_name,
        video_path=video_path,
        video_id=1,
        width=width,
        height=height,
        num_frames=len(frame_indices),
        fps=NOMINAL_FPS,  # annotation files carry no frame rate
        frame_indices=[int(i) for i in frame_indices],
        tracks=built,
        categories=[{"id": i + 1, "name": name} for i, name in enumerate(labels)],
    )


def merge_vocabulary(
    results: Sequence[VideoResult],
    classes: Sequence[Sequence[str]],
    where: str,
    category_ids: Sequence[int] | None = None,
) -> list[VideoResult]:
    """Renumber categories by name against a vocabulary: class ``c`` becomes category ``category_ids[c]``
    (``c + 1`` without ids; a dataset JSON vocabulary gives its own, as ``segment --vocab`` does).

    A label matches a class when it equals any of the class's synonyms (case, spaces and underscores
    aside). The categories of the results become the whole vocabulary.

    Args:
        classes: per class, its name and synonyms (``ovformer_core.vocab.read_classes``).
        where: the imported file, for messages.

    Raises:
        AnnotationError: a label of a track matches no class.
    """
    index: dict[str, int] = {}
    for c, names in enumerate(classes):
        for name in names:
            index.setdefault(normalize_name(name).lower(), c)
    ids = list(category_ids) if category_ids is not None else list(range(1, len(classes) + 1))
    categories = [{"id": ids[c], "name": names[0]} for c, names in enumerate(classes)]
    merged = []
    for result in results:
        tracks = []
        for track in result.tracks:
            found = index.get(normalize_name(track.category_name).lower())
            if found is None:
                raise AnnotationError(
                    f"{where}: label {track.category_name!r} (track {track.track_id} of {result.video_name}) is not "
                    "in the vocabulary; add it to the vocabulary or rename it in the annotation tool"
                )
            tracks.append(
                Track(track.track_id, found, classes[found][0], ids[found], track.score, list(track.segmentations))
            )
        merged.append(dataclasses.replace(result, tracks=tracks, categories=categories))
    return merged


def number_videos(results: Sequence[VideoResult]) -> list[VideoResult]:
    """The results with video ids ``1..V`` in order, and categories made one list across them (by name).

    Category ids are kept where every name has one id and every id one name across the results (one
    export, or exports merged into one vocabulary: a dataset's own ids survive); otherwise the names
    are numbered 1..C in order of first appearance.
    """
    names: dict[str, int] = {}
    ids_of: dict[str, set[int]] = {}
    names_of: dict[int, set[str]] = {}
    for result in results:
        for category in sorted(result.categories, key=lambda c: c["id"]):
            name, category_id = str(category["name"]), int(category["id"])
            names.setdefault(name, len(names))
            ids_of.setdefault(name, set()).add(category_id)
            names_of.setdefault(category_id, set()).add(name)
    consistent = all(len(v) == 1 for v in ids_of.values()) and all(len(v) == 1 for v in names_of.values())
    id_of = {name: (min(ids_of[name]) if consistent else i + 1) for name, i in names.items()}
    categories = [{"id": id_of[name], "name": name} for name in names]
    numbered = []
    for v, result in enumerate(results):
        tracks = [
            Track(
                t.track_id,
                names[t.category_name],
                t.category_name,
                id_of[t.category_name],
                t.score,
                list(t.segmentations),
            )
            for t in result.tracks
        ]
        numbered.append(dataclasses.replace(result, video_id=v + 1, tracks=tracks, categories=categories))
    return numbered


def check_frame_pattern(pattern: str) -> None:
    """Accept only ``{video}`` and ``{frame}`` fields (with format specs such as ``{frame:05d}``).

    Raises:
        AnnotationError: another field, or a malformed pattern.
    """
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
        pattern.format(video="v", frame=0)
    except (ValueError, KeyError, IndexError) as err:
        raise AnnotationError(
            f"frame pattern {pattern!r} is malformed ({err}); use e.g. '{{video}}/{{frame:06d}}.jpg'"
        ) from None
    if any(name not in ("video", "frame") for name in fields):
        raise AnnotationError(
            f"frame pattern {pattern!r} may only use {{video}} and {{frame}}; e.g. '{{video}}/{{frame:06d}}.jpg'"
        )
    if "frame" not in fields:
        raise AnnotationError(f"frame pattern {pattern!r} has no {{frame}}, so every frame would be one file")
    problem = file_name_problem(pattern.format(video="v", frame=0))  # what evaluate and train would refuse
    if problem is not None:
        raise AnnotationError(
            f"frame pattern {pattern!r} makes file names evaluate and train refuse ({problem}); "
            "use e.g. '{video}/{frame:06d}.jpg'"
        )


def dataset_document(results: Sequence[VideoResult], frame_pattern: str = DEFAULT_FRAME_PATTERN) -> dict[str, Any]:
    """The YouTube-VIS style dataset of several videos (what ``evaluate --gt`` and ``train`` read).

    Videos get ids ``1..V``; ``file_names`` come from ``frame_pattern`` (fields ``video`` = video name,
    ``frame`` = source frame number), relative to the frame root given to training. Each track with a
    pixel is an annotation with one segmentation per frame (``null`` where absent or empty), plus
    ``track_id`` and ``score`` (extra keys the readers ignore; ``results_from_dataset`` reads them back,
    as it does the videos' ``name``, ``frame_indices`` and ``video_path``). Categories are the union,
    by name, over the videos.
    """
    check_frame_pattern(frame_pattern)
    names = [result.video_name for result in results]
    for name in names:
        check_video_name(name, "dataset")
    seen: set[str] = set()
    repeated = next((name for name in names if name in seen or seen.add(name)), None)  # type: ignore[func-returns-value]
    if repeated is not None:
        raise AnnotationError(
            f"two videos are named {repeated!r}, so their frames would share file names; import them separately"
        )
    numbered = number_videos(results)
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for result in numbered:
        videos.append(
            {
                "id": result.video_id,
                "name": result.video_name,
                "video_path": result.video_path,
                "width": result.width,
                "height": result.height,
                "length": result.num_frames,
                "frame_indices": list(result.frame_indices),
                "file_names": [frame_pattern.format(video=result.video_name, frame=i) for i in result.frame_indices],
            }
        )
        for track in sorted(result.tracks, key=lambda t: t.track_id):
            segmentations = [None if rle is None or rle_area(rle) == 0 else rle for rle in track.segmentations]
            if all(rle is None for rle in segmentations):
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": result.video_id,
                    "category_id": track.category_id,
                    "track_id": track.track_id,
                    "score": track.score,
                    "iscrowd": 0,
                    "height": result.height,
                    "width": result.width,
                    "length": 1,
                    "segmentations": segmentations,
                    "areas": [None if rle is None else rle_area(rle) for rle in segmentations],
                    "bboxes": [None if rle is None else rle_bbox(rle) for rle in segmentations],
                }
            )
    categories = numbered[0].categories if numbered else []
    return {
        "info": {"description": "imported by ovformer from an annotation-tool export"},
        "videos": videos,
        "categories": categories,
        "annotations": annotations,
    }


def _as_rle(segmentation: Any, height: int, width: int, where: str) -> Rle | None:
    """A dataset segmentation (compressed or uncompressed RLE, polygons, or null) as a compressed RLE."""
    if not segmentation:
        return None
    if is_valid_rle(segmentation) and list(segmentation["size"]) == [height, width]:
        return dict(segmentation)
    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            raise ValueError("not a polygon list or RLE of the video's size")
    except (ValueError, TypeError, IndexError) as err:
        raise AnnotationError(f"{where}: unusable segmentation ({err}); fix the dataset") from None
    mask = mask_utils.decode(rle).astype(bool)
    return encode_rle(mask) if mask.any() else None


def results_from_dataset(dataset: dict[str, Any], where: str = "dataset") -> list[VideoResult]:
    """The videos of a YouTube-VIS style dataset as results (inverse of ``dataset_document``).

    ``track_id`` and ``score`` are read where present (else the annotation id and 1.0); frame numbers
    from ``frame_indices`` where present (else ``0..length-1``).

    Raises:
        AnnotationError: a missing key or a segmentation that cannot be read.
    """
    try:
        categories = sorted(dataset["categories"], key=lambda c: c["id"])
        position = {int(c["id"]): i for i, c in enumerate(categories)}
        results = []
        for video in dataset["videos"]:
            height, width = int(video["height"]), int(video["width"])
            length = int(video.get("length") or len(video["file_names"]))
            frame_indices = [int(i) for i in video.get("frame_indices", range(length))]
            tracks = []
            for ann in dataset["annotations"]:
                if ann["video_id"] != video["id"]:
                    continue
                c = position[int(ann["category_id"])]
                segs = [_as_rle(s, height, width, f"{where} annotation {ann['id']}") for s in ann["segmentations"]]
                tracks.append(
                    Track(
                        int(ann.get("track_id", ann["id"])),
                        c,
                        str(categories[c]["name"]),
                        int(categories[c]["id"]),
                        float(ann.get("score", 1.0)),
                        segs,
                    )
                )
            results.append(
                VideoResult(
                    video_name=str(video.get("name", f"video{video['id']}")),
                    video_path=str(video.get("video_path", "")),
                    video_id=int(video["id"]),
                    width=width,
                    height=height,
                    num_frames=length,
                    fps=NOMINAL_FPS,  # annotation files carry no frame rate
                    frame_indices=frame_indices,
                    tracks=tracks,
                    categories=[{"id": int(c["id"]), "name": str(c["name"])} for c in categories],
                )
            )
    except (KeyError, TypeError, ValueError) as err:
        raise AnnotationError(f"{where} is not a YouTube-VIS style dataset ({err}); pass a dataset JSON") from None
    return results


def present_masks(track: Track) -> dict[int, np.ndarray]:
    """Position -> bool ``[H, W]`` mask, for the frames where ``track`` has at least one pixel."""
    masks = {}
    for t, rle in enumerate(track.segmentations):
        if rle is not None and rle_area(rle) > 0:
            masks[t] = decode_rle(rle)
    return masks


def used_labels(result: VideoResult) -> list[dict[str, Any]]:
    """The categories of the tracks that have a pixel somewhere, by category id: the labels an export lists."""
    used: dict[int, str] = {}
    for track in result.tracks:
        if any(rle is not None and rle_area(rle) > 0 for rle in track.segmentations):
            used.setdefault(track.category_id, track.category_name)
    return [{"id": cid, "name": used[cid]} for cid in sorted(used)]


def export_labels(results: Sequence[VideoResult]) -> list[str]:
    """The label names an export of several videos lists: those of tracks with a pixel, by category id, once."""
    names: dict[str, None] = {}
    for result in results:
        for category in used_labels(result):
            names.setdefault(str(category["name"]))
    return list(names)

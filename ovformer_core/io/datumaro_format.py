"""Datumaro's own JSON format (``dm_format_version`` 1.0): every mask kept as a COCO RLE, overlaps included.

Layout written (``NAME.datumaro.zip``; Datumaro's ``datumaro`` format, CVAT's "Datumaro 1.0")::

    annotations/<video>.json     one subset per video:
      {"dm_format_version": "1.0", "media_type": 2, "infos": {},
       "categories": {"label": {"labels": [{"name", "parent": "", "attributes": ["score"]}],
                                "label_groups": [], "attributes": ["occluded", "outside", "keyframe", "track_id"]}},
       "items": [{"id": "frame_000000", "attr": {"frame": 0},
                  "image": {"path": "frame_000000.jpg", "size": [H, W]},
                  "annotations": [{"id", "type": "mask", "label_id", "group": 0, "z_order": 0,
                                   "rle": {"counts", "size": [H, W]},
                                   "attributes": {"track_id", "score", "keyframe": true,
                                                  "outside": false, "occluded": false}}]}]}

Every frame is an item (empty ones too, so the frame count survives); a track is the masks that share
an ``attributes.track_id``. All subsets list the same labels (those of the tracks written).

Reading takes masks (compressed or uncompressed RLE) and polygons; an object without ``track_id`` is
a track of its own. Frame numbers come from ``attr.frame``, else from the item id's digits; an item id
with folders (``video1/frame_000003``) puts the frame in the video named by its folder.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pycocotools import mask as mask_utils

from ovformer_core.errors import AnnotationError
from ovformer_core.io.annotation_archive import AnnotationExport, open_export, write_zip
from ovformer_core.io.json_input import brief, is_int, parse_json_text
from ovformer_core.io.results import VideoResult
from ovformer_core.io.rle import Rle, encode_rle, is_valid_rle, rle_area
from ovformer_core.io.track_dataset import (
    FRAME_NAME,
    SCORE_ATTRIBUTE,
    ImportedTrack,
    assemble_result,
    check_frame_size,
    export_labels,
    frame_number,
    parse_score,
)

DATUMARO_FORMAT_VERSION = "1.0"
#: Datumaro's ``MediaType.IMAGE``.
MEDIA_TYPE_IMAGE = 2
ANNOTATIONS_DIR = "annotations"
#: Per-shape attributes CVAT's tracks carry (declared so CVAT and Datumaro keep them).
_TRACK_ATTRIBUTES = ["occluded", "outside", "keyframe", "track_id"]


def datumaro_document(result: VideoResult, labels: Sequence[str]) -> dict[str, Any]:
    """The Datumaro JSON of one video (one subset), with ``labels`` as its label list."""
    label_id = {name: k for k, name in enumerate(labels)}
    items = []
    next_id = 1
    for t, frame_index in enumerate(result.frame_indices):
        annotations = []
        for track in sorted(result.tracks, key=lambda tr: tr.track_id):
            rle = track.segmentations[t]
            if rle is None or rle_area(rle) == 0:
                continue
            annotations.append(
                {
                    "id": next_id,
                    "type": "mask",
                    "attributes": {
                        "occluded": False,
                        "outside": False,
                        "keyframe": True,
                        "track_id": track.track_id,
                        SCORE_ATTRIBUTE: float(track.score),
                    },
                    "group": 0,
                    "label_id": label_id[track.category_name],
                    "rle": {"counts": rle["counts"], "size": [result.height, result.width]},
                    "z_order": 0,
                }
            )
            next_id += 1
        name = FRAME_NAME.format(frame_index)
        items.append(
            {
                "id": name,
                "annotations": annotations,
                "attr": {"frame": int(frame_index)},
                "image": {"path": f"{name}.jpg", "size": [result.height, result.width]},
            }
        )
    return {
        "dm_format_version": DATUMARO_FORMAT_VERSION,
        "media_type": MEDIA_TYPE_IMAGE,
        "infos": {},
        "categories": {
            "label": {
                "labels": [{"name": name, "parent": "", "attributes": [SCORE_ATTRIBUTE]} for name in labels],
                "label_groups": [],
                "attributes": _TRACK_ATTRIBUTES,
            }
        },
        "items": items,
    }


def write_datumaro(path: str | os.PathLike[str], results: VideoResult | Sequence[VideoResult]) -> None:
    """Write ``NAME.datumaro.zip``: ``annotations/<video>.json`` per video (see the module docstring); atomic."""
    videos = [results] if isinstance(results, VideoResult) else list(results)
    labels = export_labels(videos)
    members = {}
    for result in videos:
        text = json.dumps(datumaro_document(result, labels), separators=(",", ":"), ensure_ascii=False)
        members[f"{ANNOTATIONS_DIR}/{result.video_name}.json"] = (text + "\n").encode("utf-8")
    write_zip(path, members)


def _mask_rle(ann: dict[str, Any], height: int, width: int, where: str) -> Rle:
    rle = ann.get("rle")
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise AnnotationError(f"{where}: a mask needs 'rle' with 'counts' and 'size'; export it again")
    if _size_pair(rle["size"], "mask size", where) != (height, width):
        raise AnnotationError(
            f"{where}: mask size {rle['size']} is not the {height}x{width} frame (a shape outside the image); "
            "export it again"
        )
    counts = rle["counts"]
    if isinstance(counts, str):
        if not is_valid_rle({"size": [height, width], "counts": counts}):
            raise AnnotationError(f"{where}: mask rle does not cover the {height}x{width} frame; export it again")
        return {"size": [height, width], "counts": counts}
    if isinstance(counts, list) and all(isinstance(c, int) and c >= 0 for c in counts):
        if sum(counts) != height * width:
            raise AnnotationError(f"{where}: mask rle does not cover the {height}x{width} frame; export it again")
        mask = mask_utils.decode(mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width))
        return encode_rle(mask.astype(bool))
    raise AnnotationError(f"{where}: mask rle counts must be a string or a list of run lengths")


def _polygon_rle(ann: dict[str, Any], height: int, width: int, where: str) -> Rle:
    points = ann.get("points")
    if (
        not isinstance(points, list)
        or len(points) < 6
        or len(points) % 2
        or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in points)
    ):
        raise AnnotationError(f"{where}: a polygon needs at least three x, y points")
    xs, ys = points[0::2], points[1::2]
    if min(xs) < 0 or min(ys) < 0 or max(xs) > width or max(ys) > height:
        raise AnnotationError(
            f"{where}: polygon reaches outside the {width}x{height} frame; fix the shape in the annotation tool"
        )
    rle = mask_utils.merge(mask_utils.frPyObjects([[float(p) for p in points]], height, width))
    return encode_rle(mask_utils.decode(rle).astype(bool))


def _size_pair(value: Any, what: str, where: str) -> tuple[int, int]:
    """``[height, width]`` of positive integers, or a one-line error naming ``what``."""
    if not (isinstance(value, list) and len(value) == 2 and all(is_int(v) and v > 0 for v in value)):
        raise AnnotationError(f"{where}: {what} {brief(value)} is not [height, width] in whole pixels; export it again")
    return int(value[0]), int(value[1])


def _check_items(items: list[Any], where: str) -> None:
    """Every item an object whose ``annotations`` (if any) is a list of objects."""
    for item in items:
        if not isinstance(item, dict):
            raise AnnotationError(f"{where}: item {brief(item)} is not an object; pass a Datumaro export")
        annotations = item.get("annotations", [])
        if not isinstance(annotations, list) or not all(isinstance(ann, dict) for ann in annotations):
            raise AnnotationError(
                f"{where}: item {brief(item.get('id'))} has 'annotations' that are not a list of objects; "
                "pass a Datumaro export"
            )


def _frame_size(items: list[dict[str, Any]], where: str) -> tuple[int, int]:
    sizes = set()
    for item in items:
        image = item.get("image")
        if isinstance(image, dict) and "size" in image:
            sizes.add(_size_pair(image["size"], "image size", where))
        for ann in item.get("annotations", []):
            if isinstance(ann.get("rle"), dict) and "size" in ann["rle"]:
                sizes.add(_size_pair(ann["rle"]["size"], "mask size", where))
            if len(sizes) > 1:
                break
    if not sizes:
        raise AnnotationError(f"{where}: no item gives the frame size (image size or a mask); export with image info")
    for height, width in sizes:
        check_frame_size(width, height, where)
    if len(sizes) > 1:
        found = sorted(sizes)
        raise AnnotationError(
            f"{where}: frames or masks differ in size ({found[0][1]}x{found[0][0]} and {found[1][1]}x{found[1][0]}); "
            "a video has one frame size"
        )
    return next(iter(sizes))


def _read_items(name: str, items: list[dict[str, Any]], labels: list[str], where: str) -> VideoResult:
    _check_items(items, where)
    height, width = _frame_size(items, where)
    frames: list[tuple[int, dict[str, Any]]] = []
    for item in items:
        attr = item.get("attr")
        recorded = attr.get("frame") if isinstance(attr, dict) else None
        frame = recorded if is_int(recorded) else frame_number(str(item.get("id", "")))
        if frame is None:
            raise AnnotationError(
                f"{where}: item {item.get('id')!r} has no frame number (attr.frame or digits in its id)"
            )
        frames.append((frame, item))
    frames.sort(key=lambda pair: pair[0])
    for a, b in zip(frames, frames[1:], strict=False):
        if a[0] == b[0]:
            raise AnnotationError(f"{where}: items {a[1].get('id')!r} and {b[1].get('id')!r} are both frame {a[0]}")
    tracks: dict[int, ImportedTrack] = {}
    untracked: list[tuple[int, str, float, Rle]] = []
    for position, (_, item) in enumerate(frames):
        for ann in item.get("annotations", []):
            ann_where = f"{where} item {item.get('id')!r} annotation {ann.get('id')}"
            kind = ann.get("type")
            if kind in ("label", "caption"):
                continue  # a tag of the frame, not an object
            attributes = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
            if attributes.get("outside") is True:
                continue
            if kind == "mask":
                rle = _mask_rle(ann, height, width, ann_where)
            elif kind == "polygon":
                rle = _polygon_rle(ann, height, width, ann_where)
            else:
                raise AnnotationError(f"{ann_where}: a {kind} carries no mask; draw the object as a mask or polygon")
            label_id = ann.get("label_id")
            if not isinstance(label_id, int) or not 0 <= label_id < len(labels):
                raise AnnotationError(
                    f"{ann_where}: label {label_id!r} is not one of the {len(labels)} labels the file declares; "
                    "fix the label"
                )
            label = labels[label_id]
            score = parse_score(attributes[SCORE_ATTRIBUTE], ann_where) if SCORE_ATTRIBUTE in attributes else 1.0
            if rle_area(rle) == 0:
                continue
            track_id = attributes.get("track_id")
            if track_id is None:
                untracked.append((position, label, score, rle))
                continue
            if not isinstance(track_id, int) or isinstance(track_id, bool):
                raise AnnotationError(f"{ann_where}: track_id {track_id!r} is not an integer")
            track = tracks.get(track_id)
            if track is None:
                track = tracks[track_id] = ImportedTrack(track_id=track_id, label=label, score=score)
            elif track.label != label:
                raise AnnotationError(
                    f"{ann_where}: track {track_id} is {track.label!r} elsewhere but {label!r} here; "
                    "a track keeps one label"
                )
            if position in track.masks:
                raise AnnotationError(f"{ann_where}: track {track_id} has two masks in this frame; keep one")
            track.masks[position] = rle
    next_id = max(tracks, default=0) + 1
    for position, label, score, rle in untracked:
        tracks[next_id] = ImportedTrack(track_id=next_id, label=label, score=score, masks={position: rle})
        next_id += 1
    return assemble_result(name, "", width, height, [f for f, _ in frames], list(tracks.values()), labels, where)


def _parse_document(export: AnnotationExport, member: str) -> tuple[list[str], list[dict[str, Any]]]:
    where = export.where(member)
    # The project's strict reader: NaN, repeated keys, runaway nesting and huge integers are one-line errors.
    document = parse_json_text(export.read(member), where, AnnotationError)
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise AnnotationError(f"{where} has no 'items' list; pass a Datumaro export")
    try:
        labels = [str(label["name"]) for label in document["categories"]["label"]["labels"]]
    except (KeyError, TypeError):
        raise AnnotationError(f"{where} has no categories.label.labels list; pass a Datumaro export") from None
    items = document["items"]
    if not all(isinstance(item, dict) and isinstance(item.get("annotations", []), list) for item in items):
        raise AnnotationError(f"{where}: an item is not an object with an 'annotations' list")
    return labels, items


def read_datumaro(path: str | os.PathLike[str]) -> list[VideoResult]:
    """Read a Datumaro export (zip, folder, or one annotations JSON): one result per subset / id folder.

    Raises:
        AnnotationError: no annotations JSON, or a bad entry (one line naming it).
    """
    with open_export(path) as export:
        members = [
            name
            for name in export.names
            if name.lower().endswith(".json")
            and (name.split("/")[-2:-1] == [ANNOTATIONS_DIR] or len(export.names) == 1)
        ]
        if not members:
            raise AnnotationError(f"{export.path} has no annotations/*.json; pass a Datumaro export")
        results = []
        for member in members:
            labels, items = _parse_document(export, member)
            subset = member.rsplit("/", 1)[-1].removesuffix(".json")
            base = export.stem if subset == "default" or len(export.names) == 1 else subset
            by_folder: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for item in items:
                folder, _, _ = str(item.get("id", "")).rpartition("/")
                by_folder[folder].append(item)
            for folder, folder_items in sorted(by_folder.items()):
                name = folder.rsplit("/", 1)[-1] if folder else base
                results.append(_read_items(name, folder_items, labels, export.where(member)))
        return results

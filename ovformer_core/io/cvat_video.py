"""CVAT for video 1.1: one ``<track>`` per object, one ``<mask>`` shape per frame, in a zip CVAT imports.

Layout written (``NAME.cvat-video.zip`` holding ``annotations.xml``)::

    <annotations>
      <version>1.1</version>
      <meta><task>
        <name>, <size> (frames), <mode>interpolation</mode>, <start_frame>, <stop_frame> (inclusive),
        <frame_filter> (``step=K`` for a stride), <labels> (the labels of the tracks, each declaring a
        text attribute ``score``), <original_size> (<width>, <height>)
      </task><source>video file name</source></meta>
      <track id="3" label="dog" source="auto">
        <mask frame="0" keyframe="1" outside="0" occluded="0" rle="..." left="" top="" width="" height=""
              z_order="0"><attribute name="score">0.87</attribute></mask>
        <mask frame="5" keyframe="1" outside="1" .../>      the track leaves the view at frame 5
      </track>
    </annotations>

Frame numbers are source frame numbers. A mask is its tight bounding box (``left``, ``top``, ``width``,
``height``) and ``rle``: run lengths over that box in row-major order, starting with a run of
background (possibly 0), as CVAT writes them. A shape holds until the track's next shape; ``outside="1"``
hides the track from that frame on. Frames where a track has no pixel are absent (an empty mask cannot
be drawn in CVAT), so a track with no pixel at all is not written.

Reading accepts what CVAT exports in this format: masks and polygons (rasterised with pycocotools) in
tracks, interpolated (``keyframe="0"``) shapes, and ``outside`` shapes. CVAT's export writes a shape
for every frame a track is visible (propagated and interpolated ones included), and so does
Datumaro's, so a frame without a shape is a frame without the object: nothing is propagated here.
Boxes, points and the like carry no mask and are refused, as are labels the file does not declare
and shapes outside the frame.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from ovformer_core.errors import AnnotationError, OutputError
from ovformer_core.io.annotation_archive import open_export, write_zip
from ovformer_core.io.results import VideoResult
from ovformer_core.io.rle import encode_rle
from ovformer_core.io.track_dataset import (
    MAX_FRAMES,
    SCORE_ATTRIBUTE,
    ImportedTrack,
    assemble_result,
    check_frame_size,
    parse_score,
    present_masks,
    used_labels,
)

#: The annotation file inside the zip (the name CVAT uses).
ANNOTATIONS_XML = "annotations.xml"
#: Shape elements CVAT writes inside a track; only masks and polygons carry a segmentation.
_SHAPE_TAGS = ("mask", "polygon", "box", "polyline", "points", "ellipse", "cuboid", "skeleton")


def mask_to_cvat(mask: np.ndarray) -> dict[str, str]:
    """The ``rle``, ``left``, ``top``, ``width``, ``height`` attributes of a non-empty bool ``[H, W]`` mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    flat = mask[top : bottom + 1, left : right + 1].ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return {
        "rle": ", ".join(str(int(r)) for r in runs),
        "left": str(left),
        "top": str(top),
        "width": str(right - left + 1),
        "height": str(bottom - top + 1),
    }


def cvat_to_mask(attrib: dict[str, str], frame_height: int, frame_width: int, where: str) -> np.ndarray:
    """Decode a ``<mask>`` element's attributes to a bool ``[H, W]`` frame mask.

    Raises:
        AnnotationError: missing or non-integer attributes, a box outside the frame, or run lengths
            that do not cover the box exactly.
    """
    try:
        runs = [int(part) for part in attrib["rle"].split(",")]
        left, top = int(attrib["left"]), int(attrib["top"])
        width, height = int(attrib["width"]), int(attrib["height"])
    except (KeyError, ValueError) as err:
        raise AnnotationError(
            f"{where}: a mask needs integer rle, left, top, width and height ({err}); export it again from CVAT"
        ) from None
    if width < 1 or height < 1 or left < 0 or top < 0 or left + width > frame_width or top + height > frame_height:
        raise AnnotationError(
            f"{where}: mask box left={left} top={top} {width}x{height} lies outside the "
            f"{frame_width}x{frame_height} frame; fix the shape in CVAT"
        )
    if any(r < 0 for r in runs) or sum(runs) != width * height:
        raise AnnotationError(
            f"{where}: mask rle covers {sum(runs)} pixels, not its {width}x{height} box; export it again from CVAT"
        )
    values = np.arange(len(runs)) % 2 == 1
    crop = np.repeat(values, runs).reshape(height, width)
    mask = np.zeros((frame_height, frame_width), dtype=bool)
    mask[top : top + height, left : left + width] = crop
    return mask


def _polygon_mask(points: str, frame_height: int, frame_width: int, where: str) -> np.ndarray:
    try:
        coords = [float(value) for pair in points.split(";") for value in pair.split(",")]
    except ValueError:
        raise AnnotationError(f"{where}: polygon points {points[:40]!r} are not 'x,y;x,y;...'") from None
    xs, ys = coords[0::2], coords[1::2]
    if len(coords) % 2 or len(xs) < 3:
        raise AnnotationError(f"{where}: a polygon needs at least three x,y points")
    if not all(math.isfinite(v) for v in coords):  # NaN passes every comparison; pycocotools would crash on it
        raise AnnotationError(f"{where}: polygon points {points[:40]!r} are not all finite numbers; fix the shape")
    if min(xs) < 0 or min(ys) < 0 or max(xs) > frame_width or max(ys) > frame_height:
        raise AnnotationError(
            f"{where}: polygon reaches ({max(xs):g}, {max(ys):g}) / ({min(xs):g}, {min(ys):g}), outside the "
            f"{frame_width}x{frame_height} frame; fix the shape in CVAT"
        )
    rle = mask_utils.merge(mask_utils.frPyObjects([coords], frame_height, frame_width))
    return mask_utils.decode(rle).astype(bool)


def _frame_step(frame_indices: Sequence[int], video_name: str) -> int:
    steps = {b - a for a, b in zip(frame_indices, frame_indices[1:], strict=False)}
    if len(steps) > 1:
        raise OutputError(
            f"{video_name}: frames {list(frame_indices[:4])}... are not evenly spaced, and a CVAT task has one "
            "frame step; segment with a constant `stride`"
        )
    return steps.pop() if steps else 1


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = text
    return child


def cvat_video_xml(result: VideoResult) -> bytes:
    """The CVAT for video 1.1 XML of one result (see the module docstring); deterministic."""
    step = _frame_step(result.frame_indices, result.video_name)
    labels = used_labels(result)
    root = ET.Element("annotations")
    _text(root, "version", "1.1")
    meta = ET.SubElement(root, "meta")
    task = ET.SubElement(meta, "task")
    _text(task, "name", result.video_name)
    _text(task, "size", str(result.num_frames))
    _text(task, "mode", "interpolation")
    _text(task, "overlap", "0")
    _text(task, "start_frame", str(result.frame_indices[0]))
    _text(task, "stop_frame", str(result.frame_indices[-1]))
    _text(task, "frame_filter", f"step={step}" if step > 1 else "")
    labels_element = ET.SubElement(task, "labels")
    for category in labels:
        label = ET.SubElement(labels_element, "label")
        _text(label, "name", category["name"])
        _text(label, "type", "any")
        attributes = ET.SubElement(label, "attributes")
        attribute = ET.SubElement(attributes, "attribute")
        _text(attribute, "name", SCORE_ATTRIBUTE)
        _text(attribute, "mutable", "False")
        _text(attribute, "input_type", "text")
        _text(attribute, "default_value", "1")
        _text(attribute, "values", "")
    size = ET.SubElement(task, "original_size")
    _text(size, "width", str(result.width))
    _text(size, "height", str(result.height))
    _text(meta, "source", Path(result.video_path).name if result.video_path else result.video_name)
    for track in sorted(result.tracks, key=lambda t: t.track_id):
        masks = present_masks(track)
        if not masks:
            continue
        element = ET.SubElement(
            root, "track", {"id": str(track.track_id), "label": track.category_name, "source": "auto"}
        )
        previous: dict[str, str] | None = None
        for t in range(result.num_frames):
            if t in masks:
                geometry = mask_to_cvat(masks[t])
                outside = "0"
            elif previous is not None:
                geometry, outside = previous, "1"
            else:
                continue
            shape = ET.SubElement(
                element,
                "mask",
                {
                    "frame": str(result.frame_indices[t]),
                    "keyframe": "1",
                    "outside": outside,
                    "occluded": "0",
                    **geometry,
                    "z_order": "0",
                },
            )
            _text(shape, "attribute", repr(float(track.score))).set("name", SCORE_ATTRIBUTE)
            previous = None if outside == "1" else geometry
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_cvat_video(path: str | os.PathLike[str], result: VideoResult) -> None:
    """Write ``NAME.cvat-video.zip`` with ``annotations.xml`` (CVAT: Upload annotations, CVAT 1.1); atomic."""
    write_zip(path, {ANNOTATIONS_XML: cvat_video_xml(result)})


def _int_text(element: ET.Element | None, tag: str, where: str, default: int | None = None) -> int:
    text = element.findtext(tag) if element is not None else None
    if text is None or not text.strip():
        if default is not None:
            return default
        raise AnnotationError(f"{where}: <meta> has no <{tag}>; export the task again as 'CVAT for video 1.1'")
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(f"{where}: <{tag}> is {text!r}, not an integer") from None


def _task_frames(task: ET.Element, where: str) -> list[int]:
    start = _int_text(task, "start_frame", where, default=0)
    step = 1
    frame_filter = (task.findtext("frame_filter") or "").strip()
    if frame_filter:
        if not frame_filter.startswith("step="):
            raise AnnotationError(f"{where}: frame filter {frame_filter!r} is not 'step=N'")
        try:
            step = int(frame_filter.removeprefix("step="))
        except ValueError:
            raise AnnotationError(f"{where}: frame filter {frame_filter!r} is not 'step=N'") from None
    size = _int_text(task, "size", where)
    if not 1 <= size <= MAX_FRAMES or step < 1:
        raise AnnotationError(f"{where}: the task has {size} frames with step {step}; export it again")
    return [start + k * step for k in range(size)]


def _shape_mask(shape: ET.Element, height: int, width: int, where: str) -> np.ndarray:
    if shape.tag == "mask":
        return cvat_to_mask(shape.attrib, height, width, where)
    if shape.tag == "polygon":
        return _polygon_mask(shape.get("points", ""), height, width, where)
    raise AnnotationError(f"{where}: a <{shape.tag}> carries no mask; draw the object as a mask or polygon in CVAT")


def _read_track(track: ET.Element, frames: list[int], height: int, width: int, where: str) -> ImportedTrack:
    try:
        track_id = int(track.get("id", ""))
    except ValueError:
        raise AnnotationError(f"{where}: a <track> has id {track.get('id')!r}, not an integer") from None
    where = f"{where} track {track_id}"
    position = {frame: t for t, frame in enumerate(frames)}
    shapes: dict[int, ET.Element] = {}
    for shape in track:
        if shape.tag not in _SHAPE_TAGS:
            continue
        try:
            frame = int(shape.get("frame", ""))
        except ValueError:
            raise AnnotationError(f"{where}: a shape has frame {shape.get('frame')!r}, not an integer") from None
        if frame not in position:
            raise AnnotationError(
                f"{where}: a shape at frame {frame} is not one of the task's frames "
                f"({frames[0]}..{frames[-1]}); export the whole task again"
            )
        if frame in shapes:
            raise AnnotationError(f"{where}: two shapes at frame {frame}; keep one shape per frame")
        shapes[frame] = shape
    imported = ImportedTrack(track_id=track_id, label=track.get("label", ""))
    score_text = next(
        (a.text for s in shapes.values() for a in s.iter("attribute") if a.get("name") == SCORE_ATTRIBUTE), None
    )
    if score_text is not None:
        imported.score = parse_score(score_text, where)
    for frame, shape in shapes.items():
        if shape.get("outside") == "1":
            continue
        mask = _shape_mask(shape, height, width, f"{where} frame {frame}")
        if mask.any():
            imported.masks[position[frame]] = encode_rle(mask)
    return imported


def parse_cvat_video(data: bytes, where: str, default_name: str) -> VideoResult:
    """Read CVAT for video 1.1 XML.

    Args:
        data: the XML.
        where: the file, for messages.
        default_name: the video's name when the task has none.

    Raises:
        AnnotationError: not this format, or an entry that does not fit (one line naming it).
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise AnnotationError(f"{where} is not well-formed XML ({err}); export it again from CVAT") from None
    if root.tag != "annotations":
        raise AnnotationError(f"{where}: the root element is <{root.tag}>, not <annotations>; is it a CVAT XML?")
    meta = root.find("meta")
    if meta is not None and meta.find("project") is not None:
        raise AnnotationError(f"{where} is a CVAT project export; export each task as 'CVAT for video 1.1'")
    task = meta.find("task") if meta is not None else None
    if task is None:
        raise AnnotationError(f"{where} has no <meta><task>; export the task as 'CVAT for video 1.1'")
    if root.find("image") is not None:
        raise AnnotationError(
            f"{where} is 'CVAT for images' (it has <image> elements); export the task as 'CVAT for video 1.1'"
        )
    size = task.find("original_size")
    width = _int_text(size, "width", where)
    height = _int_text(size, "height", where)
    check_frame_size(width, height, where)
    frames = _task_frames(task, where)
    labels_element = task.find("labels")
    labels = [
        (label.findtext("name") or "").strip()
        for label in (labels_element.findall("label") if labels_element is not None else [])
    ]
    tracks = [_read_track(track, frames, height, width, where) for track in root.findall("track")]
    name = (task.findtext("name") or "").strip() or default_name
    source = (meta.findtext("source") or "").strip() if meta is not None else ""
    return assemble_result(name, source, width, height, frames, tracks, labels, where)


def read_cvat_video(path: str | os.PathLike[str]) -> VideoResult:
    """Read a CVAT for video 1.1 export: its zip, the unpacked folder, or the XML itself.

    Raises:
        AnnotationError: no (or several) annotation XML, a damaged zip, or a bad entry.
    """
    with open_export(path) as export:
        candidates = [name for name in export.names if name.lower().endswith(".xml")]
        if ANNOTATIONS_XML in candidates:
            candidates = [ANNOTATIONS_XML]
        if len(candidates) != 1:
            found = "no XML file" if not candidates else f"{len(candidates)} XML files"
            raise AnnotationError(
                f"{export.path} holds {found}; pass a 'CVAT for video 1.1' export (with annotations.xml)"
            )
        name = candidates[0]
        return parse_cvat_video(export.read(name), export.where(name), export.stem)

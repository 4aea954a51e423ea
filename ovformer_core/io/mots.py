"""MOTS PNG: one 16-bit PNG per frame whose pixels say which object is there, in a zip CVAT imports.

Layout written (``NAME.mots.zip``; the one Datumaro's ``mots`` format and CVAT's "MOTS PNG 1.0" read)::

    <video>/instances/frame_000000.png   uint16, one per frame (all zero where nothing is seen)
    <video>/instances/labels.txt         label names, one per line

A pixel is ``0`` for background, else ``1000 * class + instance``: ``class`` is the 1-based line of
the label in ``labels.txt`` and ``instance`` the track id (1..999). Only the labels of the tracks
written are listed, so at most 64 fit in 16 bits. A pixel holds one object: where masks overlap, the
track with the higher score wins (as in ``ovformer_core.io.png_masks``), so MOTS cannot keep overlaps.

Reading also accepts the KITTI MOTS layout (``instances/<sequence>/<frame>.png``; without
``labels.txt``, class 1 is ``car``, 2 ``pedestrian`` and 10 an ignore region, which is skipped) and
CVAT's ``default/`` subset (the video is then named after the archive). Each subset folder is a video.
An instance id used under two classes is a collision (one id, two objects) and is refused.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ovformer_core.errors import AnnotationError, OutputError
from ovformer_core.io.annotation_archive import AnnotationExport, open_export, write_zip
from ovformer_core.io.png_masks import encode_png, id_mask
from ovformer_core.io.results import VideoResult
from ovformer_core.io.rle import encode_rle
from ovformer_core.io.track_dataset import (
    FRAME_NAME,
    ImportedTrack,
    assemble_result,
    check_frame_size,
    export_labels,
    frame_number,
)

#: Pixel value = class * MAX_INSTANCES + instance (the MOTS / KITTI MOTS convention).
MAX_INSTANCES = 1000
#: Most labels a 16-bit PNG can hold with instance ids up to 999 (64 * 1000 + 999 < 65536).
MAX_LABELS = 64
#: KITTI MOTS classes when an export has no labels.txt, and its ignore-region class.
KITTI_LABELS = ("car", "pedestrian")
IGNORE_CLASS = 10
LABELS_FILE = "labels.txt"

_INSTANCE_PNG = re.compile(r"^(?:(?P<subset>.+)/)?instances/(?:(?P<sequence>.+)/)?(?P<frame>[^/]+)\.png$", re.I)


def mots_frames(result: VideoResult, labels: Sequence[str]) -> list[np.ndarray]:
    """The uint16 ``[H, W]`` MOTS image of every frame of one result.

    Args:
        labels: the label names of ``labels.txt`` (class ``k`` is ``labels[k - 1]``); every track with a
            pixel has one of them.

    Raises:
        OutputError: a track id outside 1..999 or more than 64 labels.
    """
    if len(labels) > MAX_LABELS:
        raise OutputError(
            f"{result.video_name}: {len(labels)} labels do not fit MOTS PNG (at most {MAX_LABELS}); "
            "export to cvat-video or datumaro instead"
        )
    class_of = {name: k + 1 for k, name in enumerate(labels)}
    lookup = np.zeros(MAX_INSTANCES, dtype=np.uint16)
    for track in result.tracks:
        if track.category_name not in class_of:
            continue  # no pixel anywhere
        if track.track_id >= MAX_INSTANCES:
            raise OutputError(
                f"{result.video_name}: track id {track.track_id} does not fit MOTS PNG (ids 1..{MAX_INSTANCES - 1}); "
                "export to cvat-video or datumaro instead"
            )
        lookup[track.track_id] = class_of[track.category_name] * MAX_INSTANCES + track.track_id
    return [lookup[id_mask(result, t)] for t in range(result.num_frames)]


def write_mots(path: str | os.PathLike[str], results: VideoResult | Sequence[VideoResult]) -> None:
    """Write ``NAME.mots.zip`` (see the module docstring), one subset folder per video; atomic.

    The videos share one label list (the labels of all their tracks), as Datumaro wants of subsets.
    """
    videos = [results] if isinstance(results, VideoResult) else list(results)
    labels = export_labels(videos)
    members: dict[str, bytes] = {}
    for result in videos:
        images = mots_frames(result, labels)
        folder = f"{result.video_name}/instances"
        for frame_index, image in zip(result.frame_indices, images, strict=True):
            members[f"{folder}/{FRAME_NAME.format(frame_index)}.png"] = encode_png(image)
        members[f"{folder}/{LABELS_FILE}"] = ("\n".join(labels) + "\n").encode("utf-8")
    write_zip(path, members)


def decode_instance_png(data: bytes, where: str) -> np.ndarray:
    """A grayscale PNG (8 or 16 bit) as uint16 ``[H, W]``.

    Raises:
        AnnotationError: not a readable grayscale PNG (truncated, colour, ...).
    """
    try:
        # The frame size is checked here, from the header, so PIL's own large-image warning is not needed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            if image.format != "PNG" or image.mode not in ("L", "I", "I;16", "I;16B", "I;16L"):
                raise AnnotationError(
                    f"{where} is a {image.format} {image.mode} image, not a grayscale PNG of instance ids; "
                    "export MOTS PNG again"
                )
            width, height = image.size  # from the header: a tiny PNG may declare a huge frame
            check_frame_size(width, height, where)
            pixels = np.asarray(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise AnnotationError(f"{where} is not a readable PNG ({err}); it may be truncated, export it again") from None
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > np.iinfo(np.uint16).max:
        raise AnnotationError(f"{where} has pixel values outside 0..65535; it is not a MOTS instance PNG")
    return pixels.astype(np.uint16)


def _labels(export: AnnotationExport, subset: str | None) -> tuple[list[str], bool]:
    """The labels of a subset, and whether class 10 is KITTI's ignore region."""
    name = f"{subset}/instances/{LABELS_FILE}" if subset else f"instances/{LABELS_FILE}"
    if name not in export.names:
        return list(KITTI_LABELS), True
    try:
        text = export.read(name).decode("utf-8-sig")  # a BOM (Windows editors) is not part of the first label
    except UnicodeDecodeError:
        raise AnnotationError(f"{export.where(name)} is not UTF-8 text; list one label per line") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    return labels, len(labels) < IGNORE_CLASS


def _read_video(
    export: AnnotationExport, name: str, members: list[tuple[int, str]], labels: list[str], kitti_ignore: bool
) -> VideoResult:
    members.sort()
    frames = [frame for frame, _ in members]
    for a, b in zip(members, members[1:], strict=False):
        if a[0] == b[0]:
            raise AnnotationError(f"{export.where(b[1])} and {a[1]} are both frame {a[0]}; keep one PNG per frame")
    tracks: dict[int, ImportedTrack] = {}
    size: tuple[int, int] | None = None
    for position, (_, member) in enumerate(members):
        where = export.where(member)
        ids = decode_instance_png(export.read(member), where)
        if size is None:
            size = ids.shape
        elif ids.shape != size:
            raise AnnotationError(
                f"{where} is {ids.shape[1]}x{ids.shape[0]}, the other frames {size[1]}x{size[0]}; "
                "every frame of a video has one size"
            )
        for value in np.unique(ids):
            if value == 0:
                continue
            class_id, instance = divmod(int(value), MAX_INSTANCES)
            if class_id == IGNORE_CLASS and kitti_ignore:
                continue
            if not 1 <= class_id <= len(labels):
                raise AnnotationError(
                    f"{where}: pixel value {value} has class {class_id}, but there are {len(labels)} labels "
                    f"({', '.join(labels)}); values are class*1000+instance with a class from labels.txt"
                )
            label = labels[class_id - 1]
            track = tracks.get(instance)
            if track is None:
                track = tracks[instance] = ImportedTrack(track_id=instance, label=label)
            elif track.label != label:
                raise AnnotationError(
                    f"{where}: instance id {instance} is both {track.label!r} and {label!r} (id collision); "
                    "give each object its own instance id"
                )
            track.masks[position] = encode_rle(ids == value)
    assert size is not None
    return assemble_result(
        name, "", size[1], size[0], frames, list(tracks.values()), labels, export.where(members[0][1])
    )


def read_mots(path: str | os.PathLike[str]) -> list[VideoResult]:
    """Read a MOTS PNG export (zip or folder): one result per subset / sequence folder.

    Raises:
        AnnotationError: no instance PNGs, a frame name without a number, or a bad entry.
    """
    with open_export(path) as export:
        groups: dict[tuple[str | None, str | None], list[tuple[int, str]]] = defaultdict(list)
        for member in export.names:
            found = _INSTANCE_PNG.match(member)
            if found is None:
                continue
            frame = frame_number(found["frame"])
            if frame is None:
                raise AnnotationError(
                    f"{export.where(member)}: the file name has no frame number; name frames like frame_000042.png"
                )
            groups[(found["subset"], found["sequence"])].append((frame, member))
        if not groups:
            raise AnnotationError(f"{export.path} has no instances/*.png; pass a 'MOTS PNG' export")
        results = []
        for (subset, sequence), members in sorted(
            groups.items(), key=lambda item: (item[0][0] or "", item[0][1] or "")
        ):
            labels, kitti_ignore = _labels(export, subset)
            base = subset.rsplit("/", 1)[-1] if subset else None
            if base in (None, "default"):
                base = export.stem
            name = f"{base}_{sequence}" if sequence else base
            results.append(_read_video(export, name, members, labels, kitti_ignore))
        return results

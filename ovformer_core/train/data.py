"""Training annotations read into one form, and training clips drawn from them.

Two annotation formats are read:

* video json (YouTube-VIS, LV-VIS, OVIS): ``videos`` (``id``, ``file_names``, ``height``, ``width``,
  ``length``), ``annotations`` (``video_id``, ``category_id``, ``segmentations`` with one entry per
  frame, null where the object is absent, ``iscrowd``) and ``categories`` (``id``, ``name``);
* image json (LVIS, COCO): ``images`` (``id``, ``file_name`` or ``coco_url``, ``height``, ``width``),
  ``annotations`` (``image_id``, ``category_id``, ``segmentation``, ``iscrowd``) and ``categories``.

Both become ``TrainVideo`` records; a still image is a 1-frame video. Segmentations are COCO polygons
(a list of flat ``[x0, y0, x1, y1, ...]`` lists) or RLE dicts (``counts`` a compressed string or a list
of run lengths). Their structure is checked when the file is read, so a bad annotation stops a run at
once rather than hours in; pixels are decoded only when a clip is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pycocotools import mask as mask_utils

from ovformer_core.errors import TrainingError
from ovformer_core.io.dataset_json import check_dataset, file_name_problem, is_id
from ovformer_core.io.json_input import brief, read_json
from ovformer_core.io.results import RESULT_FORMAT
from ovformer_core.io.rle import decode_rle, first_bad_rle, polygon_problem, rle_problem, segmentation_rle_problem

#: One frame's mask: COCO polygons, or an RLE (compressed ``str`` counts or uncompressed ``list`` counts).
Segmentation = list[list[float]] | dict[str, Any]

#: A polygon needs at least three (x, y) points (official ytvis.py / lvis_v1.py drop shorter ones).
_MIN_POLYGON_COORDS = 6

#: ``coco_url`` looks like ``http://images.cocodataset.org/train2017/000000391895.jpg``; detectron2's
#: LVIS loader keeps its split folder and file name.
_COCO_URL_PARTS = 2


@dataclass(frozen=True)
class TrainInstance:
    """One annotated object of a training video.

    Attributes:
        category_idx: contiguous category index ``0..C-1`` (position in ``TrainDataset.category_ids``).
        segmentations: one entry per frame of the video; ``None`` where the object is absent.
    """

    category_idx: int
    segmentations: tuple[Segmentation | None, ...]


@dataclass(frozen=True)
class TrainVideo:
    """One training video (or still image, as a 1-frame video).

    Attributes:
        video_id: the annotation file's video or image id.
        file_names: full path of every frame (the image root joined).
        height: frame height in pixels, as the annotation file gives it.
        width: frame width in pixels.
        instances: the non-crowd objects with a mask in at least one frame.
    """

    video_id: int
    file_names: tuple[str, ...]
    height: int
    width: int
    instances: tuple[TrainInstance, ...]


@dataclass(frozen=True)
class TrainDataset:
    """A whole training annotation file.

    Attributes:
        videos: the training items, sorted by id.
        category_ids: the dataset's category id of each contiguous index, ascending.
        category_names: the category name of each contiguous index.
        image_counts: per contiguous index, how many items have at least one (non-crowd) instance of it.
        is_image: read from an image json (LVIS/COCO) rather than a video json.
    """

    videos: tuple[TrainVideo, ...]
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    image_counts: tuple[int, ...]
    is_image: bool


@dataclass
class Clip:
    """The frames and ground truth of one training sample.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        masks: ``[N, T, H, W]`` bool; all-false in frames where an instance is absent.
        labels: ``[N]`` int64 contiguous category indices.
        file_names: source file of each frame (the key of the CLIP embedding cache).
    """

    frames: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    file_names: tuple[str, ...]


def _field(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise TrainingError(f"{where} is not a JSON object; fix the annotation file")
    if key not in record:
        raise TrainingError(f"{where} has no '{key}'; fix the annotation file")
    return record[key]


def _check_segmentation(seg: Any, height: int, width: int, where: str) -> Segmentation | None:
    """One frame's segmentation, checked; ``None`` when absent.

    Like the official loaders, a falsy entry means "absent", and polygons with fewer than three points
    are dropped (a frame left with none is absent).

    Raises:
        TrainingError: not a polygon list or RLE, or an RLE of another size than the frame.
    """
    if not seg:
        return None
    if isinstance(seg, list):
        problem = polygon_problem(seg, height, width)
        if problem is not None:
            raise TrainingError(f"{where}: the segmentation {problem}; fix the annotation")
        polygons = [poly for poly in seg if len(poly) % 2 == 0 and len(poly) >= _MIN_POLYGON_COORDS]
        return polygons or None
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise TrainingError(f"{where}: segmentation is neither a polygon list nor an RLE with 'size' and 'counts'")
    problem = segmentation_rle_problem(seg, height, width)
    if problem is not None:
        raise TrainingError(f"{where}: the segmentation {problem}; fix the annotation")
    return seg  # compressed counts are checked with all the others at once (``_check_compressed_masks``)


def _read_categories(data: dict[str, Any]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Category ids in ascending order and their names (the file is already checked)."""
    by_id = {int(cat["id"]): str(cat["name"]) for cat in data["categories"]}
    ids = tuple(sorted(by_id))
    return ids, tuple(by_id[i] for i in ids)


def _category_idx(ann: dict[str, Any], idx_of: dict[int, int], where: str) -> int:
    cat_id = _field(ann, "category_id", where)
    if not is_id(cat_id) or cat_id not in idx_of:
        raise TrainingError(f"{where} has category id {brief(cat_id)}, which 'categories' does not list; fix the file")
    return idx_of[cat_id]


def _records_by_id(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Records by id (ids already checked unique by ``check_dataset``)."""
    return {int(record["id"]): record for record in records}


def _annotations(data: dict[str, Any]) -> list[dict[str, Any]]:
    return data.get("annotations", [])


def _group_by_owner(
    annotations: list[dict[str, Any]], owner_key: str, owners: dict[int, dict[str, Any]], where: str
) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """Non-crowd annotations per owning video/image id, each with its position in the file."""
    grouped: dict[int, list[tuple[int, dict[str, Any]]]] = {owner: [] for owner in owners}
    for position, ann in enumerate(annotations):
        ann_where = f"{where}: annotation {ann.get('id', position) if isinstance(ann, dict) else position}"
        owner = _field(ann, owner_key, ann_where)
        if not is_id(owner) or owner not in grouped:
            raise TrainingError(
                f"{ann_where} has {owner_key} {brief(owner)}, which the file does not list; fix the file"
            )
        # The official loaders skip crowd regions: they are not objects to find.
        if ann.get("iscrowd", 0):
            continue
        grouped[owner].append((position, ann))
    return grouped


def _read_videos(data: dict[str, Any], root: Path, idx_of: dict[int, int], where: str) -> list[TrainVideo]:
    videos = _records_by_id(data["videos"])
    grouped = _group_by_owner(_annotations(data), "video_id", videos, where)
    result = []
    for video_id in sorted(videos):
        record = videos[video_id]
        file_names = record["file_names"]
        height, width = int(record["height"]), int(record["width"])
        instances = []
        for position, ann in grouped[video_id]:
            ann_where = f"{where}: annotation {ann.get('id', position)}"
            category_idx = _category_idx(ann, idx_of, ann_where)
            segs = _field(ann, "segmentations", ann_where)
            if not isinstance(segs, list) or len(segs) != len(file_names):
                count = len(segs) if isinstance(segs, list) else "no list of"
                raise TrainingError(
                    f"{ann_where} has {count} segmentations but video {video_id} has {len(file_names)} frames; "
                    "give one entry per frame (null where absent)"
                )
            checked = tuple(
                _check_segmentation(seg, height, width, f"{ann_where} frame {f}") for f, seg in enumerate(segs)
            )
            if any(seg is not None for seg in checked):
                instances.append(TrainInstance(category_idx=category_idx, segmentations=checked))
        result.append(
            TrainVideo(
                video_id=video_id,
                file_names=tuple(str(root / name) for name in file_names),
                height=height,
                width=width,
                instances=tuple(instances),
            )
        )
    return result


def _image_file_name(record: dict[str, Any], where: str) -> str:
    name = record.get("file_name")
    if name is None:
        url = record.get("coco_url")
        if not (isinstance(url, str) and url.count("/") >= _COCO_URL_PARTS):
            raise TrainingError(f"{where} has neither 'file_name' nor 'coco_url'; add the image's file name")
        name = "/".join(url.rstrip("/").split("/")[-_COCO_URL_PARTS:])
    problem = file_name_problem(name)
    if problem is not None:
        raise TrainingError(f"{where}: file name {problem}")
    return str(name)


def _read_images(data: dict[str, Any], root: Path, idx_of: dict[int, int], where: str) -> list[TrainVideo]:
    images = _records_by_id(data["images"])
    grouped = _group_by_owner(_annotations(data), "image_id", images, where)
    result = []
    for image_id in sorted(images):
        record = images[image_id]
        image_where = f"{where}: image {image_id}"
        file_name = _image_file_name(record, image_where)
        height, width = int(record["height"]), int(record["width"])
        instances = []
        for position, ann in grouped[image_id]:
            ann_where = f"{where}: annotation {ann.get('id', position)}"
            category_idx = _category_idx(ann, idx_of, ann_where)
            seg = _check_segmentation(_field(ann, "segmentation", ann_where), height, width, ann_where)
            if seg is not None:
                instances.append(TrainInstance(category_idx=category_idx, segmentations=(seg,)))
        result.append(
            TrainVideo(
                video_id=image_id,
                file_names=(str(root / file_name),),
                height=height,
                width=width,
                instances=tuple(instances),
            )
        )
    return result


def _check_compressed_masks(videos: Sequence[TrainVideo], where: str) -> None:
    """Every compressed RLE of every instance, checked in one pass (``first_bad_rle``).

    Raises:
        TrainingError: naming the item and frame of the first bad mask.
    """
    counts: list[str] = []
    pixels: list[int] = []
    owners: list[tuple[int, int]] = []
    for video in videos:
        for instance in video.instances:
            for frame, seg in enumerate(instance.segmentations):
                if isinstance(seg, dict) and isinstance(seg["counts"], str):
                    counts.append(seg["counts"])
                    pixels.append(video.height * video.width)
                    owners.append((video.video_id, frame))
    bad = first_bad_rle(counts, np.array(pixels, dtype=np.int64))
    if bad is not None:
        video_id, frame = owners[bad.index]
        raise TrainingError(f"{where}: item {video_id} frame {frame} has a bad RLE: {bad.reason}; fix the annotation")


def _check_files_exist(videos: Iterable[TrainVideo], json_path: Path, root: Path) -> None:
    for video in videos:
        for name in video.file_names:
            if not os.path.isfile(name):
                raise TrainingError(
                    f"frame {name} of item {video.video_id} in {json_path} does not exist; "
                    f"check data.train_root ({root})"
                )


def read_train_dataset(
    json_path: str | os.PathLike[str], root: str | os.PathLike[str], filter_empty: bool | None = None
) -> TrainDataset:
    """Read a training annotation file (video json or image json) and check it.

    Args:
        json_path: the annotation file; a ``videos`` key marks a video json, an ``images`` key an image json.
        root: folder the file's frame / image names are relative to.
        filter_empty: drop items without any non-crowd instance. ``None`` = the official choice: True for
            images (LVIS ``FILTER_EMPTY_ANNOTATIONS``), False for videos (LV-VIS configs).

    Returns:
        The dataset, items sorted by id, crowd annotations and annotations without any mask left out.

    Raises:
        TrainingError: missing or malformed file, unknown category or owner id, a segmentation list whose
            length differs from the video's, a malformed segmentation, or a missing frame file.
    """
    json_path, root = Path(json_path), Path(root)
    where = str(json_path)
    data = read_json(json_path, "training annotation file", TrainingError)
    if isinstance(data, dict) and data.get("format") == RESULT_FORMAT:
        raise TrainingError(
            f"{where} is an ovformer result, not training annotations; make them with "
            f"`ovformer dataset from-results {json_path} --out DIR` and train on DIR/annotations.json with "
            "data.train_root DIR/frames"
        )
    section = check_dataset(
        data,
        where,
        TrainingError,
        need_file_names=True,
        need_sizes=True,
        need_category_names=True,
        need_categories=True,
        need_annotations=False,
        allow_images=True,
    )
    category_ids, category_names = _read_categories(data)
    idx_of = {cat_id: idx for idx, cat_id in enumerate(category_ids)}
    is_image = section == "images"
    videos = (_read_images if is_image else _read_videos)(data, root, idx_of, where)
    _check_compressed_masks(videos, where)
    if filter_empty is None:
        filter_empty = is_image
    if filter_empty:
        videos = [video for video in videos if video.instances]
    _check_files_exist(videos, json_path, root)
    counts = np.zeros(len(category_ids), dtype=np.int64)
    for video in videos:
        counts[list({inst.category_idx for inst in video.instances})] += 1
    return TrainDataset(
        videos=tuple(videos),
        category_ids=category_ids,
        category_names=category_names,
        image_counts=tuple(int(c) for c in counts),
        is_image=is_image,
    )


def sample_clip_frames(length: int, num_frames: int, frame_range: int, rng: np.random.Generator) -> list[int]:
    """Frame indices of one training clip, as the official YTVISDatasetMapper draws them.

    A reference frame is drawn uniformly from ``[0, length)``; the other ``num_frames - 1`` are drawn
    uniformly *with replacement* from ``[max(0, ref - frame_range), min(length, ref + frame_range + 1))``
    without the reference itself. When that window holds no other frame (``length == 1`` or
    ``frame_range == 0``) the reference is repeated.

    Args:
        length: number of frames of the video (>= 1).
        num_frames: frames per clip, T (>= 1).
        frame_range: how far from the reference the other frames may lie (>= 0).
        rng: the only source of randomness.

    Returns:
        T frame indices, ascending (repeats possible).
    """
    if length < 1 or num_frames < 1 or frame_range < 0:
        raise ValueError(
            f"need length >= 1, num_frames >= 1, frame_range >= 0; got {length}, {num_frames}, {frame_range}"
        )
    ref = int(rng.integers(length))
    if num_frames == 1:
        return [ref]
    start, end = max(0, ref - frame_range), min(length, ref + frame_range + 1)
    others = np.concatenate([np.arange(start, ref), np.arange(ref + 1, end)])
    if others.size == 0:
        return [ref] * num_frames
    picked = rng.choice(others, size=num_frames - 1, replace=True)
    return sorted([ref, *(int(i) for i in picked)])


def _read_frame(path: str, height: int, width: int) -> np.ndarray:
    """One frame as uint8 RGB ``[H, W, 3]``, turned upright by its EXIF orientation (as detectron2 reads)."""
    try:
        with Image.open(path) as image:
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise TrainingError(f"cannot read training frame {path} ({err}); replace or remove it") from None
    if rgb.size != (width, height):
        raise TrainingError(
            f"training frame {path} is {rgb.size[0]}x{rgb.size[1]} but its annotation says {width}x{height}; "
            "fix the annotation file"
        )
    return np.asarray(rgb, dtype=np.uint8)


def decode_segmentation(seg: Segmentation, height: int, width: int) -> np.ndarray:
    """Pixels of one frame's segmentation.

    Args:
        seg: COCO polygons or an RLE (compressed or uncompressed) of size ``[height, width]``.
        height: frame height H.
        width: frame width W.

    Returns:
        ``[H, W]`` bool mask.

    Raises:
        TrainingError: a compressed RLE whose counts are malformed or do not cover H x W pixels.
    """
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return mask_utils.decode(rle).astype(bool)
    if isinstance(seg["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, height, width)).astype(bool)
    # pycocotools' C decoder trusts compressed counts; a malformed string would yield garbage pixels.
    problem = rle_problem(seg, height, width)
    if problem is not None:
        raise TrainingError(f"a compressed RLE mask of a {height}x{width} frame {problem}; fix the annotation")
    return decode_rle(seg)


def read_video_clip(video: TrainVideo, frame_idx: Sequence[int]) -> Clip:
    """Read the frames and masks of one clip.

    Instances keep their order in the video; those without a pixel in any selected frame are dropped,
    like the official mapper, which keeps only instances annotated in the sampled frames.

    Args:
        video: the training video.
        frame_idx: T frame indices (repeats allowed), e.g. from ``sample_clip_frames``.

    Returns:
        The clip at the video's size H x W: frames ``[T, H, W, 3]``, masks ``[N, T, H, W]``, labels ``[N]``.

    Raises:
        TrainingError: an unreadable frame, a frame whose size differs from the annotation's, or a
            malformed RLE.
    """
    num_video_frames = len(video.file_names)
    if not frame_idx or any(not 0 <= f < num_video_frames for f in frame_idx):
        raise ValueError(f"frame indices {list(frame_idx)} must be non-empty and within [0, {num_video_frames})")
    height, width = video.height, video.width
    unique = sorted(set(frame_idx))
    images = {f: _read_frame(video.file_names[f], height, width) for f in unique}
    frames = np.stack([images[f] for f in frame_idx])
    masks = np.zeros((len(video.instances), len(frame_idx), height, width), dtype=bool)
    for n, instance in enumerate(video.instances):
        for t, f in enumerate(frame_idx):
            seg = instance.segmentations[f]
            if seg is None:
                continue
            try:
                masks[n, t] = decode_segmentation(seg, height, width)
            except TrainingError as err:
                raise TrainingError(f"video {video.video_id} frame {f}: {err}") from None
    keep = masks.any(axis=(1, 2, 3))
    labels = np.array([inst.category_idx for inst in video.instances], dtype=np.int64)
    return Clip(
        frames=frames,
        masks=masks[keep],
        labels=labels[keep],
        file_names=tuple(video.file_names[f] for f in frame_idx),
    )

"""A synthetic YouTube-VIS-style dataset of coloured shapes moving over a grey background.

Three categories that differ in colour and shape; every video has one or two objects moving in
straight lines. Frames are PNG (lossless), masks polygons or RLE, so the reader paths are exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from tests.clip_fixtures import save_safetensors, tiny_clip

CATEGORIES = ({"id": 3, "name": "red square"}, {"id": 5, "name": "green disk"}, {"id": 8, "name": "blue bar"})
COLOURS = {3: (220, 40, 40), 5: (40, 200, 60), 8: (40, 70, 230)}


def _shape_mask(category_id: int, height: int, width: int, cy: float, cx: float, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    if category_id == 3:
        return (abs(yy - cy) <= size / 2) & (abs(xx - cx) <= size / 2)
    if category_id == 5:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 2) ** 2
    return (abs(yy - cy) <= size / 5) & (abs(xx - cx) <= size * 0.8)


def write_shapes_dataset(
    root: Path,
    num_videos: int = 4,
    num_frames: int = 6,
    height: int = 64,
    width: int = 96,
    seed: int = 0,
) -> Path:
    """Write frames under ``root/frames`` and the annotation file ``root/train.json``; returns the json path."""
    rng = np.random.default_rng(seed)
    videos, annotations = [], []
    for video_idx in range(num_videos):
        video_id = video_idx + 1
        folder = root / "frames" / f"v{video_id}"
        folder.mkdir(parents=True, exist_ok=True)
        num_objects = 1 + video_idx % 2
        category_ids = [CATEGORIES[(video_idx + k) % len(CATEGORIES)]["id"] for k in range(num_objects)]
        starts = [(rng.uniform(16, height - 16), rng.uniform(16, width - 16)) for _ in category_ids]
        speeds = [(rng.uniform(-2, 2), rng.uniform(-3, 3)) for _ in category_ids]
        sizes = [int(rng.integers(16, 24)) for _ in category_ids]
        masks = np.zeros((num_objects, num_frames, height, width), dtype=bool)
        file_names = []
        for t in range(num_frames):
            frame = np.full((height, width, 3), 128, dtype=np.uint8)
            frame += rng.integers(0, 12, size=frame.shape, dtype=np.uint8)
            for k, category_id in enumerate(category_ids):
                cy = np.clip(starts[k][0] + speeds[k][0] * t, 10, height - 10)
                cx = np.clip(starts[k][1] + speeds[k][1] * t, 10, width - 10)
                shape = _shape_mask(category_id, height, width, cy, cx, sizes[k])
                # Later objects occlude earlier ones, as in real videos.
                masks[:k, t] &= ~shape
                masks[k, t] = shape
                frame[shape] = COLOURS[category_id]
            name = f"v{video_id}/{t:05d}.png"
            Image.fromarray(frame).save(root / "frames" / name)
            file_names.append(name)
        videos.append(
            {"id": video_id, "file_names": file_names, "height": height, "width": width, "length": num_frames}
        )
        for k, category_id in enumerate(category_ids):
            segmentations, areas = [], []
            for t in range(num_frames):
                rle = mask_utils.encode(np.asfortranarray(masks[k, t].astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                segmentations.append(rle if masks[k, t].any() else None)
                areas.append(int(masks[k, t].sum()) or None)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": video_id,
                    "category_id": category_id,
                    "iscrowd": 0,
                    "segmentations": segmentations,
                    "areas": areas,
                    "bboxes": [None] * num_frames,
                    "height": height,
                    "width": width,
                    "length": 1,
                }
            )
    path = root / "train.json"
    path.write_text(json.dumps({"videos": videos, "annotations": annotations, "categories": list(CATEGORIES)}))
    return path


def write_shapes_images(root: Path, num_images: int = 4, seed: int = 1) -> Path:
    """The first frame of each synthetic video as an LVIS/COCO-style image dataset (``root/images.json``).

    The first image's first object is stored as a polygon (its bounding rectangle traced), the
    others as RLE, so both image-json segmentation forms are read.
    """
    video_json = write_shapes_dataset(root, num_videos=num_images, num_frames=1, seed=seed)
    videos = json.loads(video_json.read_text())
    images = [
        {"id": v["id"], "file_name": v["file_names"][0], "height": v["height"], "width": v["width"]}
        for v in videos["videos"]
    ]
    annotations = []
    for ann in videos["annotations"]:
        segmentation = ann["segmentations"][0]
        if segmentation is None:
            continue
        if not annotations:
            ys, xs = np.nonzero(mask_utils.decode(segmentation))
            x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
            segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": ann["video_id"],
                "category_id": ann["category_id"],
                "segmentation": segmentation,
                "iscrowd": 0,
                "area": ann["areas"][0],
            }
        )
    path = root / "images.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(CATEGORIES)}))
    return path


def write_shapes_task(root: Path) -> dict[str, Path]:
    """The shapes dataset and a tiny CLIP under ``root``: ``{"json", "root" (frames), "clip"}``."""
    return {
        "json": write_shapes_dataset(root),
        "root": root / "frames",
        "clip": save_safetensors(tiny_clip(), root / "clip.safetensors"),
    }

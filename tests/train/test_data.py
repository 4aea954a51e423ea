"""Training annotations are read and checked like the official loaders; clips are drawn and decoded exactly."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ovformer_core.errors import TrainingError
from ovformer_core.train.data import (
    TrainInstance,
    TrainVideo,
    decode_segmentation,
    read_train_dataset,
    read_video_clip,
    sample_clip_frames,
)

HEIGHT, WIDTH = 6, 8


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE built by hand: column-major runs, starting with background."""
    flat = mask.flatten(order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def _compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _polygon(y0: int, y1: int, x0: int, x1: int) -> list[list[float]]:
    """A rectangle polygon that COCO rasterises to exactly the pixels ``[y0:y1, x0:x1]``."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _frame_image(index: int) -> np.ndarray:
    """A frame whose pixels tell it apart from the others."""
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def _write_frames(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_frame_image(i)).save(path)


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def _video_json(num_frames: int = 3) -> dict[str, Any]:
    names = [f"vid/{i:05d}.png" for i in range(num_frames)]
    return {
        "videos": [
            {"id": 7, "file_names": names, "height": HEIGHT, "width": WIDTH, "length": num_frames},
        ],
        "annotations": [],
        # Non-contiguous, unsorted ids: the contiguous index follows the sorted ids.
        "categories": [{"id": 30, "name": "cat"}, {"id": 4, "name": "dog"}, {"id": 12, "name": "bird"}],
    }


def _video_ann(ann_id: int, category_id: int, segmentations: list[Any], iscrowd: int = 0) -> dict[str, Any]:
    return {
        "id": ann_id,
        "video_id": 7,
        "category_id": category_id,
        "segmentations": segmentations,
        "iscrowd": iscrowd,
    }


def _write_video_dataset(tmp_path: Path, annotations: list[dict[str, Any]], num_frames: int = 3) -> Path:
    data = _video_json(num_frames)
    data["annotations"] = annotations
    _write_frames(tmp_path, data["videos"][0]["file_names"])
    return _write_json(tmp_path / "train.json", data)


def test_polygon_and_both_rle_forms_decode_to_the_expected_pixels(tmp_path: Path) -> None:
    poly_mask, compressed_mask, uncompressed_mask = _rect(1, 4, 2, 6), _rect(0, 2, 5, 8), _rect(3, 6, 0, 3)
    uncompressed_mask[0, 0] = True  # starts with foreground: the leading background run is 0
    segs = [_polygon(1, 4, 2, 6), _compressed_rle(compressed_mask), _uncompressed_rle(uncompressed_mask)]
    json_path = _write_video_dataset(tmp_path, [_video_ann(1, 12, segs)])

    dataset = read_train_dataset(json_path, tmp_path)
    clip = read_video_clip(dataset.videos[0], [0, 1, 2])

    assert clip.masks.shape == (1, 3, HEIGHT, WIDTH) and clip.masks.dtype == bool
    np.testing.assert_array_equal(clip.masks[0, 0], poly_mask)
    np.testing.assert_array_equal(clip.masks[0, 1], compressed_mask)
    np.testing.assert_array_equal(clip.masks[0, 2], uncompressed_mask)
    assert clip.labels.tolist() == [1]  # category 12 is the second of the sorted ids (4, 12, 30)
    assert clip.labels.dtype == np.int64


def test_categories_map_to_contiguous_indices_in_id_order(tmp_path: Path) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(1, 30, [_polygon(0, 2, 0, 2), None, None])])
    dataset = read_train_dataset(json_path, tmp_path)
    assert dataset.category_ids == (4, 12, 30)
    assert dataset.category_names == ("dog", "bird", "cat")
    assert dataset.videos[0].instances[0].category_idx == 2
    assert dataset.image_counts == (0, 0, 1)
    assert dataset.is_image is False


def test_video_fields_and_absent_frames_are_kept(tmp_path: Path) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(1, 4, [None, _polygon(0, 2, 0, 2), []])])
    video = read_train_dataset(json_path, tmp_path).videos[0]
    assert video.video_id == 7
    assert (video.height, video.width) == (HEIGHT, WIDTH)
    assert video.file_names == tuple(str(tmp_path / f"vid/{i:05d}.png") for i in range(3))
    # null and empty lists both mean "absent" in that frame.
    assert video.instances[0].segmentations[0] is None
    assert video.instances[0].segmentations[2] is None
    assert video.instances[0].segmentations[1] == _polygon(0, 2, 0, 2)


def test_crowd_and_degenerate_annotations_are_dropped(tmp_path: Path) -> None:
    crowd = _video_ann(1, 4, [_uncompressed_rle(_rect(0, 3, 0, 3)), None, None], iscrowd=1)
    too_short = _video_ann(2, 12, [[[0, 0, 3, 0]], None, None])  # two points: not a polygon
    kept = _video_ann(3, 30, [None, None, [[0, 0, 3, 0], [0, 0, 4, 0, 4, 4]]])  # the short polygon goes
    json_path = _write_video_dataset(tmp_path, [crowd, too_short, kept])
    dataset = read_train_dataset(json_path, tmp_path)
    (instance,) = dataset.videos[0].instances
    assert instance.category_idx == 2
    assert instance.segmentations[2] == [[0, 0, 4, 0, 4, 4]]
    assert dataset.image_counts == (0, 0, 1)


def test_video_json_keeps_empty_videos_unless_asked(tmp_path: Path) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(1, 4, [None, None, None])])
    assert len(read_train_dataset(json_path, tmp_path).videos) == 1
    assert read_train_dataset(json_path, tmp_path, filter_empty=True).videos == ()


def _image_json(tmp_path: Path) -> dict[str, Any]:
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(_frame_image(0)).save(tmp_path / name)
    square = _polygon(0, 2, 0, 2)
    return {
        "images": [
            {"id": 3, "file_name": "c.png", "height": HEIGHT, "width": WIDTH},
            {"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH},
            {"id": 2, "file_name": "b.png", "height": HEIGHT, "width": WIDTH},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 5, "segmentation": square, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 9, "segmentation": square, "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 5, "segmentation": square},
            # image 2 holds only a crowd region: it counts as empty
            {
                "id": 13,
                "image_id": 2,
                "category_id": 20,
                "segmentation": _uncompressed_rle(_rect(0, 6, 0, 8)),
                "iscrowd": 1,
            },
        ],
        "categories": [{"id": 20, "name": "c"}, {"id": 9, "name": "b"}, {"id": 5, "name": "a"}],
    }


def test_image_json_filters_empty_images_by_default(tmp_path: Path) -> None:
    json_path = _write_json(tmp_path / "lvis.json", _image_json(tmp_path))
    dataset = read_train_dataset(json_path, tmp_path)
    assert dataset.is_image is True
    assert [v.video_id for v in dataset.videos] == [1]
    (image,) = dataset.videos
    assert image.file_names == (str(tmp_path / "a.png"),)
    assert [inst.category_idx for inst in image.instances] == [0, 1, 0]
    assert all(len(inst.segmentations) == 1 for inst in image.instances)
    # image 1 has two instances of category 5 but counts once; category 20 only appears as a crowd.
    assert dataset.image_counts == (1, 1, 0)

    unfiltered = read_train_dataset(json_path, tmp_path, filter_empty=False)
    assert [v.video_id for v in unfiltered.videos] == [1, 2, 3]
    assert unfiltered.videos[1].instances == ()
    assert unfiltered.image_counts == (1, 1, 0)


def test_lvis_image_without_file_name_uses_the_coco_url(tmp_path: Path) -> None:
    (tmp_path / "train2017").mkdir()
    Image.fromarray(_frame_image(0)).save(tmp_path / "train2017" / "000000000042.jpg")
    data = {
        "images": [
            {
                "id": 42,
                "coco_url": "http://images.cocodataset.org/train2017/000000000042.jpg",
                "height": HEIGHT,
                "width": WIDTH,
            }
        ],
        "annotations": [{"id": 1, "image_id": 42, "category_id": 1, "segmentation": _polygon(0, 3, 0, 3)}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    dataset = read_train_dataset(_write_json(tmp_path / "lvis.json", data), tmp_path)
    assert dataset.videos[0].file_names == (str(tmp_path / "train2017" / "000000000042.jpg"),)
    clip = read_video_clip(dataset.videos[0], [0])
    np.testing.assert_array_equal(clip.masks[0, 0], _rect(0, 3, 0, 3))


def _assert_one_line_error(excinfo: pytest.ExceptionInfo[TrainingError], *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_frame_file_is_a_training_error(tmp_path: Path) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(1, 4, [_polygon(0, 2, 0, 2), None, None])])
    (tmp_path / "vid" / "00002.png").unlink()
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(json_path, tmp_path)
    _assert_one_line_error(excinfo, "00002.png", "does not exist")


def test_unknown_category_is_a_training_error(tmp_path: Path) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(5, 99, [_polygon(0, 2, 0, 2), None, None])])
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(json_path, tmp_path)
    _assert_one_line_error(excinfo, "annotation 5", "category id 99")


def test_wrong_number_of_segmentations_is_a_training_error(tmp_path: Path) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(5, 4, [_polygon(0, 2, 0, 2), None])])
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(json_path, tmp_path)
    _assert_one_line_error(excinfo, "annotation 5", "2 segmentations", "3 frames")


@pytest.mark.parametrize(
    ("segmentation", "fragment"),
    [
        ({"size": [HEIGHT + 1, WIDTH], "counts": "abc"}, "differs from the frame size"),
        ({"size": [HEIGHT, WIDTH], "counts": [3, 4]}, "add up to 7"),
        ([0, 0, 3, 0, 3, 3], "not a polygon list"),
        ("abc", "neither a polygon list nor an RLE"),
    ],
)
def test_malformed_segmentation_is_a_training_error(tmp_path: Path, segmentation: Any, fragment: str) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(5, 4, [None, segmentation, None])])
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(json_path, tmp_path)
    _assert_one_line_error(excinfo, "annotation 5 frame 1", fragment)


def test_bad_files_are_training_errors(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(bad_json, tmp_path)
    _assert_one_line_error(excinfo, "not valid JSON")
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(tmp_path / "absent.json", tmp_path)
    _assert_one_line_error(excinfo, "does not exist")
    neither = _write_json(tmp_path / "neither.json", {"categories": [{"id": 1, "name": "a"}]})
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(neither, tmp_path)
    _assert_one_line_error(excinfo, "neither 'videos'")
    data = _video_json()
    data["annotations"] = [dict(_video_ann(1, 4, [None, None, None]), video_id=8)]
    _write_frames(tmp_path, data["videos"][0]["file_names"])
    with pytest.raises(TrainingError) as excinfo:
        read_train_dataset(_write_json(tmp_path / "orphan.json", data), tmp_path)
    _assert_one_line_error(excinfo, "video_id 8")


def _ref_candidates(frames: list[int], frame_range: int) -> list[int]:
    """Elements that could be the reference: unique in the clip, every other frame within range of it."""
    counts = Counter(frames)
    return [f for f in counts if counts[f] == 1 and all(abs(g - f) <= frame_range for g in frames)]


def test_sample_clip_frames_is_sorted_within_range_and_has_a_reference() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        length = int(rng.integers(2, 40))
        num_frames = int(rng.integers(2, 6))
        frame_range = int(rng.integers(1, 25))
        frames = sample_clip_frames(length, num_frames, frame_range, rng)
        assert len(frames) == num_frames
        assert frames == sorted(frames)
        assert all(0 <= f < length for f in frames)
        assert _ref_candidates(frames, frame_range), (length, num_frames, frame_range, frames)


def test_sample_clip_frames_edge_cases() -> None:
    rng = np.random.default_rng(1)
    assert sample_clip_frames(1, 3, 20, rng) == [0, 0, 0]
    assert sample_clip_frames(1, 1, 20, rng) == [0]
    # frame_range 0 leaves no other frame: the reference repeats.
    for _ in range(20):
        frames = sample_clip_frames(9, 2, 0, rng)
        assert frames[0] == frames[1]
    # Two frames, range 1: the other frame must be the only other one, drawn with replacement.
    seen = {tuple(sample_clip_frames(2, 3, 1, rng)) for _ in range(200)}
    assert seen == {(0, 1, 1), (0, 0, 1)}
    # A reference at the first frame only reaches forward.
    for _ in range(100):
        frames = sample_clip_frames(30, 2, 3, rng)
        assert frames[1] - frames[0] in (1, 2, 3)
    with pytest.raises(ValueError):
        sample_clip_frames(0, 2, 3, rng)


def test_sample_clip_frames_is_deterministic_for_a_seed() -> None:
    first = [sample_clip_frames(50, 3, 20, np.random.default_rng(seed)) for seed in range(20)]
    again = [sample_clip_frames(50, 3, 20, np.random.default_rng(seed)) for seed in range(20)]
    assert first == again
    assert len({tuple(f) for f in first}) > 10


def test_sample_clip_frames_follows_the_official_distribution() -> None:
    length, frame_range, draws = 6, 2, 30000
    # Exact law of the sorted pair: reference uniform, the other uniform over the window without it.
    expected: dict[tuple[int, int], float] = {}
    for ref in range(length):
        window = [f for f in range(max(0, ref - frame_range), min(length, ref + frame_range + 1)) if f != ref]
        for other in window:
            pair = (min(ref, other), max(ref, other))
            expected[pair] = expected.get(pair, 0.0) + 1 / length / len(window)
    rng = np.random.default_rng(123)
    counts = Counter(tuple(sample_clip_frames(length, 2, frame_range, rng)) for _ in range(draws))
    assert set(counts) == set(expected)
    for pair, probability in expected.items():
        assert abs(counts[pair] / draws - probability) < 0.01, pair


def test_load_clip_keeps_instances_present_in_any_selected_frame(tmp_path: Path) -> None:
    only_first = _video_ann(1, 4, [_polygon(0, 2, 0, 2), None, None])
    only_last = _video_ann(2, 12, [None, None, _polygon(2, 5, 3, 7)])
    empty_rle = _video_ann(3, 30, [None, _uncompressed_rle(np.zeros((HEIGHT, WIDTH), dtype=bool)), None])
    both = _video_ann(4, 30, [None, _polygon(1, 3, 1, 3), _polygon(0, 1, 0, 8)])
    json_path = _write_video_dataset(tmp_path, [only_first, only_last, empty_rle, both])
    video = read_train_dataset(json_path, tmp_path).videos[0]

    clip = read_video_clip(video, [1, 2])
    assert clip.labels.tolist() == [1, 2]  # instance 1 is absent, instance 3 has no pixel
    assert clip.masks.shape == (2, 2, HEIGHT, WIDTH)
    assert not clip.masks[0, 0].any()  # absent in frame 1: all zero
    np.testing.assert_array_equal(clip.masks[0, 1], _rect(2, 5, 3, 7))
    np.testing.assert_array_equal(clip.masks[1, 0], _rect(1, 3, 1, 3))
    np.testing.assert_array_equal(clip.masks[1, 1], _rect(0, 1, 0, 8))
    np.testing.assert_array_equal(clip.frames, np.stack([_frame_image(1), _frame_image(2)]))
    assert clip.frames.dtype == np.uint8
    assert clip.file_names == (video.file_names[1], video.file_names[2])

    repeated = read_video_clip(video, [0, 0])
    assert repeated.labels.tolist() == [0]
    assert repeated.frames.shape == (2, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(repeated.masks[0, 1], _rect(0, 2, 0, 2))


def test_load_clip_rejects_wrong_frame_size_and_corrupt_masks(tmp_path: Path) -> None:
    json_path = _write_video_dataset(tmp_path, [_video_ann(1, 4, [_polygon(0, 2, 0, 2), None, None])])
    video = read_train_dataset(json_path, tmp_path).videos[0]
    Image.fromarray(np.zeros((HEIGHT, WIDTH + 1, 3), dtype=np.uint8)).save(video.file_names[0])
    with pytest.raises(TrainingError) as excinfo:
        read_video_clip(video, [0])
    _assert_one_line_error(excinfo, "9x6", "8x6")

    # Counts that stop inside a number would make pycocotools read past the string.
    corrupt = TrainVideo(
        video_id=9,
        file_names=video.file_names,
        height=HEIGHT,
        width=WIDTH,
        instances=(
            TrainInstance(category_idx=0, segmentations=(None, {"size": [HEIGHT, WIDTH], "counts": "0o"}, None)),
        ),
    )
    with pytest.raises(TrainingError) as excinfo:
        read_video_clip(corrupt, [1])
    _assert_one_line_error(excinfo, "video 9 frame 1", "cut off inside a number")


def test_decode_segmentation_merges_several_polygons() -> None:
    polygons = _polygon(0, 2, 0, 2) + _polygon(4, 6, 6, 8)
    np.testing.assert_array_equal(decode_segmentation(polygons, HEIGHT, WIDTH), _rect(0, 2, 0, 2) | _rect(4, 6, 6, 8))

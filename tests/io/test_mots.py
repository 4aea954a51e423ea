"""MOTS PNG: one id image per frame (class * 1000 + instance), written and read back."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ovformer_core.errors import AnnotationError, OutputError
from ovformer_core.io.mots import read_mots, write_mots
from ovformer_core.io.png_masks import encode_png
from ovformer_core.io.results import Track, VideoResult
from tests.io.track_fixtures import assert_same_tracks, flattened_tracks, synthetic_result, visible_tracks


def test_round_trip_resolves_overlaps_by_score(tmp_path: Path) -> None:
    result = synthetic_result()
    path = tmp_path / "clip.mots.zip"
    write_mots(path, result)
    names = zipfile.ZipFile(path).namelist()
    assert names[-1] == "clip/instances/labels.txt" and len(names) == 1 + result.num_frames
    assert zipfile.ZipFile(path).read("clip/instances/labels.txt") == b"cat\ndog\nperson\n"
    (back,) = read_mots(path)
    assert back.video_name == "clip" and back.frame_indices == result.frame_indices
    assert_same_tracks(visible_tracks(back), flattened_tracks(result))
    # track 5 (score 0.95) hides track 1 (0.9) wholly in frame 4
    assert 4 not in visible_tracks(back)[1][1]


def _png_zip(path: Path, frames: dict[str, np.ndarray], labels: str | None = "person\ndog\n") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, image in frames.items():
            archive.writestr(name, encode_png(image))
        if labels is not None:
            archive.writestr("default/instances/labels.txt", labels)
    return path


def test_cvat_layout_ids_and_names(tmp_path: Path) -> None:
    first = np.zeros((4, 5), dtype=np.uint16)
    first[0, :2] = 1000 + 0  # person, instance 0 (CVAT numbers from 0)
    first[2:, 3:] = 2003  # dog 3
    second = np.zeros((4, 5), dtype=np.uint16)
    second[1, 1] = 2003
    path = _png_zip(
        tmp_path / "task.zip",
        {"default/instances/frame_000010.png": first, "default/instances/frame_000011.png": second},
    )
    (video,) = read_mots(path)
    assert video.video_name == "task" and video.frame_indices == [10, 11]
    got = visible_tracks(video)
    assert sorted(got) == [1, 4] and got[1][0] == "person" and got[4][0] == "dog"  # ids + 1: the file used 0
    assert np.array_equal(got[4][1][10], first == 2003) and sorted(got[4][1]) == [10, 11]


def test_kitti_layout_without_labels_skips_ignore_regions(tmp_path: Path) -> None:
    image = np.zeros((3, 3), dtype=np.uint16)
    image[0, 0], image[1, 1], image[2, 2] = 1005, 2007, 10000
    path = _png_zip(tmp_path / "kitti.zip", {"instances/0002/000000.png": image}, labels=None)
    (video,) = read_mots(path)
    assert video.video_name == "kitti_0002"
    assert {t.track_id: t.category_name for t in video.tracks} == {5: "car", 7: "pedestrian"}


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ([1005, 2005], "instance id 5 is both 'person' and 'dog' (id collision)"),
        ([3001], "pixel value 3001 has class 3, but there are 2 labels"),
        ([7], "pixel value 7 has class 0"),
    ],
)
def test_bad_pngs_are_one_line(tmp_path: Path, values: list[int], needle: str) -> None:
    image = np.zeros((2, 4), dtype=np.uint16)
    for k, value in enumerate(values):
        image[0, k] = value
    path = _png_zip(tmp_path / "bad.zip", {"default/instances/frame_000003.png": image})
    with pytest.raises(AnnotationError) as caught:
        read_mots(path)
    assert str(caught.value).startswith(f"{path}:default/instances/frame_000003.png: {needle}")


def test_collision_across_frames(tmp_path: Path) -> None:
    first, second = np.full((2, 2), 1004, dtype=np.uint16), np.full((2, 2), 2004, dtype=np.uint16)
    path = _png_zip(
        tmp_path / "bad.zip",
        {"default/instances/frame_000000.png": first, "default/instances/frame_000001.png": second},
    )
    with pytest.raises(AnnotationError, match=r"frame_000001.png: instance id 4 is both 'person' and 'dog'"):
        read_mots(path)


def test_truncated_png_and_other_bad_entries(tmp_path: Path) -> None:
    data = encode_png(np.full((8, 8), 1001, dtype=np.uint16))
    path = tmp_path / "cut.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("default/instances/frame_000000.png", data[: len(data) // 2])
    with pytest.raises(AnnotationError, match=r"cut.zip:default/instances/frame_000000.png is not a readable PNG"):
        read_mots(path)
    sizes = _png_zip(
        tmp_path / "sizes.zip",
        {
            "default/instances/frame_000000.png": np.zeros((2, 2), dtype=np.uint16),
            "default/instances/frame_000001.png": np.zeros((2, 3), dtype=np.uint16),
        },
    )
    with pytest.raises(AnnotationError, match="frame_000001.png is 3x2, the other frames 2x2"):
        read_mots(sizes)
    rgb = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(rgb, format="PNG")
    colour = tmp_path / "rgb.zip"
    with zipfile.ZipFile(colour, "w") as archive:
        archive.writestr("default/instances/frame_000000.png", rgb.getvalue())
    with pytest.raises(AnnotationError, match="is a PNG RGB image, not a grayscale PNG"):
        read_mots(colour)
    with pytest.raises(AnnotationError, match="has no instances/"):
        read_mots(tmp_path)


def test_what_mots_cannot_hold_is_refused(tmp_path: Path) -> None:
    masks = np.ones((1, 2, 2), dtype=bool)
    big = Track.from_masks(1000, 0, "cat", 1, 0.5, masks)
    result = VideoResult("v", "", 1, 2, 2, 1, 1.0, [0], [big], [{"id": 1, "name": "cat"}])
    with pytest.raises(OutputError, match="track id 1000 does not fit MOTS PNG"):
        write_mots(tmp_path / "v.mots.zip", result)
    many = [Track.from_masks(k + 1, k, f"c{k}", k + 1, 0.5, masks) for k in range(65)]
    result = VideoResult("v", "", 1, 2, 2, 1, 1.0, [0], many, [{"id": k + 1, "name": f"c{k}"} for k in range(65)])
    with pytest.raises(OutputError, match="65 labels do not fit MOTS PNG"):
        write_mots(tmp_path / "v.mots.zip", result)
    assert list(tmp_path.iterdir()) == []

"""One dataset check for inference, evaluation and training: names that leave the root, duplicate ids."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ovformer_core.errors import OVFormerError, ResultsError, TrainingError
from ovformer_core.eval.ground_truth import load_ground_truth
from ovformer_core.inference.dataset import read_dataset
from ovformer_core.io.dataset_json import check_categories, file_name_problem
from ovformer_core.train.data import read_train_dataset
from tests.eval.eval_cases import box_masks


def _dataset() -> dict[str, Any]:
    """A video dataset every reader accepts (frames are only needed by training, and only at the end)."""
    return {
        "videos": [
            {"id": 1, "height": 8, "width": 10, "length": 2, "file_names": ["v1/0.png", "v1/1.png"]},
            {"id": 2, "height": 8, "width": 10, "length": 1, "file_names": ["v2/0.png"]},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "segmentations": box_masks([(1, 1, 4, 4)] * 2, 8, 10)},
            {"id": 2, "video_id": 2, "category_id": 2, "segmentations": box_masks([(2, 2, 6, 6)], 8, 10)},
        ],
    }


def _read_inference(path: Path) -> object:
    return read_dataset(path)


def _read_ground_truth(path: Path) -> object:
    return load_ground_truth(path)


def _read_training(path: Path) -> object:
    return read_train_dataset(path, path.parent / "frames")


READERS: dict[str, tuple[Callable[[Path], object], type[OVFormerError]]] = {
    "inference": (_read_inference, ResultsError),
    "evaluation": (_read_ground_truth, ResultsError),
    "training": (_read_training, TrainingError),
}


def _edit(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _duplicate(section: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data[section][1]["id"] = data[section][0]["id"]

    return edit


BAD_DATASETS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "parent folder": (_edit(("videos", 1, "file_names", 0), "../../etc/passwd"), "goes up a folder ('..')"),
    "parent folder inside": (_edit(("videos", 0, "file_names", 1), "v1/../../x.png"), "goes up a folder"),
    "windows parent": (_edit(("videos", 0, "file_names", 1), "v1\\..\\..\\x.png"), "goes up a folder"),
    "absolute path": (_edit(("videos", 0, "file_names", 0), "/etc/passwd"), "is an absolute path"),
    "drive letter": (_edit(("videos", 0, "file_names", 0), "C:/Windows/x.png"), "is an absolute path"),
    "empty name": (_edit(("videos", 0, "file_names", 0), ""), "'' is not a file name"),
    "name not a string": (_edit(("videos", 0, "file_names", 0), ["a"]), "is not a file name"),
    "duplicate video id": (_duplicate("videos"), "video id 1 appears twice in 'videos' (videos[0] and videos[1])"),
    "duplicate category id": (_duplicate("categories"), "category id 1 appears twice in 'categories'"),
    "bool video id": (_edit(("videos", 0, "id"), True), "videos[0] 'id' must be an integer, not True"),
    "video id beyond int64": (_edit(("videos", 0, "id"), 2**70), "must be an integer"),
    "video not an object": (_edit(("videos", 1), [1, 2]), "videos[1] is not an object"),
    "length disagrees": (_edit(("videos", 0, "length"), 3), "has 'length' 3 but 2 file names"),
    "no videos": (lambda data: data.pop("videos"), "'videos'"),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("case", sorted(BAD_DATASETS))
def test_every_dataset_reader_refuses_the_same_mistakes(tmp_path: Path, reader: str, case: str) -> None:
    data = _dataset()
    edit, expected = BAD_DATASETS[case]
    edit(data)
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    read, error = READERS[reader]
    with pytest.raises(error) as info:
        read(path)
    message = str(info.value)
    assert "\n" not in message and expected in message, message


@pytest.mark.parametrize(
    ("reader", "edit", "expected"),
    [
        ("evaluation", _duplicate("annotations"), "annotation id 1 appears twice in 'annotations'"),
        ("training", _duplicate("annotations"), "annotation id 1 appears twice in 'annotations'"),
        ("evaluation", _edit(("videos", 0, "height"), 0), "frame size (10 x 0) 10x0 is not positive"),
        ("training", _edit(("videos", 0, "width"), 3 * 10**6), "larger than any frame a video can have"),
        ("inference", _edit(("categories", 0, "name"), 3), "categories[0] (id 1) needs a string 'name'"),
        ("inference", _edit(("categories",), []), "'categories' is empty"),
    ],
)
def test_reader_specific_rules(tmp_path: Path, reader: str, edit: Callable, expected: str) -> None:
    data = _dataset()
    edit(data)
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    read, error = READERS[reader]
    with pytest.raises(error) as info:
        read(path)
    assert expected in str(info.value), str(info.value)


def test_valid_names_are_kept(tmp_path: Path) -> None:
    data = _dataset()
    data["videos"][0]["file_names"] = ["a..b/..c.png", "./v1/1.png"]  # dots inside names are fine
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    assert read_dataset(path).videos[0].file_names == ("a..b/..c.png", "./v1/1.png")
    assert load_ground_truth(copy.deepcopy(data)).video_ids.tolist() == [1, 2]


def test_image_json_names_and_coco_urls_stay_inside_the_root(tmp_path: Path) -> None:
    images = {
        "images": [
            {"id": 1, "height": 8, "width": 10, "file_name": "a.png"},
            {"id": 2, "height": 8, "width": 10, "coco_url": "http://images.cocodataset.org/train2017/../x.jpg"},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [],
    }
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps(images))
    with pytest.raises(TrainingError, match=r"image 2: file name '\.\./x\.jpg' goes up a folder"):
        read_train_dataset(path, tmp_path)
    images["images"][1] = {"id": 1, "height": 8, "width": 10, "file_name": "b.png"}
    path.write_text(json.dumps(images))
    with pytest.raises(TrainingError, match=r"image id 1 appears twice in 'images'"):
        read_train_dataset(path, tmp_path)


def test_file_name_problem() -> None:
    assert file_name_problem("00000/00001.jpg") is None
    assert file_name_problem("a\x00b") == "'a\\x00b' contains a NUL byte"
    assert file_name_problem("..") is not None and file_name_problem("\\\\server\\share") is not None


def test_check_categories_serves_the_category_only_readers() -> None:
    """The vocabulary and the LV-VIS split read only 'categories': one check for both."""
    data = {"categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}]}
    assert check_categories(data, "dataset file d.json", ResultsError, need_names=True) == data["categories"]
    with pytest.raises(ResultsError, match="^dataset file d.json has no 'categories' list"):
        check_categories({"videos": []}, "dataset file d.json", ResultsError, need_names=False)
    with pytest.raises(ResultsError, match=r"^d.json: categories\[1\] \(id 1\) needs a string 'name'$"):
        check_categories({"categories": [{"id": 2, "name": "a"}, {"id": 1}]}, "d.json", ResultsError, need_names=True)
    with pytest.raises(ResultsError, match="category id 2 appears twice"):
        check_categories({"categories": [{"id": 2}, {"id": 2}]}, "d.json", ResultsError, need_names=False)

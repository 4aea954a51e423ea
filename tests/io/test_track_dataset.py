"""Imported tracks -> YouTube-VIS dataset (read by the evaluator and by training), vocabulary merge, stability."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ovformer_core.errors import AnnotationError
from ovformer_core.eval.ground_truth import load_ground_truth
from ovformer_core.io.annotation_formats import ANNOTATION_FORMATS, read_annotations
from ovformer_core.io.outputs import OutputPaths, write_outputs
from ovformer_core.io.track_dataset import (
    check_frame_pattern,
    dataset_document,
    merge_vocabulary,
    results_from_dataset,
)
from ovformer_core.train.data import read_train_dataset
from tests.io.track_fixtures import assert_same_tracks, synthetic_result, visible_tracks


def test_the_dataset_is_read_by_the_evaluator_and_by_training(tmp_path: Path) -> None:
    result = synthetic_result()
    document = dataset_document([result], "{video}/{frame:05d}.png")
    assert document["videos"][0]["file_names"][:2] == ["clip/00004.png", "clip/00007.png"]
    assert [a["track_id"] for a in document["annotations"]] == [1, 2, 5, 7]  # 9 has no pixel
    assert document["annotations"][1]["segmentations"][3] is None  # track 2's empty mask
    ground_truth = load_ground_truth(document)
    assert list(ground_truth.num_frames) == [7] and len(ground_truth.track_ids) == 4
    path = tmp_path / "train.json"
    path.write_text(json.dumps(document))
    for name in document["videos"][0]["file_names"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    train = read_train_dataset(path, tmp_path)
    assert train.category_names == ("cat", "dog", "person", "car")
    assert len(train.videos[0].instances) == 4


@pytest.mark.parametrize("fmt", ANNOTATION_FORMATS)
def test_export_import_export_is_stable(tmp_path: Path, fmt: str) -> None:
    first = OutputPaths.for_input(tmp_path / "first", "clip")
    write_outputs(synthetic_result(), [fmt], first)
    dataset = dataset_document(read_annotations(first.of(fmt), fmt))
    again = OutputPaths.for_input(tmp_path / "again", "clip")
    (reread,) = results_from_dataset(json.loads(json.dumps(dataset)))
    write_outputs(reread, [fmt], again)
    assert again.of(fmt).read_bytes() == first.of(fmt).read_bytes()
    assert dataset_document(read_annotations(again.of(fmt), fmt)) == dataset


def test_merge_by_name_against_a_vocabulary() -> None:
    result = synthetic_result()
    classes = [("car",), ("person",), ("kitten", "Cat"), ("puppy", "dog")]
    (merged,) = merge_vocabulary([result], classes, "export.zip")
    assert merged.categories == [
        {"id": 1, "name": "car"},
        {"id": 2, "name": "person"},
        {"id": 3, "name": "kitten"},
        {"id": 4, "name": "puppy"},
    ]
    assert {t.track_id: (t.category_id, t.category_name) for t in merged.tracks} == {
        1: (3, "kitten"),
        2: (4, "puppy"),
        5: (3, "kitten"),
        7: (2, "person"),
        9: (4, "puppy"),
    }
    assert_same_tracks(
        {k: ("", m) for k, (_, m) in visible_tracks(merged).items()},
        {k: ("", m) for k, (_, m) in visible_tracks(result).items()},
    )
    with pytest.raises(AnnotationError, match=r"export.zip: label 'person' \(track 7 of clip\) is not in the vocab"):
        merge_vocabulary([result], [("cat",), ("dog",)], "export.zip")


def test_several_videos_become_one_dataset_with_one_category_list() -> None:
    first = synthetic_result()
    second = dataclasses.replace(synthetic_result(seed=2), video_name="other", categories=[{"id": 9, "name": "dog"}])
    second = dataclasses.replace(
        second, tracks=[dataclasses.replace(t, category_id=9, category_name="dog") for t in second.tracks]
    )
    document = dataset_document([first, second])
    assert [v["id"] for v in document["videos"]] == [1, 2]
    assert {c["name"]: c["id"] for c in document["categories"]}["dog"] == 2
    assert {a["category_id"] for a in document["annotations"] if a["video_id"] == 2} == {2}
    with pytest.raises(AnnotationError, match="two videos are named 'clip'"):
        dataset_document([first, first])


@pytest.mark.parametrize("pattern", ["{video}/{name}.jpg", "{frame.__class__}", "{video", "{0}"])
def test_frame_patterns_take_only_video_and_frame(pattern: str) -> None:
    with pytest.raises(AnnotationError, match="frame pattern"):
        check_frame_pattern(pattern)

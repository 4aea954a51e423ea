"""Datumaro 1.0 JSON: every mask as a COCO RLE per frame item, tracks by ``track_id``."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ovformer_core.errors import AnnotationError
from ovformer_core.io.datumaro_format import read_datumaro, write_datumaro
from ovformer_core.io.rle import encode_rle
from tests.io.track_fixtures import assert_same_tracks, synthetic_result, visible_tracks


def test_round_trip_keeps_overlaps_scores_and_every_frame(tmp_path: Path) -> None:
    result = synthetic_result()
    path = tmp_path / "clip.datumaro.zip"
    write_datumaro(path, result)
    document = json.loads(zipfile.ZipFile(path).read("annotations/clip.json"))
    assert [item["id"] for item in document["items"]] == [f"frame_{i:06d}" for i in result.frame_indices]
    (back,) = read_datumaro(path)
    assert back.frame_indices == result.frame_indices and back.video_name == "clip"
    assert_same_tracks(visible_tracks(back), visible_tracks(result))
    assert {t.track_id: t.score for t in back.tracks} == {1: 0.9, 2: 0.5, 5: 0.95, 7: 0.3}


def test_several_videos_share_one_label_list(tmp_path: Path) -> None:
    first, second = synthetic_result(), synthetic_result(seed=1)
    second = type(second)(**{**second.__dict__, "video_name": "other"})
    path = tmp_path / "both.datumaro.zip"
    write_datumaro(path, [first, second])
    videos = read_datumaro(path)
    assert [v.video_name for v in videos] == ["clip", "other"]
    assert videos[0].categories == videos[1].categories


def _document(annotations: list[dict[str, Any]], size: list[int] | None = None) -> dict[str, Any]:
    return {
        "dm_format_version": "1.0",
        "categories": {"label": {"labels": [{"name": "cat"}, {"name": "dog"}]}},
        "items": [
            {"id": "frame_000000", "attr": {"frame": 0}, "image": {"size": size or [3, 4]}, "annotations": annotations}
        ],
    }


def _write(tmp_path: Path, document: dict[str, Any]) -> Path:
    folder = tmp_path / "export"
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "default.json").write_text(json.dumps(document))
    return folder


def _mask(value: int = 1) -> dict[str, Any]:
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 1:3] = bool(value)
    return {"type": "mask", "rle": encode_rle(mask), "label_id": 1, "attributes": {"track_id": 4}}


def test_polygons_untracked_objects_and_tags(tmp_path: Path) -> None:
    polygon = {"type": "polygon", "points": [0, 0, 2, 0, 2, 2, 0, 2], "label_id": 0, "attributes": {}}
    tag = {"type": "label", "label_id": 0}
    (video,) = read_datumaro(_write(tmp_path, _document([_mask(), polygon, tag])))
    assert video.video_name == "export"
    assert {t.track_id: t.category_name for t in video.tracks} == {4: "dog", 5: "cat"}
    assert video.tracks[1].mask(0)[:2, :2].all()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"label_id": 5}, "label 5 is not one of the 2 labels the file declares"),
        ({"rle": {"counts": "abc", "size": [3, 4]}}, "mask rle does not cover the 3x4 frame"),
        ({"rle": {"counts": "0", "size": [5, 4]}}, "differ in size"),
        ({"type": "bbox", "bbox": [0, 0, 1, 1]}, "a bbox carries no mask"),
        ({"attributes": {"track_id": "x"}}, "track_id 'x' is not an integer"),
        ({"attributes": {"track_id": 4, "score": 7}}, "score 7 is not a number in [0, 1]"),
    ],
)
def test_bad_annotations_are_one_line(tmp_path: Path, change: dict[str, Any], needle: str) -> None:
    folder = _write(tmp_path, _document([{**_mask(), **change}]))
    with pytest.raises(AnnotationError) as caught:
        read_datumaro(folder)
    assert needle in str(caught.value) and str(folder / "annotations" / "default.json") in str(caught.value)


def test_a_track_with_two_labels_or_two_masks_in_a_frame(tmp_path: Path) -> None:
    other = {**_mask(), "label_id": 0}
    with pytest.raises(AnnotationError, match="track 4 is 'dog' elsewhere but 'cat' here"):
        read_datumaro(_write(tmp_path / "a", _document([_mask(), other])))
    with pytest.raises(AnnotationError, match="track 4 has two masks in this frame"):
        read_datumaro(_write(tmp_path / "b", _document([_mask(), _mask()])))


def test_truncated_json(tmp_path: Path) -> None:
    folder = _write(tmp_path, _document([_mask()]))
    target = folder / "annotations" / "default.json"
    target.write_text(target.read_text()[:50])
    with pytest.raises(AnnotationError, match="default.json is not valid JSON"):
        read_datumaro(folder)


def test_item_folders_cannot_reach_outside_the_frame_root(tmp_path: Path) -> None:
    document = _document([_mask()])
    document["items"][0]["id"] = "../frame_000000"
    with pytest.raises(AnnotationError, match="video name '..' cannot name a folder"):
        read_datumaro(_write(tmp_path, document))

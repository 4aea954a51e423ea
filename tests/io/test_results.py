"""Result model and its files: full JSON round trip, YouTube-VIS list, COCO per-frame, errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovformer_core.errors import ResultsError
from ovformer_core.io.results import (
    Track,
    VideoResult,
    load_result,
    load_results,
    write_coco_json,
    write_result_json,
    write_ytvis_json,
)

REFERENCE_RESULTS = (
    Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "zeroshot_video_tiny" / "results.json"
)


def test_track_masks_decode_lazily_to_the_written_masks(make_result: Callable) -> None:
    result, masks = make_result(num_frames=4, height=24, width=32, num_tracks=3)
    for k, track in enumerate(result.tracks):
        assert track.num_frames == 4
        for t in range(4):
            np.testing.assert_array_equal(track.mask(t), masks[k, t])
    # Every frame has an RLE, empty ones included (the official results' convention).
    assert all(rle is not None for track in result.tracks for rle in track.segmentations)


def test_empty_as_none_and_mask_of_absent_frame() -> None:
    masks = np.zeros((3, 5, 6), dtype=bool)
    masks[0, 1:3, 2:4] = True
    track = Track.from_masks(7, 2, "cat", 3, 0.5, masks, empty_as_none=True)
    assert track.segmentations[1] is None and track.segmentations[2] is None
    assert track.mask(1).shape == (5, 6) and not track.mask(1).any()
    lonely = Track(1, 0, "x", 1, 0.1, [None, None])
    assert lonely.mask(0, shape=(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError):
        lonely.mask(0)


def test_full_json_round_trip(tmp_path: Path, make_result: Callable) -> None:
    result, masks = make_result(num_frames=5, frame_indices=[0, 2, 4, 6, 8])
    result = dataclasses.replace(result, metadata={"read_options": {"stride": 2}, "threshold": 0.25})
    write_result_json(tmp_path / "r.json", result)
    loaded = VideoResult.from_json(tmp_path / "r.json")
    assert loaded == result
    np.testing.assert_array_equal(loaded.tracks[1].mask(3), masks[1, 3])
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["format"] == "ovformer-results" and document["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


def test_full_json_with_several_videos(tmp_path: Path, make_result: Callable) -> None:
    first, _ = make_result(seed=1)
    second = dataclasses.replace(make_result(seed=2, num_tracks=1)[0], video_id=2, video_name="other")
    write_result_json(tmp_path / "all.json", [first, second])
    assert load_results(tmp_path / "all.json") == [first, second]
    with pytest.raises(ResultsError, match="holds 2 videos"):
        load_result(tmp_path / "all.json")


def test_ytvis_json_decodes_at_original_size(tmp_path: Path, make_result: Callable) -> None:
    result, masks = make_result(num_frames=4, height=24, width=32, num_tracks=3)
    write_ytvis_json(tmp_path / "ytvis.json", result)
    entries = json.loads((tmp_path / "ytvis.json").read_text())
    assert len(entries) == 3
    for k, entry in enumerate(entries):
        assert {"video_id", "category_id", "score", "segmentations"} <= set(entry)
        assert entry["video_id"] == 1 and entry["category_id"] == k + 1
        assert entry["category_name"] == f"cat{k}" and entry["track_id"] == k + 1
        assert len(entry["segmentations"]) == 4
        for t, rle in enumerate(entry["segmentations"]):
            # What the official loadRes does with every segmentation: area, bbox, decode.
            decoded = mask_utils.decode(rle)
            assert decoded.shape == (24, 32)
            np.testing.assert_array_equal(decoded.astype(bool), masks[k, t])
            assert mask_utils.area(rle) == masks[k, t].sum()
    write_ytvis_json(tmp_path / "plain.json", result, extra_keys=False)
    assert set(json.loads((tmp_path / "plain.json").read_text())[0]) == {
        "video_id",
        "category_id",
        "score",
        "segmentations",
    }


def test_ytvis_entries_have_the_official_shape() -> None:
    # The official evaluator's own output, from the reference fixtures: same keys and RLE layout.
    official = json.loads(REFERENCE_RESULTS.read_text())
    rle = official[0]["segmentations"][0]
    assert set(official[0]) == {"video_id", "category_id", "score", "segmentations"}
    assert set(rle) == {"size", "counts"} and isinstance(rle["counts"], str)
    h, w = rle["size"]
    masks = np.stack([mask_utils.decode(s).astype(bool) for s in official[0]["segmentations"]])
    track = Track.from_masks(1, 0, "x", official[0]["category_id"], official[0]["score"], masks)
    assert track.segmentations == official[0]["segmentations"]
    assert masks.shape[1:] == (h, w)


def test_coco_json(tmp_path: Path, make_result: Callable) -> None:
    result, masks = make_result(num_frames=4, height=24, width=32, num_tracks=3, frame_indices=[10, 11, 12, 13])
    write_coco_json(tmp_path / "coco.json", result)
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert [image["frame_index"] for image in coco["images"]] == [10, 11, 12, 13]
    assert coco["images"][0]["file_name"] == "synthetic/000010.jpg"
    assert coco["categories"] == [{"id": 1, "name": "cat0"}, {"id": 2, "name": "cat1"}, {"id": 3, "name": "cat2"}]
    non_empty = int(masks.any(axis=(2, 3)).sum())
    assert len(coco["annotations"]) == non_empty == 9  # each track is absent from one frame
    image_position = {image["id"]: p for p, image in enumerate(coco["images"])}
    for ann in coco["annotations"]:
        k, t = ann["track_id"] - 1, image_position[ann["image_id"]]
        mask = masks[k, t]
        np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), mask)
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum()
        assert ann["category_id"] == k + 1 and ann["score"] == pytest.approx(result.tracks[k].score)
    assert len({ann["id"] for ann in coco["annotations"]}) == 9


def test_invalid_results_are_rejected_on_construction(make_result: Callable) -> None:
    result, _ = make_result(num_tracks=2)
    track = result.tracks[0]
    with pytest.raises(ValueError, match="appears twice"):
        dataclasses.replace(result, tracks=[track, track])
    with pytest.raises(ValueError, match="below 1"):
        dataclasses.replace(result, tracks=[dataclasses.replace(track, track_id=0)])
    with pytest.raises(ValueError, match="segmentations"):
        dataclasses.replace(result, tracks=[dataclasses.replace(track, segmentations=track.segmentations[:2])])
    with pytest.raises(ValueError, match="mask is 32x24, not 31x24"):
        dataclasses.replace(result, width=31)
    with pytest.raises(ValueError, match="increasing"):
        dataclasses.replace(result, frame_indices=[0, 2, 2, 3])


def _write(path: Path, value: object) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def _valid_document(make_result: Callable) -> dict:
    result, _ = make_result(num_tracks=2)
    return {"format": "ovformer-results", "version": 1, "videos": [result.to_dict()]}


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: [], "YouTube-VIS"),
        (lambda d: {"videos": []}, "not an ovformer result file"),
        (lambda d: {**d, "version": 99}, "version 99"),
        (lambda d: d["videos"][0].pop("width") and d, "missing key 'width'"),
        (lambda d: d["videos"][0].update(fps="fast") or d, "'fps' has the wrong type"),
        (lambda d: d["videos"][0]["tracks"][1].update(segmentations=[None]) or d, "1 segmentations for 4 frames"),
        (lambda d: d["videos"][0]["tracks"][0]["segmentations"].__setitem__(2, {"size": [1, 1]}) or d, "frame 2"),
        (lambda d: d["videos"][0]["tracks"][0].update(track_id=True) or d, "'track_id' has the wrong type"),
        (lambda d: d["videos"][0].update(height=23) or d, "not 32x23"),
        (lambda d: d["videos"][0]["tracks"][0]["segmentations"][1].update(counts="0~") or d, "frame 1"),
    ],
)
def test_malformed_files_raise_one_line_results_error(
    tmp_path: Path, make_result: Callable, mutate: Callable, fragment: str
) -> None:
    path = _write(tmp_path / "bad.json", mutate(_valid_document(make_result)))
    with pytest.raises(ResultsError) as excinfo:
        load_result(path)
    message = str(excinfo.value)
    assert "\n" not in message and fragment in message, message
    assert "bad.json" in message


def test_run_lengths_not_covering_the_frame_are_rejected(tmp_path: Path, make_result: Callable) -> None:
    document = _valid_document(make_result)
    # A well-formed RLE of a smaller mask: pycocotools would hand back uninitialised pixels.
    other = Track.from_masks(1, 0, "x", 1, 0.5, np.ones((1, 6, 5), dtype=bool)).segmentations[0]
    document["videos"][0]["tracks"][0]["segmentations"][2] = {"size": [24, 32], "counts": other["counts"]}
    with pytest.raises(ResultsError) as excinfo:
        load_result(_write(tmp_path / "r.json", document))
    assert "track 0: frame 2" in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_missing_result_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="does not exist"):
        load_result(tmp_path / "missing.json")


def test_failed_write_leaves_no_file(tmp_path: Path, make_result: Callable) -> None:
    result, _ = make_result()
    broken = dataclasses.replace(result, metadata={"bad": float("nan")})
    with pytest.raises(ValueError):
        write_result_json(tmp_path / "r.json", broken)
    assert list(tmp_path.iterdir()) == []

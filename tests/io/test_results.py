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
    message = str(excinfo.value)
    assert "track 1 frame 2 has a bad RLE: its runs cover 30 pixels, but the mask has 768" in message
    assert "\n" not in message


def test_missing_result_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="does not exist"):
        load_result(tmp_path / "missing.json")


def test_failed_write_leaves_no_file(tmp_path: Path, make_result: Callable) -> None:
    result, _ = make_result()
    broken = dataclasses.replace(result, metadata={"bad": float("nan")})
    with pytest.raises(ValueError):
        write_result_json(tmp_path / "r.json", broken)
    assert list(tmp_path.iterdir()) == []


def _huge_rle(pixels: int) -> dict:
    """A few characters that claim ``pixels`` background pixels (pycocotools counts are 32-bit)."""
    groups, value = [], pixels
    while True:
        group, value = value & 0x1F, value >> 5
        if value == 0 and not group & 0x10:
            groups.append(group)
            break
        groups.append(group | 0x20)
    return {"counts": "".join(chr(48 + g) for g in groups)}


def _video(document: dict) -> dict:
    return document["videos"][0]


def _track(document: dict, index: int = 0) -> dict:
    return document["videos"][0]["tracks"][index]


def _deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


# Each case edits a valid document; the message must name the entry and say what is wrong.
EXPORT_CASES: dict[str, tuple[Callable[[dict], object], str]] = {
    "score NaN in the file": (lambda d: _track(d).update(score=float("nan")), "contains NaN, which is not JSON"),
    "score Infinity in the file": (lambda d: _track(d).update(score=float("inf")), "contains Infinity"),
    "score above 1": (lambda d: _track(d, 1).update(score=1.5), "video 0 track 1: score 1.5 is not a number in [0, 1]"),
    "negative score": (lambda d: _track(d).update(score=-0.1), "score -0.1 is not a number in [0, 1]"),
    "score as text": (lambda d: _track(d).update(score="0.5"), "'score' has the wrong type (str)"),
    "score huge integer": (lambda d: _track(d).update(score=10**400), "not a number in [0, 1]"),
    "fps zero": (lambda d: _video(d).update(fps=0), "fps 0 is not a frame rate"),
    "fps negative": (lambda d: _video(d).update(fps=-25.0), "fps -25.0 is not a frame rate"),
    "fps absurd": (lambda d: _video(d).update(fps=1e300), "fps 1e+300 is not a frame rate"),
    "frame size 1 TB": (
        lambda d: _video(d).update(width=10**6, height=10**6),
        "frame size 1000000x1000000 is larger than any frame a video can have",
    ),
    "frame size beyond int64": (lambda d: _video(d).update(width=2**70), "'width' is 1180591620717411303424"),
    "zero width": (lambda d: _video(d).update(width=0), "'width' is 0, outside [1,"),
    "num_frames absurd": (lambda d: _video(d).update(num_frames=10**12), "'num_frames' is 1000000000000, outside"),
    "negative frame index": (lambda d: _video(d)["frame_indices"].__setitem__(0, -1), "must lie in [0, 2147483647]"),
    "frame index beyond int32": (lambda d: _video(d)["frame_indices"].__setitem__(3, 2**40), "must lie in [0,"),
    "bool frame index": (lambda d: _video(d)["frame_indices"].__setitem__(1, True), "list of integers"),
    "frame indices decreasing": (lambda d: _video(d).update(frame_indices=[0, 2, 1, 3]), "not strictly increasing"),
    "track id zero": (lambda d: _track(d).update(track_id=0), "'track_id' is 0, outside [1,"),
    "track id beyond 16-bit PNG ids": (
        lambda d: _track(d).update(track_id=70000),
        "'track_id' is 70000, outside [1, 65535]",
    ),
    "label beyond the vocabulary": (lambda d: _track(d).update(label=2), "'label' is 2, outside [0, 1]"),
    "category id bool": (lambda d: _track(d).update(category_id=False), "'category_id' has the wrong type (bool)"),
    "duplicate category ids": (
        lambda d: _video(d)["categories"][1].update(id=1),
        "category id 1 appears twice in 'categories'",
    ),
    "category name missing": (lambda d: _video(d)["categories"][0].pop("name"), "categories[0] needs a string 'name'"),
    "metadata too deep": (lambda d: _video(d).update(metadata=_deep(40)), "'metadata' nests deeper than 32 levels"),
    "segmentations not a list": (lambda d: _track(d).update(segmentations="x"), "'segmentations' has the wrong type"),
    "tracks not a list": (lambda d: _video(d).update(tracks={}), "'tracks' has the wrong type (dict)"),
    "RLE counts not ASCII": (
        lambda d: _track(d)["segmentations"][0].update(counts="é"),
        "track 1 frame 0 has a bad RLE: its 'counts' string is not ASCII",
    ),
    "RLE claims a 1 TB mask": (
        lambda d: [
            _video(d).update(width=10**6, height=10**6),
            *[seg.update(size=[10**6, 10**6], **_huge_rle(10**12)) for seg in _track(d)["segmentations"]],
        ],
        "larger than any frame a video can have",
    ),
    "RLE runs short of the frame": (
        lambda d: _track(d)["segmentations"][1].update(**_huge_rle(24 * 32 - 1)),
        "track 1 frame 1 has a bad RLE: its runs cover 767 pixels, but the mask has 768",
    ),
    "RLE runs beyond the frame": (
        lambda d: _track(d)["segmentations"][1].update(**_huge_rle(2**31)),
        "track 1 frame 1 has a bad RLE: it has a negative run length",
    ),
    "videos not a list": (lambda d: d.update(videos={"a": 1}), "'videos' must be a list"),
    "COCO file instead": (lambda d: d.clear() or d.update(images=[], annotations=[]), "not an ovformer result file"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_result_files_are_validated_on_load(tmp_path: Path, make_result: Callable, case: str) -> None:
    document = _valid_document(make_result)
    edit, expected = EXPORT_CASES[case]
    edit(document)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(document))  # json.dumps writes NaN / Infinity as Python does
    with pytest.raises(ResultsError) as excinfo:
        load_results(path)
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message, message
    assert expected in message, message


def test_duplicate_video_ids_in_one_file(tmp_path: Path, make_result: Callable) -> None:
    result, _ = make_result()
    path = tmp_path / "two.json"
    with pytest.raises(ValueError, match="video ids repeat"):
        write_result_json(path, [result, dataclasses.replace(result, video_name="again")])
    assert not path.exists()
    write_result_json(path, result)
    document = json.loads(path.read_text())
    document["videos"].append(dict(document["videos"][0], video_name="again"))
    path.write_text(json.dumps(document))
    with pytest.raises(ResultsError, match="video id 1 appears twice \\(videos 0 and 1\\)"):
        load_results(path)
    write_result_json(path, [result, dataclasses.replace(result, video_id=2)])
    assert [r.video_id for r in load_results(path)] == [1, 2]


def test_a_claimed_terabyte_mask_is_refused_before_anything_that_size_exists(
    tmp_path: Path, make_result: Callable
) -> None:
    import tracemalloc

    document = _valid_document(make_result)
    EXPORT_CASES["RLE claims a 1 TB mask"][0](document)
    path = _write(tmp_path / "r.json", document)
    tracemalloc.start()
    with pytest.raises(ResultsError):
        load_results(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * 2**20  # the file is tiny, and so is everything allocated to refuse it


def test_track_span_is_the_first_and_last_source_frame_with_pixels() -> None:
    masks = np.zeros((5, 8, 8), dtype=bool)
    masks[1, 2:4, 2:4] = masks[3, 0, 0] = True  # frames 0, 2 and 4 empty
    present = Track.from_masks(1, 0, "a", 1, 0.5, masks)
    absent = Track.from_masks(2, 0, "a", 1, 0.5, np.zeros((5, 8, 8), dtype=bool), empty_as_none=True)
    result = VideoResult(
        video_name="v",
        video_path="v.mp4",
        video_id=1,
        width=8,
        height=8,
        num_frames=5,
        fps=10.0,
        frame_indices=[0, 3, 6, 9, 12],  # every third source frame
        tracks=[present, absent],
        categories=[{"id": 1, "name": "a"}],
    )
    assert result.track_span(present) == (3, 9)
    assert result.track_span(absent) is None

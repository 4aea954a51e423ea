"""Corrections applied to results, and the reviewed copy: written next to the original, read like any result."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.errors import ReviewError
from ovformer_core.io.outputs import reviewed_original, reviewed_path
from ovformer_core.io.results import load_result, load_results, write_result_json
from ovformer_core.io.rle import decode_rle
from ovformer_core.view.review import Edit, ReviewConflict, apply_edits, parse_edits, save_review
from tests.view.conftest import CATEGORIES, box_masks, known_result


def test_reviewed_names():
    assert reviewed_path(Path("out/clip.json")) == Path("out/clip.reviewed.json")
    assert reviewed_original(Path("out/clip.reviewed.json")) == Path("out/clip.json")


def test_edits_apply_in_order():
    original = known_result("clip.mp4", "clip", (1, 2, 3, 4))
    edits = parse_edits(
        [
            {"op": "rename", "track_id": 3, "category_name": "  dog "},
            {"op": "rename", "track_id": 1, "category_name": "cat"},
            {"op": "merge", "track_id": 2, "into": 4},
            {"op": "delete", "track_id": 1},
        ]
    )
    reviewed = apply_edits(original, edits)
    assert original.tracks[2].category_name == "car"  # the original is untouched
    assert reviewed.categories == [*CATEGORIES, {"id": 4, "name": "cat"}]  # kept even once unused
    assert [t.track_id for t in reviewed.tracks] == [3, 4]
    car, dog = reviewed.tracks
    assert (car.label, car.category_name, car.category_id) == (1, "dog", 2)
    assert dog.score == pytest.approx(0.8)  # the higher of the two merged
    joined = box_masks(2) | box_masks(4)
    assert all(np.array_equal(decode_rle(rle), joined[t]) for t, rle in enumerate(dog.segmentations) if rle)
    assert [rle is None for rle in dog.segmentations] == [not joined[t].any() for t in range(10)]


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ([{"op": "delete", "track_id": 1}, {"op": "delete", "track_id": 1}], "edit 2: track 1 does not exist"),
        ([{"op": "merge", "track_id": 1, "into": 9}], "edit 1: track 9 does not exist"),
    ],
)
def test_edits_on_missing_tracks_are_refused(edits, message):
    with pytest.raises(ReviewError, match=message):
        apply_edits(known_result("clip.mp4", "clip", (1, 2)), parse_edits(edits))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"op": "delete"}, "edit 1: track ids are integers from 1"),
        ([{"op": "rename", "track_id": 1, "category_name": ""}], "1 to 200 characters"),
        ([{"op": "rename", "track_id": 1, "category_name": "x" * 201}], "1 to 200 characters"),
        ([{"op": "rename", "track_id": 1, "category_name": 5}], "must be text"),
        ([{"op": "delete", "track_id": True}], "integers from 1"),
        ([["delete", 1]], "must be an object"),
        ("delete", "must be a list"),
    ],
)
def test_malformed_edits_are_refused(data, message):
    with pytest.raises(ReviewError, match=message):
        parse_edits(data if isinstance(data, (list, str)) else [data])


def test_save_keeps_the_original_and_other_videos_and_counts_revisions(tmp_path: Path):
    original_path = tmp_path / "pair.json"
    first = known_result("a.mp4", "a", (1, 2, 3))
    second = dataclasses.replace(known_result("b.mp4", "b", (1, 2)), video_id=2)
    write_result_json(original_path, [first, second])
    before = original_path.read_bytes()
    saved = save_review(original_path, 1, [Edit("delete", 2)], base_revision=0)
    assert saved.path == tmp_path / "pair.reviewed.json" and saved.revision == 1 and saved.tracks == 1
    again = save_review(original_path, 0, [Edit("rename", 1, category_name="cat")], base_revision=0)
    assert again.revision == 1  # video 0 had no review yet
    videos = load_results(saved.path)
    assert [len(v.tracks) for v in videos] == [3, 1]
    assert videos[0].tracks[0].category_name == "cat" and videos[1].metadata["review"]["revision"] == 1
    with pytest.raises(ReviewConflict, match="revision 1, this page started from 0"):
        save_review(original_path, 1, [], base_revision=0)
    assert save_review(original_path, 1, [], base_revision=1).revision == 2
    assert len(load_results(saved.path)[1].tracks) == 2  # a review replaces the previous one
    assert original_path.read_bytes() == before


def test_an_unreadable_reviewed_copy_is_not_overwritten(tmp_path: Path):
    write_result_json(tmp_path / "clip.json", known_result("a.mp4", "clip", (1,)))
    (tmp_path / "clip.reviewed.json").write_text("{broken")
    with pytest.raises(ReviewConflict, match="clip.reviewed.json cannot be read"):
        save_review(tmp_path / "clip.json", 0, [], base_revision=0)
    assert (tmp_path / "clip.reviewed.json").read_text() == "{broken"


def test_export_reads_a_reviewed_result(tmp_path: Path):
    write_result_json(tmp_path / "clip.json", known_result("a.mp4", "clip", (1, 2, 3)))
    save_review(tmp_path / "clip.json", 0, [Edit("delete", 3)], base_revision=0)
    done = CliRunner().invoke(app, ["export", str(tmp_path / "clip.reviewed.json"), "--to", "ytvis", "-q"])
    assert done.exit_code == 0, done.output
    entries = json.loads((tmp_path / "clip.reviewed.ytvis.json").read_text())
    assert [e["track_id"] for e in entries] == [1, 2]
    assert load_result(tmp_path / "clip.reviewed.json").metadata["review"]["edits"] == [{"op": "delete", "track_id": 3}]

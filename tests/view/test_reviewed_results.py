"""A reviewed result is read like any result: ``evaluate`` scores it, ``dataset from-results`` trains on it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.errors import ResultsError, TrainingError
from ovformer_core.eval import evaluate
from ovformer_core.eval.results_check import load_results
from ovformer_core.io.results import load_result, write_result_json
from ovformer_core.io.rle import encode_rle
from ovformer_core.train.data import read_train_dataset, read_video_clip
from ovformer_core.view.review import Edit, save_review
from tests.conftest import identify
from tests.view.conftest import CATEGORIES, HEIGHT, NUM_FRAMES, WIDTH, box_masks, known_result, make_served

runner = CliRunner()
#: The corrections that turn the known result into the ground truth below.
REVIEW = [Edit("delete", 3), Edit("merge", 4, into=2)]


def ground_truth(path: Path) -> Path:
    """The person (track 1) and the dog, which the tracker split into tracks 2 and 4."""
    objects = [(1, box_masks(1)), (2, box_masks(2) | box_masks(4))]
    annotations = [
        {
            "id": n + 1,
            "video_id": 1,
            "category_id": category_id,
            "segmentations": [encode_rle(m) if m.any() else None for m in masks],
            "areas": [int(m.sum()) if m.any() else None for m in masks],
            "iscrowd": 0,
        }
        for n, (category_id, masks) in enumerate(objects)
    ]
    video = {"id": 1, "width": WIDTH, "height": HEIGHT, "length": NUM_FRAMES, "file_names": []}
    video["file_names"] = [f"clip/{i:05d}.jpg" for i in range(NUM_FRAMES)]
    path.write_text(json.dumps({"videos": [video], "annotations": annotations, "categories": CATEGORIES}))
    return path


def test_evaluate_scores_a_result_and_its_review(tmp_path: Path):
    gt = ground_truth(tmp_path / "gt.json")
    write_result_json(tmp_path / "clip.json", known_result("clip.mp4", "clip", (1, 2, 3, 4)))
    save_review(tmp_path / "clip.json", 0, REVIEW, base_revision=0)
    before = evaluate(gt, tmp_path / "clip.json", "ytvis").stats["AP"]
    after = evaluate(gt, tmp_path / "clip.reviewed.json", "ytvis").stats["AP"]
    assert before < 0.9 and after == pytest.approx(1.0)
    done = runner.invoke(
        app, ["evaluate", "--gt", str(gt), "--results", str(tmp_path / "clip.reviewed.json"), "-b", "ytvis", "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["stats"]["AP"] == pytest.approx(1.0)


def test_evaluate_refuses_a_result_of_some_frames_only(tmp_path: Path):
    result = known_result("clip.mp4", "clip", (1,))
    document = {"format": "ovformer-results", "version": 1, "videos": [result.to_dict()]}
    document["videos"][0]["frame_indices"] = [2 * i for i in range(NUM_FRAMES)]
    (tmp_path / "strided.json").write_text(json.dumps(document))
    with pytest.raises(
        ResultsError, match="not on every frame from the first; evaluate a result made without `stride`, start or end"
    ):
        load_results(tmp_path / "strided.json")
    document["version"] = 7
    (tmp_path / "future.json").write_text(json.dumps(document))
    with pytest.raises(ResultsError, match="result format version 7"):
        load_results(tmp_path / "future.json")


def test_a_reviewed_result_becomes_training_data(tmp_path: Path):
    served = make_served(tmp_path / "results")
    save_review(served.folder / "clip.json", 0, REVIEW, base_revision=0)
    reviewed = served.folder / "clip.reviewed.json"
    with pytest.raises(TrainingError, match="is an ovformer result, not training annotations; make them with"):
        read_train_dataset(reviewed, tmp_path)
    out = tmp_path / "train"
    done = runner.invoke(app, ["dataset", "from-results", str(reviewed), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"wrote 2 annotations of 1 videos -> {out / 'annotations.json'}" in done.stdout
    dataset = read_train_dataset(out / "annotations.json", out / "frames")
    assert dataset.category_names == ("person", "dog", "car") and len(dataset.videos) == 1
    video = dataset.videos[0]
    assert [i.category_idx for i in video.instances] == [0, 1]
    clip = read_video_clip(video, list(range(NUM_FRAMES)))
    assert np.array_equal(clip.masks[0], box_masks(1))
    assert np.array_equal(clip.masks[1], box_masks(2) | box_masks(4))
    assert [identify(frame) for frame in clip.frames] == list(range(NUM_FRAMES))  # the right frames, in order
    assert np.abs(clip.frames.astype(int) - served.frames.astype(int)).mean() < 2
    # the folder is made whole or not at all, and never overwritten
    again = runner.invoke(app, ["dataset", "from-results", str(reviewed), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    load_result(reviewed)  # still a valid result


def test_a_result_whose_video_is_gone_makes_no_training_folder(tmp_path: Path):
    served = make_served(tmp_path / "results")
    done = runner.invoke(
        app, ["dataset", "from-results", str(served.folder / "other.json"), "--out", str(tmp_path / "t")]
    )
    assert done.exit_code == 2 and "is not there; pass results whose videos exist" in done.stderr
    assert not (tmp_path / "t").exists() and [p.name for p in tmp_path.iterdir()] == ["results"]


def test_a_result_is_matched_to_its_ground_truth_video_by_name(tmp_path: Path):
    """`segment` numbers its inputs 1, 2, ...: a result of "clip" is scored against the GT video "clip"."""
    gt_data = json.loads(ground_truth(tmp_path / "one.json").read_text())
    clip = gt_data["videos"][0]
    other = {**clip, "id": 1, "name": "other", "file_names": [f"other/{i:05d}.jpg" for i in range(NUM_FRAMES)]}
    gt_data["videos"] = [other, {**clip, "id": 7}]  # "clip" (named by its frame folder) is video 7
    for annotation in gt_data["annotations"]:
        annotation["video_id"] = 7
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(gt_data))
    write_result_json(tmp_path / "clip.json", known_result("clip.mp4", "clip", (1, 2, 3, 4)))  # video id 1
    save_review(tmp_path / "clip.json", 0, REVIEW, base_revision=0)
    assert evaluate(gt, tmp_path / "clip.reviewed.json", "ytvis").stats["AP"] == pytest.approx(1.0)
    with open(tmp_path / "clip.reviewed.json") as handle:  # the Python API's parsed document too
        assert evaluate(gt, json.load(handle), "ytvis").stats["AP"] == pytest.approx(1.0)

    # Without names in the ground truth, ids are all there is: result video 1 is GT video 1.
    for video in gt_data["videos"]:
        video.pop("name", None)
        video["file_names"] = [f"{i:05d}.jpg" for i in range(NUM_FRAMES)]
    gt.write_text(json.dumps(gt_data))
    assert evaluate(gt, tmp_path / "clip.reviewed.json", "ytvis").stats["AP"] == 0.0


def test_two_results_scored_as_one_ground_truth_video_are_refused(tmp_path: Path):
    gt_data = json.loads(ground_truth(tmp_path / "one.json").read_text())
    clip = gt_data["videos"][0]
    other = {**clip, "id": 1, "file_names": [f"other/{i:05d}.jpg" for i in range(NUM_FRAMES)]}
    gt_data["videos"] = [other, {**clip, "id": 7}]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(gt_data))
    clip_result = known_result("clip.mp4", "clip", (1, 2))  # id 1, matched by name to 7
    stranger = dataclasses.replace(known_result("zzz.mp4", "zzz", (3,)), video_id=7)  # not in the GT: id 7
    write_result_json(tmp_path / "both.json", [clip_result, stranger])
    with pytest.raises(ResultsError, match="would both be scored as ground-truth video 7"):
        evaluate(gt, tmp_path / "both.json", "ytvis")

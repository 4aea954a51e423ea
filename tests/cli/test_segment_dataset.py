"""Whole-split inference: resumable, and torchrun with 2 CPU processes gives the single-process results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.inference.dataset import read_dataset, segment_split
from ovformer_core.predictor import load_model
from tests.conftest import synthetic_frame, write_image

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def make_split(root: Path, lengths: tuple[int, ...] = (4, 6, 3)) -> Path:
    videos = []
    for video_id, length in enumerate(lengths, start=1):
        names = []
        for t in range(length):
            name = f"{video_id:05d}/{t:05d}.png"
            (root / "frames" / f"{video_id:05d}").mkdir(parents=True, exist_ok=True)
            write_image(root / "frames" / name, synthetic_frame(t + 7 * video_id, 40, 56))
            names.append(name)
        videos.append({"id": video_id * 10, "width": 56, "height": 40, "length": length, "file_names": names})
    # ids that are not 1..C: results must carry the dataset's own ids
    categories = [{"id": i, "name": n} for i, n in zip((3, 7, 9), ["person", "dog", "traffic_light"], strict=True)]
    gt = root / "gt.json"
    gt.write_text(json.dumps({"videos": videos, "categories": categories, "annotations": []}))
    return gt


def split_args(weights: dict[str, Path], gt: Path, root: Path, results: Path) -> list[str]:
    return [
        "segment", "--dataset", str(gt), "--frames-root", str(root / "frames"), "--results", str(results),
        "--weights", str(weights["model"]), "--clip-weights", str(weights["clip"]), "--device", "cpu",
        "--min-size", "64", "--top-k", "4", "--quiet",
    ]  # fmt: skip


def test_split_results_and_resume(tmp_path: Path, weights):
    gt = make_split(tmp_path)
    results = tmp_path / "out" / "results.json"
    outcome = runner.invoke(app, split_args(weights, gt, tmp_path, results))
    assert outcome.exit_code == 0, outcome.output
    entries = json.loads(results.read_text())
    assert len(entries) == 3 * 4
    assert [e["video_id"] for e in entries] == [10] * 4 + [20] * 4 + [30] * 4
    assert {len(e["segmentations"]) for e in entries if e["video_id"] == 20} == {6}
    assert {e["category_id"] for e in entries} <= {3, 7, 9}

    # resume: only the video whose part is missing is processed again
    (tmp_path / "out" / "results.json.parts" / "20.json").unlink()
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", allow_download=False)
    seen: list[tuple[int, bool]] = []
    segment_split(
        predictor, read_dataset(gt), tmp_path / "frames", results, rank=0, world_size=1,
        options=predictor.options.__class__(**{**predictor.options.__dict__, "top_k": 4, "min_size": 64,
                                               "score_threshold": 0.0}),
        on_video=lambda video, skipped: seen.append((video.video_id, skipped)),
    )  # fmt: skip
    assert seen == [(10, True), (20, False), (30, True)]


def test_bad_dataset_is_one_line(tmp_path: Path, weights):
    bad = tmp_path / "gt.json"
    bad.write_text('{"videos": [{"id": 1}], "categories": [{"id": 1, "name": "x"}]}')
    (tmp_path / "frames").mkdir()
    outcome = runner.invoke(app, split_args(weights, bad, tmp_path, tmp_path / "r.json"))
    assert outcome.exit_code == 2
    assert "videos[0] (id 1) has no 'file_names'" in outcome.output
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path: Path, weights):
    gt = make_split(tmp_path)
    # both runs with one thread per process, so float rounding is the same and the files must be equal
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    single = tmp_path / "single" / "results.json"
    alone = subprocess.run(
        [sys.executable, "-m", "ovformer_cli", *split_args(weights, gt, tmp_path, single)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-3000:]
    double = tmp_path / "double" / "results.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "ovformer_cli", *split_args(weights, gt, tmp_path, double),
    ]  # fmt: skip
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert double.read_text() == single.read_text()


def test_an_unusable_results_folder_names_the_flag_it_came_from(tmp_path: Path, weights):
    gt = make_split(tmp_path, lengths=(2,))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    given = runner.invoke(app, split_args(weights, gt, tmp_path, blocker / "r.json"))
    assert given.exit_code == 2 and "is a file; choose a folder with --results" in given.output
    args = split_args(weights, gt, tmp_path, blocker / "r.json")
    at = args.index("--results")
    args[at : at + 2] = ["--out-dir", str(blocker)]
    default = runner.invoke(app, args)
    assert default.exit_code == 2 and "is a file; choose a folder with --out-dir" in default.output
    assert blocker.read_text() == "x"


def test_parts_of_another_run_are_not_reused(tmp_path: Path, weights):
    """A part is reused only for the same frames, categories, model and options; others run again."""
    first = make_split(tmp_path / "a", lengths=(2, 3))
    second = make_split(tmp_path / "b", lengths=(3, 2))  # the same video ids, other frames
    results = tmp_path / "out" / "results.json"
    for gt, root in ((first, tmp_path / "a"), (second, tmp_path / "b")):
        assert runner.invoke(app, split_args(weights, gt, root, results)).exit_code == 0
    fresh = tmp_path / "fresh" / "results.json"
    assert runner.invoke(app, split_args(weights, second, tmp_path / "b", fresh)).exit_code == 0
    assert results.read_text() == fresh.read_text()
    assert {(e["video_id"], len(e["segmentations"])) for e in json.loads(results.read_text())} == {(10, 3), (20, 2)}

    # other options: every part is made again, with the new top-k
    args = split_args(weights, second, tmp_path / "b", results)
    args[args.index("--top-k") + 1] = "2"
    assert runner.invoke(app, args).exit_code == 0
    assert len(json.loads(results.read_text())) == 2 * 2

    # a part without a key (as older versions wrote them) is made again, not merged
    part = tmp_path / "out" / "results.json.parts" / "10.json"
    part.write_text(json.dumps([{"video_id": 10, "category_id": 3, "score": 1.0, "segmentations": [None]}]))
    assert runner.invoke(app, args).exit_code == 0
    assert {len(e["segmentations"]) for e in json.loads(results.read_text()) if e["video_id"] == 10} == {3}


@pytest.mark.parametrize(
    "extra", [["--threshold", "0.5"], ["-f", "mots"], ["--vocab", "cat"], ["--stride", "2"], ["--json"]]
)
def test_options_a_split_run_ignores_are_refused(tmp_path: Path, weights, extra: list[str]):
    gt = make_split(tmp_path, lengths=(2,))
    results = tmp_path / "out" / "results.json"
    outcome = runner.invoke(app, [*split_args(weights, gt, tmp_path, results), *extra])
    assert outcome.exit_code == 2, outcome.output
    assert f"{extra[0].replace('-f', '--format')} cannot be used with --dataset" in outcome.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["corrupt_frame", "declared_size", "results_folder"])
def test_a_bad_split_stops_before_any_video_is_segmented(tmp_path: Path, weights, damage: str):
    gt = make_split(tmp_path, lengths=(2, 2, 2))
    results = tmp_path / "out" / "results.json"
    if damage == "corrupt_frame":  # in the last video: found before the first is segmented
        (tmp_path / "frames" / "00003" / "00001.png").write_text("not an image")
        expected = "00003/00001.png is"
    elif damage == "declared_size":
        data = json.loads(gt.read_text())
        data["videos"][2]["width"] = 100
        gt.write_text(json.dumps(data))
        expected = "video 30 is 100x40 (width x height) in the dataset file but its frames are 56x40"
    else:
        results.mkdir(parents=True)
        expected = f"{results} is a folder; give the results file's own name"
    outcome = runner.invoke(app, split_args(weights, gt, tmp_path, results))
    assert outcome.exit_code == 2, outcome.output  # nothing was done
    assert expected in " ".join(outcome.output.split()), outcome.output
    assert not (tmp_path / "out" / "results.json.parts").exists()
    assert not results.is_file()


def test_a_copy_of_the_frames_elsewhere_reuses_the_parts(tmp_path: Path, weights):
    """Parts name frames by dataset name and size: another machine's copy (new path, new times) matches."""
    import shutil

    gt = make_split(tmp_path, lengths=(2, 3))
    results = tmp_path / "out" / "results.json"
    assert runner.invoke(app, split_args(weights, gt, tmp_path, results)).exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "frames", copy / "frames", copy_function=shutil.copy)  # times not kept
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", allow_download=False)
    options = predictor.options.updated(top_k=4, min_size=64, score_threshold=0.0)
    seen: list[tuple[int, bool]] = []
    segment_split(
        predictor, read_dataset(gt), copy / "frames", results, options=options,
        on_video=lambda video, skipped: seen.append((video.video_id, skipped)),
    )  # fmt: skip
    assert seen == [(10, True), (20, True)]

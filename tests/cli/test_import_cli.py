"""The annotation-tool round trip from the command line: segment/export to CVAT, MOTS and Datumaro; import
back into a dataset that `evaluate --gt` scores and `train` fine-tunes on; bad files as one line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.io.cvat_video import write_cvat_video
from ovformer_core.io.results import load_result, write_result_json
from ovformer_core.io.track_dataset import results_from_dataset
from tests.cli.test_segment_cli import segment_args
from tests.conftest import write_video
from tests.io.track_fixtures import synthetic_result
from tests.train.conftest import tiny_train_overrides

runner = CliRunner()
FORMATS = ("cvat-video", "mots", "datumaro")


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_segment_writes_the_annotation_tool_zips(tmp_path: Path, weights: dict[str, Path]) -> None:
    video = tmp_path / "clip.mp4"
    write_video(video, num_frames=3, height=48, width=64)
    out = tmp_path / "out"
    args = segment_args(weights, str(video), "-o", str(out), "-f", "cvat-video", "-f", "mots", "-f", "datumaro")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "clip.cvat-video.zip",
        "clip.datumaro.zip",
        "clip.json",
        "clip.mots.zip",
    ]
    saved = load_result(out / "clip.json")
    xml = zipfile.ZipFile(out / "clip.cvat-video.zip").read("annotations.xml").decode()
    assert "<size>3</size>" in xml and "<width>64</width>" in xml and "<source>clip.mp4</source>" in xml
    imported = tmp_path / "data.json"
    result = runner.invoke(app, ["import", str(out / "clip.datumaro.zip"), "--from", "datumaro", "-o", str(imported)])
    assert result.exit_code == 0, result.output
    dataset = json.loads(imported.read_text())
    shown = [t for t in saved.tracks if any(rle is not None and "counts" in rle for rle in t.segmentations)]
    assert len(dataset["annotations"]) <= len(shown) and dataset["videos"][0]["length"] == 3


def test_export_import_and_evaluate_the_ground_truth(tmp_path: Path) -> None:
    result = synthetic_result()
    source = tmp_path / "clip.json"
    write_result_json(source, result)
    args = ["export", str(source), "-o", str(tmp_path / "out"), "--to", "ytvis"]
    for fmt in FORMATS:
        args += ["--to", fmt]
    exported = runner.invoke(app, args)
    assert exported.exit_code == 0, exported.output
    for fmt in FORMATS:
        dataset = tmp_path / f"{fmt}.json"
        imported = runner.invoke(
            app,
            [
                "import",
                str(tmp_path / "out" / f"clip.{fmt}.zip"),
                "--from",
                fmt,
                "-o",
                str(dataset),
                "--vocab",
                "cat,dog,person,car",
            ],
        )
        assert imported.exit_code == 0, imported.output
        assert imported.stdout.startswith(f"wrote {dataset}: 1 video(s), 7 frames, ")
        # the ovformer results themselves, scored against what came back: every track is found
        metrics = runner.invoke(
            app,
            [
                "evaluate",
                "--gt",
                str(dataset),
                "--results",
                str(tmp_path / "out" / "clip.ytvis.json"),
                "-b",
                "ytvis",
                "--json",
                "-q",
            ],
        )
        assert metrics.exit_code == 0, metrics.output
        stats = json.loads(metrics.stdout)["stats"]
        if fmt == "mots":
            assert 0 < stats["AP"] < 1  # one object per pixel: the overlaps are gone from the ground truth
        else:
            assert stats["AP"] == pytest.approx(1.0)


def _bad_cvat(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "bad.cvat-video.zip"
    write_cvat_video(path, synthetic_result())
    xml = zipfile.ZipFile(path).read("annotations.xml").decode()
    assert old in xml
    path.unlink()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.xml", xml.replace(old, new, 1))
    return path


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "cut.mots.zip"
    from ovformer_core.io.mots import write_mots

    write_mots(path, synthetic_result())
    path.write_bytes(path.read_bytes()[:-40])
    return path


def _collision(tmp_path: Path) -> Path:
    from ovformer_core.io.png_masks import encode_png

    image = np.zeros((4, 4), dtype=np.uint16)
    image[0, 0], image[3, 3] = 1002, 2002
    path = tmp_path / "ids.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("default/instances/frame_000000.png", encode_png(image))
        archive.writestr("default/instances/labels.txt", "cat\ndog\n")
    return path


@pytest.mark.parametrize(
    ("case", "fmt", "extra", "needle"),
    [
        (
            lambda p: _bad_cvat(p, '<track id="2" label="dog"', '<track id="2" label="wolf"'),
            "cvat-video",
            [],
            "bad.cvat-video.zip:annotations.xml: track 2 has label 'wolf', which the file does not declare",
        ),
        (
            lambda p: _bad_cvat(p, 'left="', 'left="16'),
            "cvat-video",
            [],
            "bad.cvat-video.zip:annotations.xml track 1 frame 4: mask box left=16",
        ),
        (_collision, "mots", [], "ids.zip:default/instances/frame_000000.png: instance id 2 is both 'cat' and 'dog'"),
        (_truncated, "mots", [], "cut.mots.zip is not a complete zip archive"),
        (
            lambda p: _bad_cvat(p, "<frame_filter>step=3", "<frame_filter>step=3"),
            "cvat-video",
            ["--vocab", "cat,dog"],
            "label 'person' (track 7 of clip) is not in the vocabulary",
        ),
        (lambda p: p / "missing.zip", "datumaro", [], "missing.zip does not exist"),
        (lambda p: _truncated(p), "datumaro", ["--frame-pattern", "{video}/{name}"], "frame pattern"),
    ],
)
def test_bad_files_are_one_line_and_leave_no_dataset(
    tmp_path: Path, case: Any, fmt: str, extra: list[str], needle: str
) -> None:
    source = case(tmp_path)
    dataset = tmp_path / "data.json"
    message = _one_line_error(runner.invoke(app, ["import", str(source), "--from", fmt, "-o", str(dataset), *extra]))
    assert needle in message
    assert not dataset.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".data.json")]


def test_fine_tune_on_a_dataset_imported_from_cvat(shapes: dict[str, Path], tmp_path: Path) -> None:
    # The shapes videos as if pre-annotated, exported to CVAT for video (one task per video), and back.
    original = json.loads(shapes["json"].read_text())
    for video in original["videos"]:
        video["name"] = f"v{video['id']}"
    exports = []
    for result in results_from_dataset(original):
        exports.append(tmp_path / f"{result.video_name}.cvat-video.zip")
        write_cvat_video(exports[-1], result)
    dataset = tmp_path / "train.json"
    names = "red square,green disk,blue bar"
    args = ["import", *map(str, exports), "--from", "cvat-video", "-o", str(dataset), "--vocab", names]
    imported = runner.invoke(app, [*args, "--frame-pattern", "{video}/{frame:05d}.png"])
    assert imported.exit_code == 0, imported.output
    data = json.loads(dataset.read_text())
    assert [v["file_names"] for v in data["videos"]] == [v["file_names"] for v in original["videos"]]
    assert [c["name"] for c in data["categories"]] == names.split(",")
    assert [a["segmentations"] for a in data["annotations"]] == [a["segmentations"] for a in original["annotations"]]

    config = tmp_path / "run.json"
    run = tmp_path / "run"
    overrides = tiny_train_overrides({**shapes, "json": dataset}, run)
    config.write_text(json.dumps(overrides))
    trained = runner.invoke(app, ["train", "-c", str(config), "--set", "optim.max_iter=1", "-q"])
    assert trained.exit_code == 0, trained.output
    assert trained.stdout.strip() == f"finished 1 iterations; model {run / 'model_final.pth'}"


def test_several_results_become_one_dataset_where_the_format_allows(tmp_path: Path, weights: dict[str, Path]) -> None:
    for name, frames in (("a", 3), ("b", 4)):
        write_video(tmp_path / f"{name}.mp4", num_frames=frames, height=48, width=64)
    out = tmp_path / "out"
    ran = runner.invoke(app, segment_args(weights, str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "-o", str(out)))
    assert ran.exit_code == 0, ran.output
    both = [str(out / "a.json"), str(out / "b.json")]
    exported = runner.invoke(
        app, ["export", *both, "--to", "datumaro", "--to", "ytvis", "--to", "cvat-video", "-o", str(tmp_path / "x")]
    )
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "a.cvat-video.zip",  # a CVAT task holds one video
        "b.cvat-video.zip",
        "combined.datumaro.zip",
        "combined.ytvis.json",
    ]
    assert {entry["video_id"] for entry in json.loads((tmp_path / "x" / "combined.ytvis.json").read_text())} <= {1, 2}
    imported = tmp_path / "data.json"
    back = runner.invoke(
        app, ["import", str(tmp_path / "x" / "combined.datumaro.zip"), "--from", "datumaro", "-o", str(imported)]
    )
    assert back.exit_code == 0, back.output
    assert sorted((v["name"], v["length"]) for v in json.loads(imported.read_text())["videos"]) == [("a", 3), ("b", 4)]

    # Two separate runs both number their video 1: one YouTube-VIS list cannot hold both.
    again = runner.invoke(app, segment_args(weights, str(tmp_path / "b.mp4"), "-o", str(tmp_path / "other")))
    assert again.exit_code == 0, again.output
    clash = runner.invoke(
        app, ["export", both[0], str(tmp_path / "other" / "b.json"), "--to", "ytvis", "-o", str(tmp_path / "y")]
    )
    assert "two videos have the video id 1" in _one_line_error(clash)
    assert not (tmp_path / "y").exists() or list((tmp_path / "y").iterdir()) == []

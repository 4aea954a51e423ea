"""`ovformer dataset drop-rare | drop-novel | cat-info | split-results`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_cli.exit_status import EXIT_USER_ERROR
from tests.eval.eval_cases import EVAL_CASES

runner = CliRunner()


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_drop_rare_default_name(tmp_path: Path) -> None:
    ann = _write(
        tmp_path / "lvis_v1_train.json",
        {
            "categories": [{"id": 1, "frequency": "r"}, {"id": 2, "frequency": "f"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 1, "category_id": 2}],
        },
    )
    result = runner.invoke(app, ["dataset", "drop-rare", str(ann)])
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "lvis_v1_train_norare.json").read_text())
    assert [a["id"] for a in out["annotations"]] == [2]
    assert "kept 1 of 2 annotations" in result.stdout


def test_drop_novel_official_name_and_cat_info(tmp_path: Path) -> None:
    gt = json.loads((EVAL_CASES / "case1_small" / "gt.json").read_text())
    ann = _write(tmp_path / "train_instances_.json", gt)
    assert runner.invoke(app, ["dataset", "drop-novel", str(ann), "-q"]).exit_code == 0
    filtered = json.loads((tmp_path / "train_instances_nonovel.json").read_text())
    novel = {c["id"] for c in gt["categories"] if c["partition"] in (2, 3)}
    kept = [a for a in gt["annotations"] if a["category_id"] not in novel]
    assert [a["id"] for a in filtered["annotations"]] == [a["id"] for a in kept] and len(kept) < len(gt["annotations"])

    info_path = tmp_path / "cat_info.json"
    result = runner.invoke(
        app, ["dataset", "cat-info", str(tmp_path / "train_instances_nonovel.json"), "-o", str(info_path), "--add-freq"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(info_path.read_text())
    assert len(info) == len(gt["categories"])
    assert all(c["frequency"] == "n" and c["image_count"] == 0 for c in info if c["id"] in novel)
    assert any(c["frequency"] == "b" and c["image_count"] > 0 for c in info)


def test_split_results(tmp_path: Path) -> None:
    case = EVAL_CASES / "case1_small"
    base, novel = tmp_path / "base.json", tmp_path / "novel.json"
    args = ["--gt", str(case / "gt.json"), "--results", str(case / "results.json")]
    result = runner.invoke(app, ["dataset", "split-results", *args, "--base-out", str(base), "--novel-out", str(novel)])
    assert result.exit_code == 0, result.output
    results = json.loads((case / "results.json").read_text())
    partition = {c["id"]: c["partition"] for c in json.loads((case / "gt.json").read_text())["categories"]}
    assert len(json.loads(base.read_text())) + len(json.loads(novel.read_text())) == len(results)
    assert all(partition[r["category_id"]] in (0, 1) for r in json.loads(base.read_text()))
    assert all(partition[r["category_id"]] in (2, 3) for r in json.loads(novel.read_text()))


def test_bad_dataset_file(tmp_path: Path) -> None:
    ann = _write(tmp_path / "x.json", {"annotations": []})
    result = runner.invoke(app, ["dataset", "drop-rare", str(ann)])
    assert result.exit_code == EXIT_USER_ERROR
    assert "no 'categories' list" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]

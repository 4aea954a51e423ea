"""`ovformer evaluate` on the reference cases: table, JSON, metrics file, warnings, clean failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_cli.exit_status import EXIT_FAILED, EXIT_USER_ERROR
from tests.eval.eval_cases import EVAL_CASES

runner = CliRunner()
CASE1 = EVAL_CASES / "case1_small"


def _run(*args: str | Path):  # noqa: ANN202
    return runner.invoke(app, ["evaluate", *map(str, args)])


def test_table_and_metrics_file(tmp_path: Path) -> None:
    out = tmp_path / "metrics" / "burst.json"
    result = _run("--gt", CASE1 / "gt.json", "--results", CASE1 / "results.json", "--benchmark", "burst", "--out", out)
    assert result.exit_code == 0, result.output
    expected = json.loads((CASE1 / "expected.json").read_text())["burst"]
    metrics = json.loads(out.read_text())
    assert metrics["benchmark"] == "burst"
    assert list(metrics["stats"].values()) == pytest.approx(expected["stats"], abs=1e-12)
    assert metrics["groups"]["uncommon"]["AP"] == pytest.approx(expected["group_stats"]["uncommon"][0], abs=1e-12)
    for text in ("AP75", "AR_large", "common (3)", "uncommon (2)", f"{expected['stats'][0]:.3f}", "n/a"):
        assert text in result.stdout, text
    assert [p.name for p in out.parent.iterdir()] == ["burst.json"]  # no temporary file left


def test_json_output_and_quiet() -> None:
    args = ["--gt", CASE1 / "gt.json", "--results", CASE1 / "results.json", "-b", "lvvis"]
    printed = _run(*args, "--json")
    assert printed.exit_code == 0
    metrics = json.loads(printed.stdout)
    expected = json.loads((CASE1 / "expected.json").read_text())["lvvis"]
    assert metrics["stats"]["AP"] == pytest.approx(expected["stats"][0], abs=1e-12)
    assert set(metrics["groups"]) == {"base", "novel"}
    quiet = _run(*args, "--quiet")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_empty_results_warn_and_still_write(tmp_path: Path) -> None:
    case = EVAL_CASES / "case5_empty_results"
    out = tmp_path / "m.json"
    result = _run("--gt", case / "gt.json", "--results", case / "results.json", "-b", "ytvis", "-o", out)
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "results are empty" in result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["stats"]["AP"] == 0.0 and metrics["stats"]["AP_large"] == -1.0
    assert metrics["warnings"]


def test_bad_results_fail_cleanly(tmp_path: Path) -> None:
    results = json.loads((CASE1 / "results.json").read_text())
    results[3]["score"] = None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(results))
    out = tmp_path / "metrics.json"
    result = _run("--gt", CASE1 / "gt.json", "--results", bad, "-b", "ytvis", "--out", out)
    assert result.exit_code == EXIT_USER_ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: results entry 3: score None")
    assert "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_missing_ground_truth_and_unknown_benchmark(tmp_path: Path) -> None:
    missing = _run("--gt", tmp_path / "nope.json", "--results", CASE1 / "results.json", "-b", "ytvis")
    assert missing.exit_code == EXIT_USER_ERROR
    assert "ground truth file" in missing.stderr and "does not exist" in missing.stderr
    wrong = _run("--gt", CASE1 / "gt.json", "--results", CASE1 / "results.json", "-b", "coco")
    assert wrong.exit_code != 0 and "coco" in wrong.output


def test_running_out_of_memory_is_one_line_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*args: object, **kwargs: object) -> None:
        # What numpy raises when an allocation fails (its _ArrayMemoryError is a MemoryError).
        raise MemoryError("Unable to allocate 8.16 MiB for an array with shape (1069980,)")

    monkeypatch.setattr("ovformer_core.eval.ytvis.accumulate", no_memory)
    out = tmp_path / "metrics.json"
    result = _run("--gt", CASE1 / "gt.json", "--results", CASE1 / "results.json", "-b", "ytvis", "--out", out)
    assert result.exit_code == EXIT_FAILED
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ran out of memory"), result.output
    assert list(tmp_path.iterdir()) == []

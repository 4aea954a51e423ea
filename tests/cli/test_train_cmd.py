"""``ovformer train``: printing recipes, one-line failures for bad configs, and --set overrides in a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.train.config import RECIPES, config_from_overrides, recipe
from tests.train.conftest import tiny_train_overrides

runner = CliRunner()


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    return lines[0]


@pytest.mark.parametrize("name", RECIPES)
def test_print_config_round_trips_to_the_recipe(name: str) -> None:
    result = runner.invoke(app, ["train", "--print-config", name])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["recipe"] == name
    assert config_from_overrides(printed) == recipe(name)
    assert printed["optim"]["lr"] == 1e-4 and printed["run"]["batch_size"] == 8


def test_print_config_of_an_unknown_recipe() -> None:
    message = _one_line_error(runner.invoke(app, ["train", "--print-config", "r101-lvvis"]))
    assert "r101-lvvis" in message and "r50-lvvis" in message


def test_no_config_gives_a_hint() -> None:
    message = _one_line_error(runner.invoke(app, ["train"]))
    assert "--config" in message and "--print-config" in message


def test_missing_config_file(tmp_path: Path) -> None:
    message = _one_line_error(runner.invoke(app, ["train", "-c", str(tmp_path / "nope.json")]))
    assert "nope.json" in message and "does not exist" in message
    assert "(or start from a recipe's config, `ovformer train --print-config r50-lvvis`)" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"recipe": "r50-lvvis", "run": {', "not valid JSON"),
        ("[]", "JSON object"),
        ('{"recipe": "r50-lvvis", "optim": {"learning_rate": 0.1}}', "learning_rate"),
        ('{"recipe": "resnet"}', "resnet"),
        ('{"recipe": "r50-lvvis"}', "data.train_json"),  # parses, then fails the config check
        ('{"optim": {"lr": -1}}', "learning rate"),
    ],
)
def test_bad_config_files_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(text)
    assert needle in _one_line_error(runner.invoke(app, ["train", "-c", str(path)]))


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["optim.max_iter"], "KEY=VALUE"),
        (["optim.max_iters=3"], "max_iters"),
        (["run.batch_size=3", "run.micro_batch_size=2"], "run.micro_batch_size"),
        (["optim.lr.value=3"], "lr is not a config section"),
        (["run=3"], "RunConfig"),
    ],
)
def test_bad_overrides_are_one_line(shapes: dict[str, Path], tmp_path: Path, overrides: list[str], needle: str):
    config = _write(tmp_path / "run.json", tiny_train_overrides(shapes, tmp_path / "run"))
    args = ["train", "-c", str(config)]
    for text in overrides:
        args += ["--set", text]
    assert needle in _one_line_error(runner.invoke(app, args))
    assert not (tmp_path / "run").exists()


def test_overrides_reach_the_run(shapes: dict[str, Path], tmp_path: Path) -> None:
    # The file asks for 6 iterations into "from_file"; --set changes both.
    config = _write(tmp_path / "run.json", tiny_train_overrides(shapes, tmp_path / "from_file"))
    output_dir = tmp_path / "from_set"
    args = ["train", "-c", str(config), "--set", "optim.max_iter=2", "--set", f"run.output_dir={output_dir}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"finished 2 iterations; model {output_dir / 'model_final.pth'}"
    logged = [line for line in result.stderr.splitlines() if line.startswith("iter ")]
    assert [line.split()[1] for line in logged] == ["1", "2"] and "loss" in logged[0]
    saved = json.loads((output_dir / "config.json").read_text())
    assert saved["optim"]["max_iter"] == 2 and saved["run"]["output_dir"] == str(output_dir)
    assert saved["optim"]["steps"] == [1000]  # the rest of the file still applies
    assert (output_dir / "model_final.pth").is_file()
    assert not (tmp_path / "from_file").exists()

    # The same command again refuses to overwrite the run; --resume finds it finished.
    message = _one_line_error(runner.invoke(app, args))
    assert "--resume" in message
    again = runner.invoke(app, [*args, "--resume", "--quiet"])
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("finished 2 iterations") and again.stderr == ""


def test_set_a_value_of_the_wrong_type_is_one_line(shapes: dict[str, Path], tmp_path: Path) -> None:
    # Today: a ValueError traceback (exit 1) once the run starts, because config values are not type-checked.
    config = _write(tmp_path / "run.json", tiny_train_overrides(shapes, tmp_path / "run"))
    result = runner.invoke(app, ["train", "-c", str(config), "--set", "run.seed=abc"])
    assert "seed" in _one_line_error(result)
    assert not (tmp_path / "run").exists()


def test_set_a_numeric_directory_name_is_no_traceback(
    shapes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--set run.output_dir=2024` parses as the JSON number 2024. Either the run goes to ./2024 or a
    # one-line error explains the quoting; today it is a TypeError traceback (exit 1).
    monkeypatch.chdir(tmp_path)
    config = _write(tmp_path / "run.json", tiny_train_overrides(shapes, tmp_path / "run"))
    args = ["train", "-c", str(config), "-q", "--set", "optim.max_iter=1", "--set", "run.output_dir=2024"]
    result = runner.invoke(app, args)
    if result.exit_code == 0:
        assert (tmp_path / "2024" / "model_final.pth").is_file()
    else:
        assert "output_dir" in _one_line_error(result)

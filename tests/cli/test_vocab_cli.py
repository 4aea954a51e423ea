"""``ovformer vocab-encode``: round trip with a tiny random CLIP, and clean one-line failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.model.clip import ClipTextEncoderFactory
from ovformer_core.vocab import DEFAULT_TEMPLATES, Vocabulary, load_vocabulary
from tests.clip_fixtures import save_safetensors, tiny_clip

runner = CliRunner()


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_safetensors(tiny_clip(seed=0), tmp_path_factory.mktemp("clip") / "tiny.safetensors")


@pytest.fixture
def classes_txt(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("# test classes\nperson\ndog, puppy\ntraffic_light\n")
    return path


def _one_line_error(result: object) -> str:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    return lines[0]


def test_round_trip(tmp_path: Path, classes_txt: Path, clip_weights: Path) -> None:
    out = tmp_path / "classes.vocab"
    result = runner.invoke(app, ["vocab-encode", str(classes_txt), "-o", str(out), "--clip-weights", str(clip_weights)])
    assert result.exit_code == 0, result.output
    assert "3 classes" in result.stdout
    saved = Vocabulary.load(out)
    direct = load_vocabulary(classes_txt, ClipTextEncoderFactory(clip_weights))
    assert saved.names == ("person", "dog", "traffic light")
    assert saved.synonyms[1] == ("dog", "puppy") and saved.templates == DEFAULT_TEMPLATES
    assert saved.clip_model_id == ClipTextEncoderFactory(clip_weights).identity
    torch.testing.assert_close(saved.text_classifier(), direct.text_classifier(), rtol=0, atol=1e-7)
    # The saved file is itself a valid INPUT (re-encoded from its names and synonyms).
    again = tmp_path / "again.vocab"
    result = runner.invoke(
        app, ["vocab-encode", str(out), "-o", str(again), "--clip-weights", str(clip_weights), "--quiet"]
    )
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    torch.testing.assert_close(Vocabulary.load(again).embeddings, saved.embeddings, rtol=0, atol=1e-7)


def test_templates_and_inline_list(tmp_path: Path, clip_weights: Path) -> None:
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\n")
    out = tmp_path / "inline.vocab"
    args = ["vocab-encode", "person,dog", "-o", str(out), "--clip-weights", str(clip_weights), "-q"]
    assert runner.invoke(app, [*args, "--templates", str(templates)]).exit_code == 0
    one = Vocabulary.load(out)
    assert one.names == ("person", "dog") and one.templates == ("a photo of a {}.",)
    assert runner.invoke(app, args).exit_code == 0
    assert not torch.allclose(Vocabulary.load(out).embeddings, one.embeddings, atol=1e-4)


def test_bad_inputs_fail_cleanly(tmp_path: Path, classes_txt: Path, clip_weights: Path) -> None:
    corrupt = tmp_path / "corrupt.vocab"
    corrupt.write_bytes(b"\x00\x01 not a vocabulary")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"videos": []}))
    bad_weights = tmp_path / "bad.pt"
    bad_weights.write_bytes(b"junk")
    bad_templates = tmp_path / "templates.txt"
    bad_templates.write_text("no placeholder\n")
    weights = ["--clip-weights", str(clip_weights)]
    cases = [
        ([str(corrupt), *weights], "corrupt"),
        ([str(foreign), *weights], "categories"),
        ([str(tmp_path / "missing.txt"), *weights], "does not exist"),
        (["dog,cat,Dog", *weights], "appears twice"),
        ([str(classes_txt), "--clip-weights", str(bad_weights)], "cannot read CLIP weights"),
        ([str(classes_txt), "--clip-weights", str(tmp_path / "nope.pt")], "not found"),
        ([str(classes_txt), *weights, "--templates", str(bad_templates)], "exactly once"),
    ]
    out = tmp_path / "out.vocab"
    for args, expected in cases:
        result = runner.invoke(app, ["vocab-encode", *args, "-o", str(out)])
        assert expected in _one_line_error(result), args
        assert not out.exists()
    result = runner.invoke(app, ["vocab-encode", str(classes_txt), *weights, "-o", str(tmp_path / "out.npy")])
    assert ".vocab" in _one_line_error(result)
    assert list(tmp_path.glob("*.part")) == [] and list(tmp_path.glob(".*")) == []


def test_offline_without_weights_says_where_to_put_them(
    tmp_path: Path, classes_txt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    result = runner.invoke(app, ["vocab-encode", str(classes_txt), "-o", str(tmp_path / "out.vocab")])
    line = _one_line_error(result)
    assert str(tmp_path / "home" / "ViT-B-32.pt") in line and "openaipublic" in line and "--clip-weights" in line

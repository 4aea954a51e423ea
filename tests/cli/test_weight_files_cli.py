"""Every command that takes a weight file, fed hostile and damaged files: one line, exit 2, nothing run or written.

The trojan is OpenAI's CLIP layout plus a TorchScript ``__setstate__`` that writes a marker file; before
the archive reader, ``--clip-weights`` handed it to ``torch.jit.load`` and the command ended with exit 0
and the marker on disk (``tests/io/test_torchscript.py`` shows the trojan works under ``torch.jit.load``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from tests.clip_fixtures import save_openai_archive, save_safetensors, save_trojan_archive, tiny_clip
from tests.conftest import write_video
from tests.train.conftest import tiny_train_overrides

runner = CliRunner()


def one_error_line(result: Any) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _command(
    name: str, clip: Path, tmp_path: Path, weights: dict[str, Path], shapes: dict[str, Path]
) -> tuple[list[str], Path]:
    """Arguments of ``name`` with ``clip`` as its CLIP weights, and the folder its outputs go to."""
    out = tmp_path / "out"
    if name == "segment":
        write_video(tmp_path / "a.mp4", num_frames=3)
        args = ["segment", str(tmp_path / "a.mp4"), "-o", str(out), "--vocab", "person,dog"]
        args += ["--weights", str(weights["model"]), "--clip-weights", str(clip), "--device", "cpu", "--min-size", "64"]
        return args, out
    if name == "vocab-encode":
        return ["vocab-encode", "person,dog", "-o", str(out / "v.vocab"), "--clip-weights", str(clip), "-q"], out
    config = tmp_path / "run.json"
    config.write_text(json.dumps(tiny_train_overrides(shapes, out, clip_weights=str(clip))))
    return ["train", "-c", str(config), "--set", "optim.max_iter=1", "--quiet"], out


@pytest.mark.parametrize("command", ["segment", "vocab-encode", "train"])
def test_trojan_clip_archive_is_refused_by_every_command(
    tmp_path: Path, weights: dict[str, Path], shapes: dict[str, Path], command: str
) -> None:
    marker = tmp_path / "pwned"
    trojan = save_trojan_archive(tiny_clip(), tmp_path / "ViT-B-32.pt", marker)
    args, out = _command(command, trojan, tmp_path, weights, shapes)
    message = one_error_line(runner.invoke(app, args))
    assert f"refusing to load CLIP weights {trojan}" in message and "(__setstate__)" in message
    assert "nothing from it was run" in message
    assert not marker.exists()
    assert files_under(out) == []

    # The same command with OpenAI's (harmless) layout runs: the refusal is about the payload only.
    clean = save_openai_archive(tiny_clip(), tmp_path / "clean.pt")
    args, out = _command(command, clean, tmp_path, weights, shapes)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert files_under(out) != []


def _damaged_safetensors(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "model.safetensors"
    good = save_safetensors(tiny_clip(), tmp_path / "good.safetensors")
    if case == "truncated":
        path.write_bytes(good.read_bytes()[:5000])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "random":
        # Fixed bytes: a first byte of 0x80 (1 in 256 random files) is a pickle's, which takes the pickle path.
        path.write_bytes(b"\x01" + random.Random(0).randbytes(2047))
    elif case == "folder":
        path.mkdir()
    elif case == "link-loop":
        path.symlink_to(path)
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("truncated", "(corrupt safetensors file: incomplete metadata, file not fully covered)"),
        ("empty", "(corrupt safetensors file: header too small)"),
        ("random", "corrupt safetensors file"),
        ("folder", "is a folder, not a file"),
        ("link-loop", "is a symbolic link loop"),
    ],
)
def test_damaged_safetensors_weights_are_one_line(
    tmp_path: Path, weights: dict[str, Path], case: str, expected: str
) -> None:
    # Before: torch.load hands any *.safetensors path to safetensors, whose SafetensorError escaped as a traceback.
    damaged = _damaged_safetensors(tmp_path, case)
    write_video(tmp_path / "a.mp4", num_frames=3)
    args = ["segment", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"), "--vocab", "person,dog"]
    args += ["--weights", str(damaged), "--clip-weights", str(weights["clip"]), "--device", "cpu"]
    message = one_error_line(runner.invoke(app, args))
    assert str(damaged) in message and expected in message
    assert files_under(tmp_path / "out") == []

"""Damaged and hostile result, ground-truth, dataset and vocabulary files through the real CLI.

Each refusal is checked as a user sees it, in a fresh ``python -m ovformer_cli`` process: exit status 2,
exactly one line on stderr (no traceback, no Python warning before it), nothing on stdout, and no output
file, partial or whole, left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.io.results import write_result_json
from ovformer_core.model.clip import ClipTextEncoderFactory
from ovformer_core.vocab import load_vocabulary
from tests.clip_fixtures import save_safetensors, tiny_clip
from tests.conftest import random_result, synthetic_frame, write_image, write_video
from tests.eval.eval_cases import EVAL_CASES

ROOT = Path(__file__).resolve().parents[2]
CASE1 = EVAL_CASES / "case1_small"


def run_cli(*args: str | Path, home: Path, fresh_process: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ovformer ARGS`` in a new Python process (or, to save the imports, in this one)."""
    if not fresh_process:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OVFORMER_HOME", str(home))
            patch.setenv("OVFORMER_OFFLINE", "1")
            outcome = CliRunner().invoke(app, list(map(str, args)))
        return subprocess.CompletedProcess(args, outcome.exit_code, outcome.stdout, outcome.stderr)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OVFORMER_HOME": str(home), "OVFORMER_OFFLINE": "1"}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-m", "ovformer_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def assert_refused(done: subprocess.CompletedProcess[str], expected: str) -> str:
    """Exit 2, one ``error:`` line containing ``expected`` on stderr, nothing else anywhere."""
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert done.stdout == ""
    return lines[0]


def _result_document(tmp_path: Path) -> dict:
    result, _ = random_result()
    write_result_json(tmp_path / "valid.json", result)
    document = json.loads((tmp_path / "valid.json").read_text())
    (tmp_path / "valid.json").unlink()
    return document


def _set_score(value: object) -> Callable[[dict], str]:
    def edit(document: dict) -> str:
        document["videos"][0]["tracks"][0]["score"] = value
        return json.dumps(document)

    return edit


def _terabyte_masks(document: dict) -> str:
    video = document["videos"][0]
    video["width"] = video["height"] = 10**6
    for track in video["tracks"]:
        # "0" then a 12-group number: one background run of 10**12 pixels, in 13 characters.
        track["segmentations"] = [{"size": [10**6, 10**6], "counts": "n?ToP5"}] * video["num_frames"]
    return json.dumps(document)


EXPORT_CASES: dict[str, tuple[Callable[[dict], str], str]] = {
    "NaN score": (_set_score(float("nan")), "contains NaN, which is not JSON"),
    "score 1e999": (lambda d: json.dumps(d).replace('"score":', '"score": 1e999, "x":', 1), "too large for a float"),
    "score above 1": (_set_score(7.5), "track 0: score 7.5 is not a number in [0, 1]"),
    "terabyte masks": (_terabyte_masks, "frame size 1000000x1000000 is larger than any frame a video can have"),
    "100,000-deep nesting": (lambda d: "[" * 100_000 + "]" * 100_000, "nests arrays or objects too deeply"),
    "YouTube-VIS list": (lambda d: json.dumps([{"video_id": 1, "score": 0.5}]), "is a YouTube-VIS results list"),
    "duplicate key": (lambda d: json.dumps(d).replace('"fps":', '"fps": 5, "fps":', 1), "has the key 'fps' twice"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_export_refuses_bad_result_files(tmp_path: Path, case: str) -> None:
    make, expected = EXPORT_CASES[case]
    path = tmp_path / "in" / "result.json"
    path.parent.mkdir()
    path.write_text(make(_result_document(tmp_path)))
    out = tmp_path / "out"
    done = run_cli("export", path, "--to", "ytvis", "--to", "coco", "--to", "png", "-o", out, home=tmp_path / "home")
    line = assert_refused(done, expected)
    assert str(path) in line
    assert not out.exists() and sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def _short_runs(results: list) -> list:
    # A well-formed RLE of 29 pixels for a frame of many more: pycocotools would read uninitialised memory.
    results[2]["segmentations"][0] = {"size": results[2]["segmentations"][0]["size"], "counts": "0m0"}
    return results


EVALUATE_CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "RLE runs do not cover the frame": (
        "results",
        lambda path: path.write_text(json.dumps(_short_runs(json.loads((CASE1 / "results.json").read_text())))),
        "results entry 2: frame 0 has a bad RLE: its runs cover",
    ),
    "100,000-deep ground truth": (
        "gt",
        lambda path: path.write_text("[" * 100_000 + "]" * 100_000),
        "nests arrays or objects too deeply",
    ),
    "NaN score": (
        "results",
        lambda path: path.write_text(
            (CASE1 / "results.json").read_text().replace('"score": ', '"score": NaN, "s": ', 1)
        ),
        "contains NaN, which is not JSON",
    ),
    "ground truth symlink loop": ("gt", lambda path: path.symlink_to(path), "is a symbolic link loop"),
    "duplicate video id": (
        "gt",
        lambda path: path.write_text(
            json.dumps(
                {
                    **(gt := json.loads((CASE1 / "gt.json").read_text())),
                    "videos": [*gt["videos"], gt["videos"][0]],
                }
            )
        ),
        "appears twice in 'videos'",
    ),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_evaluate_refuses_bad_files(tmp_path: Path, case: str) -> None:
    which, make, expected = EVALUATE_CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = {"gt": inputs / "gt.json", "results": inputs / "results.json"}
    for name, path in files.items():
        if name == which:
            make(path)
        else:
            shutil.copy(CASE1 / f"{name}.json", path)
    out = tmp_path / "out" / "metrics.json"
    done = run_cli(
        "evaluate", "--gt", files["gt"], "--results", files["results"], "-b", "lvvis", "-o", out, home=tmp_path
    )
    assert_refused(done, expected)
    assert not out.parent.exists() and sorted(p.name for p in inputs.iterdir()) == ["gt.json", "results.json"]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frames root with two one-frame videos, and a secret file next to it."""
    root = tmp_path_factory.mktemp("split")
    for video in ("a", "b"):
        (root / "frames" / video).mkdir(parents=True)
        write_image(root / "frames" / video / "0.png", synthetic_frame(0, 40, 56))
    write_image(root / "secret.png", synthetic_frame(1, 40, 56))
    return root


def _split_json(names: list[str], ids: list[int]) -> dict:
    return {
        "videos": [
            {"id": i, "width": 56, "height": 40, "length": 1, "file_names": [name]}
            for i, name in zip(ids, names, strict=True)
        ],
        "categories": [{"id": 1, "name": "person"}],
    }


@pytest.mark.parametrize(
    ("names", "ids", "expected", "fresh_process"),
    [
        (["a/0.png", "../secret.png"], [1, 2], "videos[1] (id 2) frame '../secret.png' goes up a folder ('..')", True),
        (["a/0.png", "SECRET"], [1, 2], "is an absolute path", False),
        (["a/0.png", "b/0.png"], [7, 7], "video id 7 appears twice in 'videos' (videos[0] and videos[1])", False),
    ],
)
def test_segment_dataset_refuses_escaping_names_and_duplicate_ids(
    tmp_path: Path,
    split: Path,
    weights: dict[str, Path],
    names: list[str],
    ids: list[int],
    expected: str,
    fresh_process: bool,
) -> None:
    names = [str(split / "secret.png") if name == "SECRET" else name for name in names]
    dataset = tmp_path / "split.json"
    dataset.write_text(json.dumps(_split_json(names, ids)))
    out = tmp_path / "out"
    done = run_cli(
        "segment", "--dataset", dataset, "--frames-root", split / "frames", "--results", out / "results.json",
        "--weights", weights["model"], "--clip-weights", weights["clip"], "--device", "cpu", "--quiet",
        home=tmp_path / "home", fresh_process=fresh_process,
    )  # fmt: skip
    assert_refused(done, expected)
    assert not out.exists()


def test_segment_refuses_a_vocabulary_of_other_clip_weights(tmp_path: Path, weights: dict[str, Path]) -> None:
    other_clip = save_safetensors(tiny_clip(seed=5), tmp_path / "other-clip.safetensors")
    foreign = tmp_path / "foreign.vocab"
    load_vocabulary("person,dog", ClipTextEncoderFactory(other_clip)).save(foreign)
    write_video(tmp_path / "clip.mp4", num_frames=3, height=40, width=56)
    out = tmp_path / "out"
    args = [
        "segment", tmp_path / "clip.mp4", "--vocab", foreign, "--weights", weights["model"],
        "--clip-weights", weights["clip"], "--device", "cpu", "--min-size", "64", "-o", out, "--quiet",
    ]  # fmt: skip
    line = assert_refused(run_cli(*args, home=tmp_path / "home"), f"{foreign} was encoded with other CLIP weights")
    assert f"re-encode it: ovformer vocab-encode {foreign} -o NEW.vocab --clip-weights {weights['clip']}" in line
    assert not out.exists() or list(out.iterdir()) == []

    # The same weights under another name are the same text tower: accepted.
    renamed = shutil.copy(weights["clip"], tmp_path / "renamed-clip.safetensors")
    own = tmp_path / "own.vocab"
    load_vocabulary("person,dog", ClipTextEncoderFactory(Path(renamed))).save(own)
    args[args.index("--vocab") + 1] = own
    done = run_cli(*args, home=tmp_path / "home", fresh_process=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "clip.json").is_file()

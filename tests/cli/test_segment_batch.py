"""`ovformer segment` as shell batch scripts use it: bad inputs among good ones, signals, resuming, full disks."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ovformer_cli.app import app
from ovformer_core.io.results import load_result
from tests.cli.test_segment_cli import one_error_line, read_video, segment_args
from tests.conftest import write_video
from tests.io.timed_videos import cut_copy, evenly, write_timed_video

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def cli_command(weights: dict[str, Path], *extra: str) -> list[str]:
    return [sys.executable, "-m", "ovformer_cli", *segment_args(weights, *extra)]


def cli_env() -> dict[str, str]:
    # OVFORMER_HOME / OVFORMER_OFFLINE come from the autouse fixture through os.environ.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def leftovers(folder: Path) -> list[str]:
    """Hidden staging files and folders of unfinished outputs."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".old"))) if folder.exists() else []


def summary_of(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_a_missing_input_is_one_failed_input_among_others(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=4)
    write_video(tmp_path / "b.mp4", num_frames=4)
    out = tmp_path / "out"
    inputs = [
        str(tmp_path / "a.mp4"),
        str(tmp_path / "gone.mp4"),
        str(tmp_path / "nomatch*.avi"),
        str(tmp_path / "b.mp4"),
    ]
    result = runner.invoke(app, segment_args(weights, *inputs, "-o", str(out), "--json", "-q"))
    assert result.exit_code == 1, result.output
    summary = summary_of(result.stdout)
    assert [Path(r["input"]).name for r in summary["ok"]] == ["a.mp4", "b.mp4"]
    assert [Path(r["input"]).name for r in summary["failed"]] == ["gone.mp4", "nomatch*.avi"]
    assert "does not exist" in summary["failed"][0]["error"] and "matches" in summary["failed"][1]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]

    # The human-readable list names each failed input once ("x: x does not exist" would repeat it).
    shown = runner.invoke(app, segment_args(weights, str(tmp_path / "gone.mp4"), "-o", str(out)))
    assert shown.exit_code == 1
    line = one_error_line(shown.output)
    assert line.count("gone.mp4") == 1 and "does not exist" in line


def test_a_video_without_a_video_stream_is_named_once(tmp_path: Path, weights):
    audio_only = tmp_path / "x.avi"
    with av.open(str(audio_only), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = runner.invoke(app, segment_args(weights, str(audio_only), "-o", str(tmp_path / "out")))
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line.count("x.avi") == 1 and "no video stream" in line


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_removes_unfinished_outputs_and_a_rerun_completes_them(tmp_path: Path, weights, stop):
    video = tmp_path / "long.mp4"
    write_video(video, num_frames=240, height=48, width=64)
    out = tmp_path / "out"
    command = cli_command(weights, str(video), "-o", str(out), "-f", "png", "-f", "overlay", "-q")
    process = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Signal while an output is being written: the full result is saved, the PNG folder is staged.
    deadline = time.monotonic() + 300
    while not leftovers(out) or not (out / "long.json").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + stop, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [f"error: interrupted ({signal.Signals(stop).name}); unfinished outputs were removed"]
    assert leftovers(out) == []
    assert (out / "long.json").is_file() and not (out / "long.overlay.mp4").exists()

    # The rerun makes only what is missing, from the saved result: weights that do not exist prove
    # that no model is loaded.
    rerun = segment_args(weights, str(video), "-o", str(out), "-f", "png", "-f", "overlay", "--skip-existing", "--json")
    rerun[rerun.index("--weights") + 1] = str(tmp_path / "missing.pt")
    completed = runner.invoke(app, rerun)
    assert completed.exit_code == 0, completed.output
    summary = summary_of(completed.stdout)
    assert summary["ok"][0]["model_run"] is False and summary["skipped"] == []
    assert read_video(out / "long.overlay.mp4").shape[0] == 240
    assert len(list((out / "long_masks").glob("*.png"))) == 240

    # Now everything is there: skipped, and still no model.
    again = runner.invoke(app, rerun)
    assert again.exit_code == 0 and summary_of(again.stdout)["skipped"] == [str(video)]


def test_skip_existing_makes_a_newly_requested_format_without_the_model(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=5)
    out = tmp_path / "out"
    first = runner.invoke(app, segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(out), "-q"))
    assert first.exit_code == 0, first.output
    saved = (out / "a.json").read_bytes()
    args = segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(out), "-f", "coco", "--skip-existing", "--json")
    args[args.index("--weights") + 1] = str(tmp_path / "missing.pt")
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert summary_of(rerun.stdout)["ok"][0]["model_run"] is False
    assert len(json.loads((out / "a.coco.json").read_text())["images"]) == 5
    assert (out / "a.json").read_bytes() == saved  # the result itself is left alone

    # A result that cannot be read is not trusted when a format must be made from it: the model runs
    # again and replaces it.
    (out / "a.json").write_text("{ cut off")
    (out / "a.coco.json").unlink()
    args[args.index("--weights") + 1] = str(weights["model"])
    redone = runner.invoke(app, args)
    assert redone.exit_code == 0, redone.output
    assert summary_of(redone.stdout)["ok"][0]["model_run"] is True
    assert load_result(out / "a.json").num_frames == 5


def test_an_output_path_taken_by_a_folder_fails_that_input_only(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=3)
    write_video(tmp_path / "b.mp4", num_frames=3)
    write_video(tmp_path / "c.mp4", num_frames=3)
    out = tmp_path / "out"
    (out / "a.json").mkdir(parents=True)
    (out / "c_masks").write_text("a file where the PNG folder goes")
    inputs = [str(tmp_path / name) for name in ("a.mp4", "b.mp4", "c.mp4")]
    result = runner.invoke(app, segment_args(weights, *inputs, "-o", str(out), "-f", "png", "--json", "-q"))
    assert result.exit_code == 1
    summary = summary_of(result.stdout)
    assert [Path(r["input"]).name for r in summary["ok"]] == ["b.mp4"]
    errors = {Path(r["input"]).name: r["error"] for r in summary["failed"]}
    assert "a.json: a folder or other non-file is in the way" in errors["a.mp4"]
    assert "c_masks: it exists and is not an ovformer PNG mask folder" in errors["c.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json", "b_masks", "c_masks"]
    assert list((out / "a.json").iterdir()) == []


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs user namespaces to mount a small tmpfs (unshare -Urm)")
def test_a_full_disk_is_one_line_per_input_and_leaves_nothing(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=3)
    write_video(tmp_path / "b.mp4", num_frames=3)
    out = tmp_path / "out"
    out.mkdir()
    command = " ".join(
        cli_command(weights, str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "-o", str(out), "-f", "coco")
    )
    # A real ENOSPC: a 256 KiB tmpfs over the output folder, filled up before the run.
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {out} && (dd if=/dev/zero of={out}/filler bs=4k 2>/dev/null; true) && "
        f"{command}; status=$?; ls -A {out}; exit $status"
    )
    done = subprocess.run(["unshare", "-Urm", "sh", "-c", script], env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    failures = [line.strip() for line in done.stderr.splitlines() if line.startswith("  ")]
    assert len(failures) == 2  # the second input was tried too
    for name, line in zip(("a", "b"), failures, strict=True):
        assert line.startswith(f"{tmp_path / name}.mp4: cannot write {out / name}.json: no space left on device; free")
    assert done.stdout.split() == ["filler"]  # nothing else, no .part file


def test_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=3)
    out = tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # bytes; Python ignores SIGXFSZ, writes get EFBIG

    command = cli_command(weights, str(tmp_path / "a.mp4"), "-o", str(out))
    done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, preexec_fn=limit)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done.stderr)
    assert f"cannot write {out / 'a.json'}: file too large" in line and "ulimit -f" in line
    assert list(out.iterdir()) == []


def test_library_warnings_do_not_come_before_the_error_line(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=3)
    odd = tmp_path / "odd.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, odd, pickle_protocol=4)  # torch warns about the protocol on load
    command = cli_command(weights, str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"))
    command[command.index("--weights") + 1] = str(odd)
    done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot read checkpoint {odd}: it was saved with a pickle"), lines
    assert "re-save it with torch.save's default protocol" in lines[0]


def test_skip_existing_does_not_take_another_inputs_result_of_the_same_name(tmp_path: Path, weights):
    for folder, frames in (("a", 3), ("b", 4)):
        (tmp_path / folder).mkdir()
        write_video(tmp_path / folder / "clip.mp4", num_frames=frames)
    out = tmp_path / "out"
    first = runner.invoke(app, segment_args(weights, str(tmp_path / "a" / "clip.mp4"), "-o", str(out), "-q"))
    assert first.exit_code == 0, first.output
    second = runner.invoke(
        app, segment_args(weights, str(tmp_path / "b" / "clip.mp4"), "-o", str(out), "--skip-existing", "--json")
    )
    assert second.exit_code == 0, second.output
    assert summary_of(second.stdout)["ok"][0]["model_run"] is True
    assert load_result(out / "clip.json").num_frames == 4


def test_a_truncated_video_is_processed_but_never_a_silent_success(tmp_path: Path, weights):
    intact = tmp_path / "intact.mp4"
    write_timed_video(intact, evenly(40), faststart=True, gop=10)
    cut = cut_copy(intact, tmp_path / "cut.mp4", 0.5)
    out = tmp_path / "out"
    result = runner.invoke(app, segment_args(weights, str(intact), str(cut), "-o", str(out), "--json"))
    assert result.exit_code == 4, result.output
    summary = summary_of(result.stdout)
    assert [entry["complete"] for entry in summary["ok"]] == [True, False]
    assert summary["incomplete"] == [str(cut)]
    warning = next(line for line in result.output.splitlines() if line.startswith("warning:"))
    assert warning.startswith(f"warning: {cut}: incomplete: decoded ") and "of 40 declared (exact count)" in warning
    saved = load_result(out / "cut.json")
    assert saved.decode is not None and not saved.decode.complete and saved.decode.truncated
    assert 0 < saved.num_frames == saved.decode.frames_decoded < 40 and saved.decode.frames_declared == 40
    assert load_result(out / "intact.json").decode.complete  # type: ignore[union-attr]

    # A failure elsewhere in the batch takes precedence: exit 1.
    mixed = runner.invoke(app, segment_args(weights, str(cut), str(tmp_path / "gone.mp4"), "-o", str(out), "-q"))
    assert mixed.exit_code == 1
    # Quiet drops progress and tables, never what went wrong: one warning and one error line.
    lines = mixed.stderr.splitlines()
    assert len(lines) == 2 and mixed.stdout == "", mixed.output
    assert lines[0].startswith(f"warning: {cut}: incomplete: decoded ")
    assert lines[1].startswith(f"error: {tmp_path / 'gone.mp4'} does not exist")


def test_links_that_lead_nowhere_are_named_as_such(tmp_path: Path, weights):
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    broken = tmp_path / "broken.mp4"
    broken.symlink_to(tmp_path / "moved-away.mp4")
    result = runner.invoke(app, segment_args(weights, str(loop), str(broken), "-o", str(tmp_path / "out"), "--json"))
    assert result.exit_code == 1
    errors = [entry["error"] for entry in summary_of(result.stdout)["failed"]]
    assert errors == [
        f"{loop} is a symbolic link loop (or goes through one); fix the link",
        f"{broken} is a broken symbolic link (to {tmp_path / 'moved-away.mp4'}, which does not exist); fix the link",
    ]


@pytest.mark.parametrize(("rank", "expected"), [(0, ["a.mp4", "c.mp4"]), (1, ["b.mp4"])])
def test_under_torchrun_each_rank_takes_its_share_of_the_inputs(
    tmp_path: Path, weights, monkeypatch: pytest.MonkeyPatch, rank: int, expected: list[str]
):
    """RANK / WORLD_SIZE as torchrun sets them: rank r of 2 handles inputs r, r + 2, ... (here all done
    already, so --skip-existing shows the share without running the model)."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a", "b", "c"):
        write_video(tmp_path / f"{name}.mp4", num_frames=2)
        (out / f"{name}.json").write_text("{}")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    inputs = [str(tmp_path / f"{name}.mp4") for name in ("a", "b", "c")]
    done = runner.invoke(
        app, segment_args(weights, *inputs, "-o", str(out), "--skip-existing", "--json", "--device", "cpu")
    )
    assert done.exit_code == 0, done.output
    summary = summary_of(done.stdout)
    assert [Path(p).name for p in summary["skipped"]] == expected and summary["failed"] == []


def test_a_log_file_gets_no_progress_display(tmp_path: Path, weights):
    """Progress is drawn only on a terminal: redirected to a log, a clean run leaves stderr empty."""
    write_video(tmp_path / "a.mp4", num_frames=3)
    command = cli_command(weights, str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"))
    done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", repr(done.stderr)
    assert f"wrote {tmp_path / 'out' / 'a.json'}" in done.stdout

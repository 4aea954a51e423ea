"""The run queue: one run at a time in submission order, results never replacing others, failures kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ovformer_core.errors import OVFormerError, VocabularyError
from ovformer_core.io.results import load_result, write_result_json
from ovformer_core.view.runs import RunJob, RunQueue, free_result_path, parse_vocabulary
from tests.view.conftest import known_result


def test_the_vocabulary_field_gives_names_never_files():
    assert parse_vocabulary(" person, dog\ncar ,, dog ") == ["person", "dog", "car"]
    assert parse_vocabulary("/etc/passwd") == ["/etc/passwd"]  # a (strange) name, not a file to read
    for bad in ("", " , ", 5, "x" * 201, ",".join(str(i) for i in range(2001))):
        with pytest.raises(VocabularyError):
            parse_vocabulary(bad)


def test_a_run_never_takes_the_name_of_a_result_or_a_review(tmp_path: Path):
    assert free_result_path(tmp_path, "clip") == tmp_path / "clip.json"
    (tmp_path / "clip.json").write_text("{}")
    (tmp_path / "clip-2.reviewed.json").write_text("{}")  # its original was removed: the name stays taken
    assert free_result_path(tmp_path, "clip") == tmp_path / "clip-3.json"


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_runs_go_one_at_a_time_in_order_and_failures_are_kept(tmp_path: Path):
    release = threading.Event()
    running: list[int] = []
    active = [0, 0]  # now, most at once

    def segment(job: RunJob):
        running.append(job.job_id)
        active[0] += 1
        active[1] = max(active)
        try:
            if job.classes == ["boom"]:
                raise OVFormerError("the video cannot be decoded; upload another")
            release.wait(10)
            job.frames_done, job.frames_total = 10, 10
            return known_result(str(job.video), "clip", (1,))
        finally:
            active[0] -= 1

    done: list[Path] = []
    queue = RunQueue(segment, tmp_path, done.append)
    write_result_json(tmp_path / "clip.json", known_result("x.mp4", "clip", (1, 2)))
    jobs = [queue.submit(tmp_path / "clip.mp4", "clip.mp4", names, "tiny", 0.5) for names in (["a"], ["boom"], ["c"])]
    wait_until(lambda: jobs[0].state == "running")
    assert [j.state for j in jobs] == ["running", "queued", "queued"]
    release.set()
    wait_until(lambda: jobs[2].state == "done")
    assert running == [1, 2, 3] and active[1] == 1
    states = {row["id"]: row for row in queue.jobs()}
    assert states[1]["result_file"] == "clip-2.json" and states[3]["result_file"] == "clip-3.json"
    assert states[2]["state"] == "failed" and states[2]["error"] == "the video cannot be decoded; upload another"
    assert done == [tmp_path / "clip-2.json", tmp_path / "clip-3.json"]
    assert len(load_result(tmp_path / "clip.json").tracks) == 2  # the earlier result is untouched
    queue.stop()


def test_stopping_cancels_what_waits(tmp_path: Path):
    started = threading.Event()

    def segment(job: RunJob):
        started.set()
        while not job.cancel.is_set():
            time.sleep(0.01)
        raise OVFormerError("cancelled: the server is stopping")

    queue = RunQueue(segment, tmp_path)
    first = queue.submit(tmp_path / "a.mp4", "a.mp4", ["a"], "tiny", 0.5)
    second = queue.submit(tmp_path / "b.mp4", "b.mp4", ["b"], "tiny", 0.5)
    assert started.wait(10)
    queue.stop()
    assert (first.state, second.state) == ("cancelled", "cancelled")
    assert list(tmp_path.iterdir()) == []

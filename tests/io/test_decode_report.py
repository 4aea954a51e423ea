"""The decode report and frame times: kept in ``VideoResult`` and its JSON, optional in old files,
validated on load with one-line errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ovformer_core.errors import ResultsError
from ovformer_core.io.decode_report import DecodeReport, ReadLog
from ovformer_core.io.results import VideoResult, load_result, write_result_json

TRUNCATED = DecodeReport(
    frames_decoded=67,
    frames_declared=456,
    declared_exact=True,
    duration_declared=15.2,
    time_reached=2.23,
    stopped="end",
    truncated=True,
    damaged_packets=1,
    first_problem_time=2.25,
    problem="corrupt packet: the data is damaged or cut off",
    indices_exact=False,
    rotation=90,
)


def test_summary_says_what_was_decoded_of_what_and_why_incomplete() -> None:
    assert not TRUNCATED.complete
    assert TRUNCATED.summary() == (
        "decoded 67 frames of 456 declared (exact count); the data ends at 2.23 s of 15.20 s: the file looks "
        "truncated; 1 damaged packet(s); frames there may be missing or garbled; first problem at 2.25 s: "
        "corrupt packet: the data is damaged or cut off"
    )
    fine = DecodeReport(300, 300, True, 10.0, 10.0, "end")
    assert fine.complete and fine.summary() == "decoded 300 frames of 300 declared (exact count)"
    failed = dataclasses.replace(fine, stopped="error", problem="I/O error", first_problem_time=4.0, time_reached=4.0)
    assert not failed.complete and "a read error stopped decoding at 4.00 s" in failed.summary()


def test_read_log_judges_truncation() -> None:
    def log(**kwargs: Any) -> ReadLog:
        base: dict[str, Any] = {"frames_declared": 100, "declared_exact": True, "duration_declared": 10.0}
        return ReadLog(**{**base, "end_slack": 0.25, **kwargs})

    short = log(last_index=49, time_reached=5.0, stopped="end")
    report = short.report()
    assert report is not None and report.truncated
    assert log(last_index=99, time_reached=10.0, stopped="end").report().complete  # type: ignore[union-attr]
    # Reading stopped on purpose: nothing to judge.
    assert log(last_index=49, time_reached=5.0, stopped="selection").report().complete  # type: ignore[union-attr]
    # An estimated count alone never says "truncated"; the declared duration does.
    estimate = log(declared_exact=False, last_index=80, time_reached=9.9, stopped="end").report()
    assert estimate is not None and estimate.complete
    assert log(declared_exact=False, last_index=80, time_reached=8.0, stopped="end").report().truncated  # type: ignore[union-attr]
    assert log(stopped=None).report() is None


def test_result_json_keeps_frame_times_and_the_report(tmp_path: Path, make_result: Callable) -> None:
    result, _ = make_result(num_frames=3, frame_indices=[0, 7, 9])
    result = dataclasses.replace(result, frame_times=[0.0, 2.1, 9.0], decode=TRUNCATED)
    write_result_json(tmp_path / "r.json", result)
    assert load_result(tmp_path / "r.json") == result
    stored = json.loads((tmp_path / "r.json").read_text())["videos"][0]
    assert stored["frame_times"] == [0.0, 2.1, 9.0]
    assert stored["decode"]["complete"] is False and stored["decode"]["truncated"] is True
    assert stored["decode"]["summary"] == TRUNCATED.summary()


def test_results_without_times_or_report_still_load(tmp_path: Path, make_result: Callable) -> None:
    result, _ = make_result(num_frames=3)
    write_result_json(tmp_path / "old.json", result)
    stored = json.loads((tmp_path / "old.json").read_text())["videos"][0]
    assert "frame_times" not in stored and "decode" not in stored
    loaded = load_result(tmp_path / "old.json")
    assert loaded.frame_times is None and loaded.decode is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"frame_times": [0.0, 1.0]}, "2 frame times for 3 frames"),
        ({"frame_times": [0.0, 2.0, 1.0]}, "frame times are not strictly increasing"),
        ({"frame_times": "0,1,2"}, "'frame_times' must be a list of finite numbers"),
        ({"frame_times": [0, True, 2]}, "'frame_times' must be a list of finite numbers"),
        ({"frame_times": [0, 1, 10**400]}, "'frame_times' must be a list of finite numbers"),
        ({"decode": [1]}, "'decode' must be an object"),
        ({"decode": {**TRUNCATED.to_dict(), "stopped": "exploded"}}, "'stopped' must be one of end, selection, error"),
        ({"decode": {**TRUNCATED.to_dict(), "rotation": 45}}, "'rotation' must be 0, 90, 180 or 270"),
        ({"decode": {**TRUNCATED.to_dict(), "frames_decoded": -1}}, "'frames_decoded' must be 0 or more"),
        ({"decode": {**TRUNCATED.to_dict(), "truncated": 1}}, "'truncated' must be bool"),
        ({"decode": {**TRUNCATED.to_dict(), "time_reached": "soon"}}, "'time_reached' must be a finite number"),
        ({"decode": {k: v for k, v in TRUNCATED.to_dict().items() if k != "problem"}}, "missing key 'problem'"),
    ],
)
def test_malformed_times_or_report_are_one_line_errors(
    tmp_path: Path, make_result: Callable, change: dict[str, Any], fragment: str
) -> None:
    result, _ = make_result(num_frames=3)
    write_result_json(tmp_path / "r.json", dataclasses.replace(result, frame_times=[0.0, 0.1, 0.2]))
    document = json.loads((tmp_path / "r.json").read_text())
    document["videos"][0].update(change)
    (tmp_path / "r.json").write_text(json.dumps(document))
    with pytest.raises(ResultsError) as excinfo:
        VideoResult.from_json(tmp_path / "r.json")
    message = str(excinfo.value)
    assert "\n" not in message and fragment in message, message

"""The metrics log: one JSON line per logged iteration, a clean file after resuming, TensorBoard events."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

from ovformer_core.train.metrics_log import METRICS_FILE, MetricsLog, read_metrics


def _lines(folder: Path) -> list[str]:
    return (folder / METRICS_FILE).read_text().splitlines()


def _quiet_log(folder: Path, enabled: bool = True, resume_from: int | None = None) -> MetricsLog:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tensorboard's own deprecation warnings are not ours to test
        return MetricsLog(folder, enabled=enabled, resume_from=resume_from)


def test_one_json_line_per_log_call(tmp_path: Path) -> None:
    log = _quiet_log(tmp_path)
    log.log(1, {"loss": 2.5, "lr": 1e-4})
    log.log(2, {"loss": 2.25})
    log.log(2, {"eval/AP": 0.125})
    log.close()
    lines = _lines(tmp_path)
    assert len(lines) == 3
    assert [json.loads(line) for line in lines] == [
        {"iteration": 1, "loss": 2.5, "lr": 1e-4},
        {"iteration": 2, "loss": 2.25},
        {"iteration": 2, "eval/AP": 0.125},
    ]
    assert read_metrics(tmp_path) == [json.loads(line) for line in lines]


def test_a_new_run_starts_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text('{"iteration": 50, "loss": 1.0}\n')
    log = _quiet_log(tmp_path)
    assert _lines(tmp_path) == []
    log.log(1, {"loss": 3.0})
    log.close()
    assert read_metrics(tmp_path) == [{"iteration": 1, "loss": 3.0}]


def test_resume_drops_later_iterations_and_a_cut_line(tmp_path: Path) -> None:
    log = _quiet_log(tmp_path)
    for iteration in range(1, 7):
        log.log(iteration, {"loss": 10.0 - iteration})
    log.close()
    # The interrupted run was killed while writing iteration 7's line.
    with (tmp_path / METRICS_FILE).open("a") as handle:
        handle.write('{"iteration": 7, "lo')
    resumed = _quiet_log(tmp_path, resume_from=4)
    assert [line["iteration"] for line in read_metrics(tmp_path)] == [1, 2, 3, 4]
    for iteration in (5, 6):
        resumed.log(iteration, {"loss": 0.5})
    resumed.close()
    got = read_metrics(tmp_path)
    assert [line["iteration"] for line in got] == [1, 2, 3, 4, 5, 6]
    assert got[3] == {"iteration": 4, "loss": 6.0} and got[4] == {"iteration": 5, "loss": 0.5}


def test_resume_without_a_file_starts_one(tmp_path: Path) -> None:
    log = _quiet_log(tmp_path, resume_from=10)
    log.log(11, {"loss": 1.0})
    log.close()
    assert read_metrics(tmp_path) == [{"iteration": 11, "loss": 1.0}]


def test_disabled_log_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text('{"iteration": 1, "loss": 1.0}\n')  # rank 0's file: left alone
    log = MetricsLog(tmp_path, enabled=False, resume_from=None)
    log.log(2, {"loss": 0.5})
    log.close()
    assert _lines(tmp_path) == ['{"iteration": 1, "loss": 1.0}']
    assert sorted(p.name for p in tmp_path.iterdir()) == [METRICS_FILE]
    other = tmp_path / "other"
    other.mkdir()
    MetricsLog(other, enabled=False).log(1, {"loss": 1.0})
    assert list(other.iterdir()) == []


def test_tensorboard_events_are_written(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = _quiet_log(tmp_path)
    log.log(1, {"loss": 2.0})
    log.log(3, {"loss": 1.5, "eval/AP": 0.25})
    log.close()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    accumulator = EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {"loss", "eval/AP"}
    assert [(e.step, e.value) for e in accumulator.Scalars("loss")] == [(1, 2.0), (3, 1.5)]
    assert [(e.step, e.value) for e in accumulator.Scalars("eval/AP")] == [(3, 0.25)]


def test_tensorboard_after_resume_keeps_the_checkpoint_iteration(tmp_path: Path) -> None:
    # Resuming from the checkpoint of iteration 4 logs 5 next: TensorBoard must hide 5 and 6 of the
    # interrupted run but keep 1..4, as metrics.jsonl does (SummaryWriter purges steps >= purge_step).
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = _quiet_log(tmp_path)
    for iteration in range(1, 7):
        log.log(iteration, {"loss": float(iteration)})
    log.close()
    resumed = _quiet_log(tmp_path, resume_from=4)
    resumed.log(5, {"loss": 50.0})
    resumed.close()
    accumulator = EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    assert [(e.step, e.value) for e in accumulator.Scalars("loss")] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 4.0),
        (5, 50.0),
    ]


def test_without_tensorboard_one_warning_and_the_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail, as on an install without the [train] extra.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.warns(UserWarning, match=r'tensorboard is not installed.*pip install "ovformer\[train\]"'):
        log = MetricsLog(tmp_path, enabled=True)
    log.log(1, {"loss": 1.5})
    log.close()
    assert read_metrics(tmp_path) == [{"iteration": 1, "loss": 1.5}]
    assert not (tmp_path / "tensorboard").exists()


def test_non_finite_values_are_json_null(tmp_path: Path) -> None:
    """A step the fp16 loss scaler skipped has an infinite gradient norm; JSON has no Infinity."""
    log = _quiet_log(tmp_path)
    log.log(3, {"loss": 2.0, "grad_norm": float("inf"), "lr": float("nan")})
    log.close()
    (line,) = _lines(tmp_path)
    assert "Infinity" not in line and "NaN" not in line
    assert json.loads(line) == {"iteration": 3, "loss": 2.0, "grad_norm": None, "lr": None}

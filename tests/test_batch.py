"""ovformer_core.batch called from Python, without the CLI: outcomes, skipping, saved results, the summary, shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovformer_core.batch import (
    BatchOptions,
    BatchSummary,
    DatasetOptions,
    ModelSpec,
    failure_line,
    iter_segment_batch,
    iter_segment_dataset,
    segment_batch,
)
from ovformer_core.devices import ProcessGroup
from ovformer_core.errors import OutputError, OVFormerError
from ovformer_core.io.outputs import check_writable
from ovformer_core.io.results import load_result
from ovformer_core.predictor import Predictor
from tests.cli.conftest import weights  # noqa: F401
from tests.cli.test_segment_dataset import make_split
from tests.conftest import write_video

VOCABULARY = "person,dog,car"


@pytest.fixture(autouse=True)
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")


class CountingLoader:
    """A model loader that counts its calls (or refuses to load at all)."""

    def __init__(self, files: dict[str, Path] | None) -> None:
        self.spec = None if files is None else ModelSpec("r50-lvvis", files["model"], files["clip"], "cpu")
        self.calls = 0

    def __call__(self) -> Predictor:
        self.calls += 1
        if self.spec is None:
            raise AssertionError("the model was loaded")
        return self.spec.load()


def options(out: Path, **changes: object) -> BatchOptions:
    return BatchOptions(out, min_size=64, score_threshold=0.0, top_k=5, **changes)  # type: ignore[arg-type]


def test_a_failed_input_does_not_stop_the_others(tmp_path: Path, weights):  # noqa: F811
    write_video(tmp_path / "a.mp4", num_frames=4)
    write_video(tmp_path / "b.mp4", num_frames=5)
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video" * 100)
    inputs = [tmp_path / "broken.mp4", tmp_path / "a.mp4", tmp_path / "gone.mp4", tmp_path / "b.mp4"]
    load = CountingLoader(weights)
    out = tmp_path / "out"
    summary = segment_batch(inputs, VOCABULARY, load, options(out, formats=("coco",)))

    # Arguments that name nothing come first, then the inputs in order; one model load for the batch.
    assert [(Path(o.input).name, o.status) for o in summary.outcomes] == [
        ("gone.mp4", "failed"),
        ("broken.mp4", "failed"),
        ("a.mp4", "ok"),
        ("b.mp4", "ok"),
    ]
    assert load.calls == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.coco.json", "a.json", "b.coco.json", "b.json"]
    for outcome, frames in zip(summary.ok, (4, 5), strict=True):
        assert outcome.model_run and outcome.complete and outcome.result is not None
        assert outcome.result_path == out / f"{Path(outcome.input).stem}.json"
        assert load_result(outcome.result_path).num_frames == outcome.result.num_frames == frames

    document = json.loads(json.dumps(summary.to_json()))  # JSON-ready as it is
    assert list(document) == ["ok", "failed", "skipped", "incomplete"]
    assert document["skipped"] == [] and document["incomplete"] == []
    assert [entry["input"] for entry in document["failed"]] == [str(inputs[2]), str(inputs[0])]
    assert "does not exist" in document["failed"][0]["error"] and "broken.mp4" in document["failed"][1]["error"]
    first = document["ok"][0]
    assert list(first) == ["input", "result", "tracks", "frames", "seconds", "model_run", "complete", "decode"]
    assert first["input"] == str(inputs[1]) and first["result"] == str(out / "a.json")
    assert first["tracks"] == len(load_result(out / "a.json").tracks) and first["frames"] == 4
    assert first["model_run"] is True and first["complete"] is True and isinstance(first["decode"], str)
    assert first["seconds"] >= 0


def test_saved_results_are_reused_and_complete_inputs_skipped_without_the_model(tmp_path: Path, weights):  # noqa: F811
    write_video(tmp_path / "a.mp4", num_frames=5)
    write_video(tmp_path / "b.mp4", num_frames=3)
    out = tmp_path / "out"
    first = segment_batch([tmp_path / "a.mp4", tmp_path / "b.mp4"], VOCABULARY, CountingLoader(weights), options(out))
    assert [o.status for o in first.outcomes] == ["ok", "ok"]
    segment_batch([tmp_path / "b.mp4"], VOCABULARY, CountingLoader(weights), options(out, formats=("coco",)))
    saved = (out / "a.json").read_bytes()

    never = CountingLoader(None)
    rerun = segment_batch(
        [tmp_path / "a.mp4", tmp_path / "b.mp4"],
        VOCABULARY,
        never,
        options(out, formats=("coco",), skip_existing=True),
    )
    assert never.calls == 0
    assert [(Path(o.input).name, o.status, o.model_run) for o in rerun.outcomes] == [
        ("a.mp4", "ok", False),
        ("b.mp4", "skipped", False),
    ]
    assert len(json.loads((out / "a.coco.json").read_text())["images"]) == 5  # made from the saved result
    assert (out / "a.json").read_bytes() == saved
    document = rerun.to_json()
    assert document["skipped"] == [str(tmp_path / "b.mp4")] and document["ok"][0]["model_run"] is False


def test_a_saved_result_that_cannot_be_read_runs_the_model_again(tmp_path: Path, weights):  # noqa: F811
    write_video(tmp_path / "a.mp4", num_frames=4)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text("{ cut off")
    load = CountingLoader(weights)
    summary = segment_batch(
        [tmp_path / "a.mp4"], VOCABULARY, load, options(out, formats=("ytvis",), skip_existing=True)
    )
    assert load.calls == 1 and summary.ok[0].model_run
    assert load_result(out / "a.json").num_frames == 4 and (out / "a.ytvis.json").is_file()


def test_items_report_each_window_then_the_outcome(tmp_path: Path, weights):  # noqa: F811
    write_video(tmp_path / "a.mp4", num_frames=7)
    batch = options(tmp_path / "o", window=5)
    items = list(iter_segment_batch([tmp_path / "a.mp4"], VOCABULARY, CountingLoader(weights), batch))
    # start, a window of 5 frames, one of 2, the result (iter_segment's last item), then the outcome
    assert [item.event for item in items] == ["start", "window", "window", "window", "outcome"]
    start, *windows, last = items
    assert start.progress is not None and start.progress.frames_done == 0 and start.progress.frames_total == 7
    progress = [w.progress for w in windows if w.progress is not None]
    assert [p.frames_done for p in progress] == [5, 7, 7]
    assert [p.result is None for p in progress] == [True, True, False]
    assert last.outcome is not None and last.outcome.result is progress[-1].result
    assert (tmp_path / "o" / "a.json").is_file()
    assert all(item.spec is not None and item.spec.name == "a" for item in items)


def test_an_output_in_the_way_fails_that_input_before_the_model(tmp_path: Path):
    write_video(tmp_path / "a.mp4", num_frames=3)
    out = tmp_path / "out"
    (out / "a.json").mkdir(parents=True)
    never = CountingLoader(None)
    summary = segment_batch([tmp_path / "a.mp4"], VOCABULARY, never, options(out))
    assert never.calls == 0 and [o.status for o in summary.outcomes] == ["failed"]
    assert isinstance(summary.failed[0].error, OutputError)
    assert "a folder or other non-file is in the way" in summary.to_json()["failed"][0]["error"]


@pytest.mark.parametrize(("rank", "expected"), [(0, ["gone.mp4", "a.mp4", "c.mp4"]), (1, ["b.mp4"])])
def test_each_rank_takes_its_share_and_rank_0_reports_what_named_nothing(tmp_path: Path, rank, expected):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a", "b", "c"):
        write_video(tmp_path / f"{name}.mp4", num_frames=2)
        (out / f"{name}.json").write_text("{}")
    inputs = [tmp_path / "a.mp4", tmp_path / "gone.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"]
    group = ProcessGroup(rank=rank, world_size=2, local_rank=rank)
    summary = segment_batch(inputs, VOCABULARY, CountingLoader(None), options(out, skip_existing=True), group)
    assert [Path(o.input).name for o in summary.outcomes] == expected


def test_an_unusable_output_folder_stops_the_batch_before_any_input(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    write_video(tmp_path / "a.mp4", num_frames=2)
    with pytest.raises(OutputError, match=r"is a file; choose a folder with `out_dir`$"):
        segment_batch([tmp_path / "a.mp4"], VOCABULARY, CountingLoader(None), options(blocker))
    with pytest.raises(OutputError, match="choose a folder with `results`"):
        check_writable(blocker, "results")
    with pytest.raises(OutputError, match="unknown output format 'gif'"):
        options(tmp_path, formats=("gif",))


def test_summary_lists_incomplete_results_and_failure_lines_name_the_input_once():
    assert BatchSummary(()).to_json() == {"ok": [], "failed": [], "skipped": [], "incomplete": []}
    assert failure_line("a.mp4", "a.mp4 does not exist") == "a.mp4 does not exist"
    assert failure_line("a.mp4", "no video stream") == "a.mp4: no video stream"


def test_a_dataset_split_in_one_results_file_and_resumed(tmp_path: Path, weights):  # noqa: F811
    gt = make_split(tmp_path)
    results = tmp_path / "out" / "results.json"
    model = ModelSpec("r50-lvvis", weights["model"], weights["clip"], "cpu", progress=False)
    items = list(iter_segment_dataset(gt, tmp_path / "frames", results, model, DatasetOptions(top_k=4, min_size=64)))
    assert [(i.done, i.total, i.video is not None, i.finished) for i in items] == [
        (0, 3, False, False),
        (1, 3, True, False),
        (2, 3, True, False),
        (3, 3, True, False),
        (3, 3, False, True),
    ]
    assert [i.video.video_id for i in items if i.video is not None] == [10, 20, 30]
    assert not any(i.skipped for i in items) and items[-1].merged == 3 * 4 == len(json.loads(results.read_text()))

    # A rerun only processes the video whose part is missing; the merged file is the same.
    merged = results.read_text()
    (tmp_path / "out" / "results.json.parts" / "20.json").unlink()
    again = list(iter_segment_dataset(gt, tmp_path / "frames", results, model, DatasetOptions(top_k=4, min_size=64)))
    assert [(i.video.video_id, i.skipped) for i in again if i.video is not None] == [
        (10, True),
        (20, False),
        (30, True),
    ]
    assert results.read_text() == merged

    with pytest.raises(OVFormerError, match="is not a folder; check `frames_root`"):
        next(iter_segment_dataset(gt, tmp_path / "nowhere", results, model))


def test_one_path_is_one_input_and_an_abandoned_batch_writes_nothing(tmp_path: Path, weights):  # noqa: F811
    write_video(tmp_path / "a.mp4", num_frames=7)
    out = tmp_path / "out"
    never = CountingLoader(None)
    (out / "a.json").mkdir(parents=True)  # fails before the model: shows how the path was taken
    summary = segment_batch(str(tmp_path / "a.mp4"), VOCABULARY, never, options(out))
    assert [o.input for o in summary.outcomes] == [str(tmp_path / "a.mp4")]  # not one input per character
    (out / "a.json").rmdir()

    items = iter_segment_batch([tmp_path / "a.mp4"], VOCABULARY, CountingLoader(weights), options(out, window=5))
    assert next(items).event == "start" and next(items).event == "window"
    items.close()  # the caller stops after the first window
    assert list(out.iterdir()) == []
    with pytest.raises(OVFormerError, match="no input given"):
        segment_batch([], VOCABULARY, never, options(out))

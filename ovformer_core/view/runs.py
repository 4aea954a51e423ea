"""Runs started from the page: one model per server, one run at a time, the others queued.

A run segments one video under the served folder with a vocabulary typed in the page and writes
``NAME.json`` next to the other results (``NAME-2.json``... when the name is taken, so no result and
no review is ever replaced). Its progress (frames done, windows per second) is read by the page while
it runs; a failure is kept as the run's one-line message.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ovformer_core.errors import OVFormerError, VocabularyError
from ovformer_core.io.outputs import OutputPaths, reviewed_path
from ovformer_core.io.results import VideoResult, write_result_json

log = logging.getLogger("ovformer")

RunState = Literal["queued", "running", "done", "failed", "cancelled"]
#: Most runs waiting at once.
MAX_QUEUED = 20
#: Most vocabulary names one run may have, and the longest name.
MAX_CLASSES = 2000
MAX_CLASS_NAME = 200
#: Finished runs kept for the page's list.
FINISHED_KEPT = 50


def parse_vocabulary(text: Any) -> list[str]:
    """Class names from the page's vocabulary field: separated by commas or new lines.

    Names are kept as names (never read as a file path).

    Raises:
        VocabularyError: not text, empty, too many or too long names.
    """
    if not isinstance(text, str):
        raise VocabularyError("the vocabulary must be text: names separated by commas")
    names = [" ".join(part.split()) for part in text.replace("\n", ",").split(",")]
    names = list(dict.fromkeys(name for name in names if name))
    if not names:
        raise VocabularyError("the vocabulary is empty; type class names separated by commas")
    if len(names) > MAX_CLASSES or any(len(name) > MAX_CLASS_NAME for name in names):
        raise VocabularyError(
            f"the vocabulary has more than {MAX_CLASSES} names or a name over {MAX_CLASS_NAME} characters; shorten it"
        )
    return names


@dataclass
class RunJob:
    """One run and its progress.

    Attributes:
        job_id: 1, 2, ... in submission order.
        video: the source video (real path, inside the served folder).
        display: how the page names the video.
        classes: the vocabulary.
        model: the model name.
        threshold: score threshold of reported tracks.
        state: queued, running, done, failed or cancelled.
        frames_done: frames processed so far.
        frames_total: estimated frames of the video (0 if unknown).
        windows: windows processed so far.
        seconds: model time so far.
        result_file: the result written (relative to the served folder), when done.
        error: the one-line failure, when failed.
    """

    job_id: int
    video: Path
    display: str
    classes: list[str]
    model: str
    threshold: float
    state: RunState = "queued"
    frames_done: int = 0
    frames_total: int = 0
    windows: int = 0
    seconds: float = 0.0
    result_file: str | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "video": self.display,
            "classes": self.classes,
            "model": self.model,
            "threshold": self.threshold,
            "state": self.state,
            "frames_done": self.frames_done,
            "frames_total": self.frames_total,
            "windows_per_second": round(self.windows / self.seconds, 3) if self.seconds > 0 else None,
            "result_file": self.result_file,
            "error": self.error,
        }


def free_result_path(folder: Path, name: str) -> Path:
    """``folder/NAME.json``, or ``NAME-2.json``, ``NAME-3.json``... whichever is not taken yet."""
    candidate = OutputPaths.for_input(folder, name).result
    number = 2
    while candidate.exists() or reviewed_path(candidate).exists():
        candidate = OutputPaths.for_input(folder, f"{name}-{number}").result
        number += 1
    return candidate


class RunQueue:
    """Runs videos one after the other on a background thread.

    Args:
        segment: ``(job) -> VideoResult``; runs the model, reporting progress into the job and
            stopping early (raising ``OVFormerError``) once ``job.cancel`` is set.
        out_dir: where results are written.
        on_result: called with each result file written (so the index lists it).
    """

    def __init__(
        self,
        segment: Callable[[RunJob], VideoResult],
        out_dir: Path,
        on_result: Callable[[Path], None] = lambda path: None,
    ) -> None:
        self._segment = segment
        self.out_dir = out_dir
        self._on_result = on_result
        self._jobs: deque[RunJob] = deque()
        self._pending: deque[RunJob] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="ovformer-view-runs", daemon=True)
        self._thread.start()

    def submit(self, video: Path, display: str, classes: list[str], model: str, threshold: float) -> RunJob:
        """Queue a run.

        Raises:
            OVFormerError: the queue is full.
        """
        with self._lock:
            if len(self._pending) >= MAX_QUEUED:
                raise OVFormerError(f"{MAX_QUEUED} runs are already waiting; start this one when some are done")
            job = RunJob(next(self._ids), video, display, classes, model, threshold)
            self._jobs.append(job)
            self._pending.append(job)
            finished = [j for j in self._jobs if j.state in ("done", "failed", "cancelled")]
            for old in finished[: max(0, len(finished) - FINISHED_KEPT)]:
                self._jobs.remove(old)
            self._wake.notify()
        return job

    def jobs(self) -> list[dict[str, Any]]:
        """Every run still listed, oldest first."""
        with self._lock:
            return [job.to_dict() for job in self._jobs]

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the running and queued runs and wait (up to ``timeout`` s) for the worker to end."""
        with self._lock:
            self._stopping = True
            for job in self._jobs:
                job.cancel.set()
            self._wake.notify()
        self._thread.join(timeout)

    def _next(self) -> RunJob | None:
        with self._lock:
            while not self._pending and not self._stopping:
                self._wake.wait()
            if self._stopping:
                for job in self._pending:
                    job.state = "cancelled"
                return None
            job = self._pending.popleft()
            job.state = "running"
            return job

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                result = self._segment(job)
                target = free_result_path(self.out_dir, result.video_name)
                write_result_json(target, result)
            except OVFormerError as err:
                job.state = "cancelled" if job.cancel.is_set() else "failed"
                job.error = str(err)
                continue
            except Exception as err:  # a bug must not stop the worker: the page shows it, the log keeps it
                log.exception("run %d failed", job.job_id)
                job.state, job.error = "failed", f"internal error ({type(err).__name__}: {err})"
                continue
            job.result_file = target.relative_to(self.out_dir).as_posix()
            job.state = "done"
            self._on_result(target)


class ModelHolder:
    """The one model of a server: loaded on first use, replaced when another model is picked.

    Args:
        load: ``(model name) -> predictor``.
    """

    def __init__(self, load: Callable[[str], Any]) -> None:
        self._load = load
        self._name: str | None = None
        self._model: Any = None
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        """The predictor for ``name`` (the previous model is dropped first when it differs)."""
        with self._lock:
            if self._name != name:
                self._model, self._name = None, None
                self._model = self._load(name)
                self._name = name
            return self._model


def segment_job(holder: ModelHolder, min_size: int | None) -> Callable[[RunJob], VideoResult]:
    """The ``RunQueue`` segment function: the holder's model, progress written into the job."""

    def run(job: RunJob) -> VideoResult:
        from ovformer_core.io.video import open_source
        from ovformer_core.predictor import segment_options_for

        predictor = holder.get(job.model)
        options = segment_options_for(predictor.cfg).updated(score_threshold=job.threshold, min_size=min_size)
        source = open_source(job.video)
        job.frames_total = source.estimated_output_frames
        result: VideoResult | None = None
        started = time.perf_counter()
        items = predictor.iter_segment(source, job.classes, options=options)
        try:
            for item in items:
                if item.result is not None:
                    result = item.result
                    break
                job.frames_done = item.frames_done
                job.windows += 1
                job.seconds = time.perf_counter() - started
                if job.cancel.is_set():
                    raise OVFormerError("cancelled: the server is stopping")
        finally:
            items.close()
        assert result is not None
        job.frames_total = result.num_frames
        return result

    return run

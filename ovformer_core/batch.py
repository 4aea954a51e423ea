"""Batch runs: many inputs -> result files per input, and a whole dataset split -> one results file.

``iter_segment_batch`` is what ``ovformer segment INPUT...`` runs, as a generator a Python user can
drive too: for each input it checks the output paths, skips an input whose requested outputs all
exist (``skip_existing``), makes missing formats from a saved full result without the model, or
opens the source, loads the model on first need (the caller's ``load``), segments, and writes the
full result first and then the other formats. One input's bad video or blocked output is that
input's ``failed`` outcome; the batch goes on. Under ``torchrun`` (a ``ProcessGroup`` of several
processes) each rank takes every ``world_size``-th input.

``iter_segment_dataset`` is ``ovformer segment --dataset``: every video of a YouTube-VIS-format split,
sharded over the ``torchrun`` ranks, merged by rank 0 into one results file
(``ovformer_core.inference.dataset``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ovformer_core.devices import ProcessGroup, choose_device, process_group
from ovformer_core.errors import OutputError, OVFormerError, ResultsError, VideoError
from ovformer_core.io.outputs import (
    OUTPUT_FORMATS,
    RESULT,
    OutputPaths,
    check_output_paths,
    check_writable,
    missing_outputs,
    write_outputs,
)
from ovformer_core.io.results import VideoResult, load_result, write_result_json
from ovformer_core.io.video import ReadOptions, SourceSpec, open_source, resolve_inputs

if TYPE_CHECKING:  # the model code (torch, timm, open_clip) is imported when the model is needed: a batch
    # whose inputs are all missing, skipped or done says so in a moment
    from ovformer_core.config import ModelConfig
    from ovformer_core.inference.dataset import DatasetVideo
    from ovformer_core.inference.precision import Precision
    from ovformer_core.inference.segment import Mode, SegmentOptions
    from ovformer_core.predictor import Predictor, SegmentProgress, VocabularySpec

log = logging.getLogger("ovformer")

#: Errors that fail one input of a batch (its video, its saved result, its outputs); any other error
#: (weights, vocabulary, options) stops the batch, since every input would fail the same way.
INPUT_ERRORS = (VideoError, ResultsError, OutputError)

Status = Literal["ok", "failed", "skipped"]
Event = Literal["start", "window", "outcome"]


@dataclass(frozen=True)
class ModelSpec:
    """The arguments of ``load_model``, kept until a run needs the model.

    Attributes:
        model: release name (``r50-lvvis``, ...).
        weights: model weights file; None: the cache (or a download).
        clip_weights: CLIP ViT-B/32 weights file; None: the cache (or a download).
        device: ``cpu``, ``cuda``, ``cuda:N``; None: CUDA when available. Under ``torchrun`` a plain
            ``cuda`` means the GPU of the process's local rank.
        precision: the network's precision (``ovformer_core.inference.precision``).
        allow_download: download missing weights.
        progress: show download progress.
    """

    model: str = "r50-lvvis"
    weights: str | os.PathLike[str] | None = None
    clip_weights: str | os.PathLike[str] | None = None
    device: str | None = None
    precision: Precision = "auto"
    allow_download: bool = True
    progress: bool = True

    def load(self, group: ProcessGroup | None = None) -> Predictor:
        """``load_model`` with these arguments, on the GPU of ``group``'s local rank when it has several processes."""
        device = self.device
        if group is not None and group.is_distributed:
            device = str(choose_device(device, group.local_rank, local_world_size=group.local_world_size))
        from ovformer_core.predictor import load_model

        return load_model(
            self.model,
            self.weights,
            self.clip_weights,
            device=device,
            precision=self.precision,
            allow_download=self.allow_download,
            progress=self.progress,
        )


@dataclass(frozen=True)
class BatchOptions:
    """What ``iter_segment_batch`` writes and how it segments.

    Attributes:
        out_dir: folder of the outputs (``ovformer_core.io.outputs.OutputPaths``).
        formats: outputs next to the full result, from ``OUTPUT_FORMATS``.
        skip_existing: skip inputs whose requested outputs all exist; make missing formats from a
            saved full result without the model.
        read: which frames of each input to read.
        mode, window, top_k, score_threshold, min_size, precision: changes to the model's own
            inference rule (``segment_options_for``); None keeps its value.
    """

    out_dir: Path
    formats: tuple[str, ...] = ()
    skip_existing: bool = False
    read: ReadOptions = field(default_factory=ReadOptions)
    mode: Mode | None = None
    window: int | None = None
    top_k: int | None = None
    score_threshold: float | None = None
    min_size: int | None = None
    precision: Precision | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.formats if name not in OUTPUT_FORMATS]
        if unknown:
            raise OutputError(f"unknown output format {unknown[0]!r}; choose from {', '.join(OUTPUT_FORMATS)}")
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "formats", tuple(dict.fromkeys(self.formats)))

    def segment_options(self, cfg: ModelConfig) -> SegmentOptions:
        """The model's inference rule with this batch's changes."""
        from ovformer_core.predictor import segment_options_for

        return segment_options_for(cfg).updated(
            mode=self.mode,
            window=self.window,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            min_size=self.min_size,
            precision=self.precision,
        )


@dataclass(frozen=True)
class InputOutcome:
    """How one input of a batch ended.

    Attributes:
        input: the input: its path, or the argument as given when it named nothing.
        status: ``ok`` (outputs written), ``failed`` (``error`` says why) or ``skipped`` (every
            requested output existed).
        error: why the input failed.
        result: the segmented video (``ok``): made by the model, or read from a saved full result.
        result_path: where the full result is (``ok``).
        model_run: the model segmented the input (False: the formats were made from a saved result).
        seconds: wall-clock time spent on the input.
    """

    input: str
    status: Status
    error: OVFormerError | None = None
    result: VideoResult | None = None
    result_path: Path | None = None
    model_run: bool = False
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """False for a result of a damaged or truncated video that decoded only in part."""
        return self.result is None or self.result.decode is None or self.result.decode.complete

    def to_json(self, message: Callable[[str], str] = str) -> dict[str, Any]:
        """The outcome as ``BatchSummary.to_json`` lists it (``skipped`` inputs are listed by name only)."""
        if self.status == "failed":
            return {"input": self.input, "error": message(str(self.error))}
        if self.status == "skipped" or self.result is None:
            return {"input": self.input}
        decode = self.result.decode
        return {
            "input": self.input,
            "result": str(self.result_path),
            "tracks": len(self.result.tracks),
            "frames": self.result.num_frames,
            "seconds": round(self.seconds, 3),
            "model_run": self.model_run,
            "complete": self.complete,
            "decode": None if decode is None else decode.summary(),
        }


@dataclass(frozen=True)
class BatchItem:
    """What ``iter_segment_batch`` yields.

    Attributes:
        event: ``start``: the model is about to segment the input (``progress`` holds the expected
            frames, none done); ``window``: a window of frames is done (``progress``; on the input's
            last one ``progress.result`` is set, before the outputs are written); ``outcome``: the
            input is finished (``outcome``), always the input's last item.
        input: the input, named as in its outcome.
        spec: the resolved input (None for an argument that names nothing).
        progress: the model's progress on the input (``start`` and ``window``).
        outcome: how the input ended (``outcome``).
    """

    event: Event
    input: str
    spec: SourceSpec | None = None
    progress: SegmentProgress | None = None
    outcome: InputOutcome | None = None


@dataclass(frozen=True)
class BatchSummary:
    """Every input's outcome, in input order (arguments that named nothing first)."""

    outcomes: tuple[InputOutcome, ...]

    @property
    def ok(self) -> list[InputOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "ok"]

    @property
    def failed(self) -> list[InputOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]

    @property
    def skipped(self) -> list[InputOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "skipped"]

    @property
    def incomplete(self) -> list[InputOutcome]:
        """Inputs with a result that is missing frames (a damaged video decoded in part)."""
        return [outcome for outcome in self.ok if not outcome.complete]

    def to_json(self, message: Callable[[str], str] = str) -> dict[str, Any]:
        """A JSON-ready summary: ``{"ok": [...], "failed": [...], "skipped": [...], "incomplete": [...]}``.

        ``ok`` entries hold input, result, tracks, frames, seconds, model_run, complete and decode;
        ``failed`` entries input and error; ``skipped`` and ``incomplete`` list input names.

        Args:
            message: turns an error's line into the caller's words (the CLI's flags for parameters).
        """
        return {
            "ok": [outcome.to_json(message) for outcome in self.ok],
            "failed": [outcome.to_json(message) for outcome in self.failed],
            "skipped": [outcome.input for outcome in self.skipped],
            "incomplete": [outcome.input for outcome in self.incomplete],
        }


def failure_line(input_name: str, error: str) -> str:
    """``input: error``, without repeating the input when the error already names it."""
    return error if input_name in error else f"{input_name}: {error}"


def saved_result(paths: OutputPaths) -> VideoResult | None:
    """The full result saved by an earlier run, or None when it cannot be read (then the model runs again)."""
    try:
        return load_result(paths.result)
    except ResultsError as err:
        log.warning("%s; running the model again", err)
        return None


def iter_segment_batch(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    vocabulary: VocabularySpec,
    load: Callable[[], Predictor],
    options: BatchOptions,
    group: ProcessGroup | None = None,
) -> Generator[BatchItem, None, None]:
    """Segment many inputs into files; yields progress and one outcome per input (see ``BatchItem``).

    The model is loaded by ``load`` when the first input needs it, after that input's source opened
    (a corrupt input fails without loading the model), and never when every input is skipped or made
    from saved results.

    Args:
        inputs: videos, frame folders, images or glob patterns (or one of them); one that names nothing
            is a failed outcome (yielded first), not an error.
        vocabulary: a ``Vocabulary``, a ``.vocab``/``.txt`` path, a list of names or ``"a,b,c"``.
        load: returns the predictor (e.g. ``ModelSpec(...).load`` or a ``load_model`` partial).
        options: outputs, skipping, frame selection and inference changes.
        group: this process's place in a ``torchrun`` job: it takes every ``world_size``-th input,
            and only rank 0 reports the arguments that named nothing. None: one process.

    Raises:
        OutputError: the output folder cannot be used (before any input).
        OVFormerError: the model or the vocabulary cannot be loaded, or an inference option is bad:
            every input would fail the same way.
    """
    group = group or ProcessGroup()
    specs, unresolved = resolve_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    if group.is_distributed:
        specs, unresolved = group.shard(specs), unresolved if group.is_main else []
    check_writable(options.out_dir)
    for failure in unresolved:
        yield BatchItem("outcome", failure.input, outcome=InputOutcome(failure.input, "failed", error=failure.error))
    model: tuple[Predictor, Any] | None = None  # the predictor and its vocabulary, once loaded
    for spec in specs:
        started = time.perf_counter()
        name = str(spec.path)
        paths = OutputPaths.for_input(options.out_dir, spec.name)
        try:
            check_output_paths(paths, options.formats)  # before any model work
            missing = (
                missing_outputs(paths, options.formats, spec.path)
                if options.skip_existing
                else [RESULT, *options.formats]
            )
            if not missing:
                yield BatchItem("outcome", name, spec, outcome=InputOutcome(name, "skipped"))
                continue
            result = saved_result(paths) if RESULT not in missing else None
            model_run = result is None
            if result is None:
                source = open_source(spec, options.read)  # probes first: a corrupt input fails without the model
                if model is None:
                    from ovformer_core.predictor import SegmentProgress

                    predictor = load()
                    model = (predictor, predictor.vocabulary(vocabulary))
                predictor, vocab = model
                segment_options = options.segment_options(predictor.cfg)
                start = SegmentProgress(0, source.estimated_output_frames, 0.0, source.output_frames_exact)
                yield BatchItem("start", name, spec, progress=start)
                for progress in predictor.iter_segment(source, vocab, options=segment_options, video_id=spec.video_id):
                    yield BatchItem("window", name, spec, progress=progress)
                    result = progress.result
                assert result is not None, "iter_segment ends with the result"
                # The full result first: an interrupted run keeps the model's work, and a rerun with
                # skip_existing makes the missing formats from it.
                write_result_json(paths.result, result)
            todo = list(options.formats) if model_run else [output for output in missing if output != RESULT]
            write_outputs(result, todo, paths, spec.path)
        except INPUT_ERRORS as err:
            yield BatchItem("outcome", name, spec, outcome=InputOutcome(name, "failed", error=err))
            continue
        outcome = InputOutcome(
            name,
            "ok",
            result=result,
            result_path=paths.result,
            model_run=model_run,
            seconds=time.perf_counter() - started,
        )
        yield BatchItem("outcome", name, spec, outcome=outcome)


def segment_batch(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    vocabulary: VocabularySpec,
    load: Callable[[], Predictor],
    options: BatchOptions,
    group: ProcessGroup | None = None,
) -> BatchSummary:
    """``iter_segment_batch`` run to the end: every input's outcome (same arguments and errors)."""
    items = iter_segment_batch(inputs, vocabulary, load, options, group)
    return BatchSummary(tuple(item.outcome for item in items if item.outcome is not None))


@dataclass(frozen=True)
class DatasetOptions:
    """The inference options of a whole-split run (None: the model's own); no score threshold is applied.

    Attributes:
        top_k, min_size, window, precision: as in ``SegmentOptions``.
    """

    top_k: int | None = None
    min_size: int | None = None
    window: int | None = None
    precision: Precision = "auto"

    def segment_options(self, cfg: ModelConfig) -> SegmentOptions:
        """The model's inference rule with these changes, every candidate kept (the evaluator ranks them)."""
        from ovformer_core.predictor import segment_options_for

        return segment_options_for(cfg).updated(
            score_threshold=0.0, top_k=self.top_k, min_size=self.min_size, window=self.window, precision=self.precision
        )


@dataclass(frozen=True)
class DatasetProgress:
    """What ``iter_segment_dataset`` yields.

    Attributes:
        rank: this process's rank.
        total: videos of this rank's share.
        done: videos of the share finished (processed or skipped) so far.
        video: the video just finished (None on the first item, once the model is loaded, and on the last).
        skipped: ``video`` had its part file already.
        finished: the last item: every rank is done and rank 0 merged the parts.
        merged: entries written to the results file (rank 0's last item; None otherwise).
        num_videos: videos in the whole split.
    """

    rank: int
    total: int
    done: int
    num_videos: int
    video: DatasetVideo | None = None
    skipped: bool = False
    finished: bool = False
    merged: int | None = None


def iter_segment_dataset(
    dataset_path: str | os.PathLike[str],
    frames_root: str | os.PathLike[str],
    results_path: str | os.PathLike[str],
    model: ModelSpec,
    options: DatasetOptions | None = None,
    group: ProcessGroup | None = None,
    results_parameter: str = "results_path",
) -> Generator[DatasetProgress, None, None]:
    """Segment a YouTube-VIS-format split into one results file, sharded over the ranks of ``group``.

    Each video is saved as a part file as soon as it is done (a rerun resumes); after every rank is
    done, rank 0 merges the parts (``ovformer_core.inference.dataset``). The file is the same whatever
    the number of processes. Yields once the model is loaded, after each video, and when finished.

    Args:
        dataset_path: the split's json (its category names are the vocabulary).
        frames_root: folder its ``file_names`` are relative to.
        results_path: the merged results file.
        model: what to load; a plain ``cuda`` device means the GPU of the process's local rank.
        options: inference changes (default: the model's own rule).
        group: this process's place in a ``torchrun`` job (None: one process); several processes
            join the job's collective group for the run.
        results_parameter: the setting ``results_path`` came from, named when its folder is unusable.

    Raises:
        ResultsError: a malformed dataset file, or a bad part file when merging.
        OVFormerError: ``frames_root`` is not a folder, the results folder cannot be written, or the
            model cannot be loaded.
    """
    import torch.distributed as dist

    from ovformer_core.inference.dataset import check_frames, iter_segment_split, merge_parts, read_dataset, split_keys

    options = options or DatasetOptions()
    group = group or ProcessGroup()
    results_path = Path(results_path)
    data = read_dataset(dataset_path)
    if not Path(frames_root).is_dir():
        raise OVFormerError(f"frames root {frames_root} is not a folder; check `frames_root`")
    check_writable(results_path.parent, results_parameter)
    if results_path.is_dir():
        raise OutputError(
            f"{results_path} is a folder; give the results file's own name, e.g. {results_path / 'results.json'}"
        )
    check_frames(frames_root, group.shard(data.videos))
    torch_device = choose_device(model.device, group.local_rank, local_world_size=group.local_world_size)
    with process_group(group, torch_device):
        predictor = replace(model, device=str(torch_device), progress=model.progress and group.is_main).load()
        total = len(group.shard(data.videos))
        done = 0
        yield DatasetProgress(group.rank, total, done, len(data.videos))
        run_options = options.segment_options(predictor.cfg)
        share = iter_segment_split(
            predictor, data, frames_root, results_path, run_options, group.rank, group.world_size
        )
        for video, skipped in share:
            done += 1
            yield DatasetProgress(group.rank, total, done, len(data.videos), video, skipped)
        if group.is_distributed:
            dist.barrier()
        merged = None
        if group.is_main:
            merged = merge_parts(data, results_path, split_keys(predictor, data, frames_root, run_options))
        yield DatasetProgress(group.rank, total, done, len(data.videos), finished=True, merged=merged)

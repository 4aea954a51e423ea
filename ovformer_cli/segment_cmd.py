"""``ovformer segment``: tracked masks for videos, frame folders, images, or a whole dataset split.

The batch itself (skipping, saved results, model loading, writing, torchrun shards) is
``ovformer_core.batch``; this command parses options, draws progress and tables, and picks the exit status.
"""

from __future__ import annotations

import json
import logging
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ovformer_cli.console import ThreadsOption, as_flags, progress_bar, stderr, stdout, user_errors
from ovformer_cli.exit_status import EXIT_USER_ERROR
from ovformer_core.errors import OVFormerError

if TYPE_CHECKING:  # heavy imports only for the type checker; commands import them when they run
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from ovformer_core.batch import BatchItem, BatchSummary, DatasetOptions, InputOutcome, ModelSpec
    from ovformer_core.devices import ProcessGroup
    from ovformer_core.inference.precision import Precision as PrecisionName
    from ovformer_core.inference.segment import Mode as ModeName
    from ovformer_core.io.results import VideoResult

log = logging.getLogger("ovformer")

#: Exit status when some inputs of a batch failed (the others were processed).
EXIT_SOME_FAILED = 1
#: Exit status when every input has a result but some are incomplete (a damaged video decoded in part).
EXIT_INCOMPLETE = 4


class Extra(str, Enum):
    """Outputs written next to the full ``<name>.json`` result."""

    ytvis = "ytvis"
    coco = "coco"
    overlay = "overlay"
    png = "png"
    cvat_video = "cvat-video"
    mots = "mots"
    datumaro = "datumaro"


class Mode(str, Enum):
    """Inference rule; default: the model's own (semi-online for LV-VIS, per-frame for LVIS)."""

    semi_online = "semi-online"
    per_frame = "per-frame"
    offline = "offline"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def summary_table(result: VideoResult) -> Table:
    """Rich table: track, label, score, first/last frame with a mask."""
    from rich.table import Table

    table = Table(title=f"{result.video_name}: {len(result.tracks)} tracks, {result.num_frames} frames")
    for column in ("track", "label", "score", "first", "last"):
        table.add_column(column, justify="right" if column != "label" else "left")
    for track in result.tracks:
        span = result.track_span(track)
        first, last = (str(span[0]), str(span[1])) if span is not None else ("-", "-")
        table.add_row(str(track.track_id), track.category_name, f"{track.score:.3f}", first, last)
    return table


class FrameProgress:
    """The progress bar (frames, frames/s) of the input the model runs on; drawn only on a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._elapsed = 0.0

    def show(self, item: BatchItem) -> None:
        """Draw a ``start`` or ``window`` item of ``iter_segment_batch``; the input's last window ends the bar."""
        progress, spec = item.progress, item.spec
        assert progress is not None and spec is not None
        if item.event == "start":
            # A count from the container is shown as is, an estimate (no frame index) with a "~".
            name = spec.name if progress.frames_total_exact else f"{spec.name} (~{progress.frames_total} frames)"
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
            )
            self._bar = progress_bar(*columns, quiet=self.quiet)
            self._bar.start()
            self._task = self._bar.add_task(name, total=progress.frames_total or None, rate="")
            self._elapsed = 0.0
            return
        assert self._bar is not None and self._task is not None
        # The library's count (the real one on the last item, once decoding has ended).
        total = max(progress.frames_total, progress.frames_done) or None
        if progress.result is not None:
            self._bar.update(self._task, total=total, completed=progress.frames_done)
            self.close()
            return
        self._elapsed += progress.seconds
        rate = f"{progress.frames_done / max(self._elapsed, 1e-9):.1f} frames/s"
        self._bar.update(self._task, total=total, completed=progress.frames_done, rate=rate)
        log.debug("%s: %d frames, %s", spec.name, progress.frames_done, rate)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


#: ``--threshold`` when not given: tracks below it are not reported (a dataset run keeps them all).
DEFAULT_THRESHOLD = 0.3


@user_errors
def segment(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Videos (mp4, avi, mkv, webm, mov...), frame folders, images, or globs.", metavar="INPUT..."
        ),
    ] = None,
    vocab: Annotated[
        str | None,
        typer.Option("--vocab", help="Categories: a .txt (one per line, synonyms after commas), a .vocab, or 'a,b,c'."),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", help="Run a whole YouTube-VIS-format split (its categories are the vocabulary)."),
    ] = None,
    frames_root: Annotated[
        Path | None, typer.Option("--frames-root", help="Folder the dataset's file_names are relative to.")
    ] = None,
    results: Annotated[
        Path | None, typer.Option("--results", help="Results file of --dataset (default: OUT_DIR/results.json).")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="r50-lvvis | swinb-lvvis | r50-lvis | swinb-lvis")
    ] = "r50-lvvis",
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Model weights file (default: cache/download).")
    ] = None,
    clip_weights: Annotated[Path | None, typer.Option("--clip-weights", help="CLIP ViT-B/32 weights file.")] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Folder for the results.")] = Path("ovformer_out"),
    extras: Annotated[
        list[Extra] | None,
        typer.Option(
            "--format", "-f", help="Also write: ytvis, coco, overlay, png, cvat-video, mots, datumaro (repeatable)."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cuda, cpu, cuda:N.", show_default="cuda if available, else cpu")
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision",
            help="Network precision; auto: bf16 on CPUs with AMX/AVX512-BF16 and on bf16 GPUs, else fp32 "
            "(fp32 reproduces the official model).",
        ),
    ] = Precision.auto,
    threads: ThreadsOption = None,
    mode: Annotated[
        Mode | None,
        typer.Option(
            "--mode",
            help="semi-online | per-frame | offline (whole video as one clip).",
            show_default="the model's: semi-online for *-lvvis, per-frame for *-lvis",
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            "--window",
            help="Frames per clip (semi-online), per forward pass (per-frame), decoded at a time (offline).",
            min=1,
            show_default="5 (official) for *-lvvis, 10 for *-lvis",
        ),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", help="Candidates kept per video.", min=1, show_default="50 (official LV-VIS)"),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Report tracks scoring at least this (0 = all top-k).", show_default="0.3"),
    ] = None,
    min_size: Annotated[
        int | None,
        typer.Option(
            "--min-size",
            help="Shortest side fed to the network.",
            min=32,
            show_default="360 for r50-*, 480 for swinb-*",
        ),
    ] = None,
    stride: Annotated[int, typer.Option("--stride", help="Use every N-th frame.", min=1)] = 1,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Stop after this many frames.", min=1)] = None,
    start: Annotated[
        float | None, typer.Option("--start", help="Start time, seconds on the video's own timeline.", min=0)
    ] = None,
    end: Annotated[
        float | None, typer.Option("--end", help="End time (exclusive), seconds on the video's timeline.")
    ] = None,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Skip inputs whose requested outputs all exist; make missing formats from a saved result.",
        ),
    ] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and warnings.")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Find, segment, track and name every object of the given categories in each input."""
    from ovformer_core.batch import BatchOptions, BatchSummary, DatasetOptions, ModelSpec, iter_segment_batch
    from ovformer_core.cpu_threads import set_threads
    from ovformer_core.devices import ProcessGroup
    from ovformer_core.io.video import ReadOptions

    set_threads(threads)
    precision_name = cast("PrecisionName", precision.value)
    model_spec = ModelSpec(
        model,
        weights,
        clip_weights,
        device=device,
        precision=precision_name,
        allow_download=not offline,
        progress=not quiet,
    )
    group = ProcessGroup.from_env()
    if dataset is not None:
        if inputs:
            raise OVFormerError("give either input videos or --dataset, not both")
        if frames_root is None:
            raise OVFormerError("--dataset needs --frames-root, the folder its file_names are relative to")
        not_for_split = [
            name
            for name, given in (
                ("--vocab", vocab is not None),
                ("--format", bool(extras)),
                ("--mode", mode is not None),
                ("--threshold", threshold is not None),
                ("--stride", stride != 1),
                ("--max-frames", max_frames is not None),
                ("--start", start is not None),
                ("--end", end is not None),
                ("--skip-existing", skip_existing),
                ("--json", json_summary),
            )
            if given
        ]
        if not_for_split:
            raise OVFormerError(
                f"{', '.join(not_for_split)} cannot be used with --dataset, which runs every frame of the split "
                "with its own categories and the model's own rule, keeps every candidate for the evaluator and "
                "resumes from its saved parts by itself; drop them"
            )
        split_options = DatasetOptions(top_k, min_size, window, precision_name)
        results_path, parameter = (results, "results") if results is not None else (out_dir / "results.json", "out_dir")
        run_split(dataset, frames_root, results_path, parameter, model_spec, split_options, group, quiet)
        return
    if not inputs or vocab is None:
        raise OVFormerError("give input videos and --vocab (or --dataset with --frames-root)")
    options = BatchOptions(
        out_dir,
        formats=tuple(extra.value for extra in extras or []),
        skip_existing=skip_existing,
        read=ReadOptions(stride=stride, max_frames=max_frames, start_time=start, end_time=end),
        mode=None if mode is None else cast("ModeName", mode.value),
        window=window,
        top_k=top_k,
        score_threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        min_size=min_size,
        precision=precision_name,
    )
    tables = not quiet and not json_summary
    bar = FrameProgress(quiet or json_summary)
    outcomes: list[InputOutcome] = []
    try:
        for item in iter_segment_batch(inputs, vocab, lambda: model_spec.load(group), options, group):
            if item.outcome is None:
                bar.show(item)
                continue
            bar.close()
            outcomes.append(item.outcome)
            report(item.outcome, tables)
    finally:
        bar.close()
    summary = BatchSummary(tuple(outcomes))
    if tables and summary.skipped:
        stderr.print(f"skipped {len(summary.skipped)} input(s) whose outputs all exist", highlight=False)
    if json_summary:
        typer.echo(json.dumps(summary.to_json(as_flags)))
    status = exit_status(summary, quiet)
    if status:
        raise typer.Exit(status)


def report(outcome: InputOutcome, tables: bool) -> None:
    """What is printed when an input is done: an incomplete result's warning (always), its table and file."""
    if outcome.status != "ok" or outcome.result is None:
        return
    result = outcome.result
    if not outcome.complete:
        assert result.decode is not None
        # Printed even when quiet: frames were lost, and a batch log should say which input lost them.
        stderr.print(f"warning: {outcome.input}: incomplete: {result.decode.summary()}", highlight=False, markup=False)
    if tables:
        stdout.print(summary_table(result))
        rate = result.num_frames / max(outcome.seconds, 1e-9)
        stdout.print(f"wrote {outcome.result_path} ({rate:.1f} frames/s)", highlight=False, markup=False)


def exit_status(summary: BatchSummary, quiet: bool) -> int:
    """Print the failed inputs (one line each, even when quiet) and the incomplete count; the exit status."""
    from ovformer_core.batch import failure_line

    if summary.failed:
        # Quiet drops the header, never the errors themselves: one "error: ..." line per failed input.
        if not quiet:
            stderr.print(f"[bold red]{len(summary.failed)} of {len(summary.outcomes)} inputs failed:[/]")
        for failure in summary.failed:
            line = failure_line(failure.input, as_flags(str(failure.error)))
            stderr.print(f"error: {line}" if quiet else f"  {line}", highlight=False, markup=False)
        return EXIT_SOME_FAILED
    if summary.incomplete:
        if not quiet:
            stderr.print(
                f"{len(summary.incomplete)} of {len(summary.outcomes)} inputs are incomplete "
                "(damaged or truncated videos)",
                highlight=False,
            )
        return EXIT_INCOMPLETE
    return 0


def run_split(
    dataset_path: Path,
    frames_root: Path,
    results_path: Path,
    results_parameter: str,
    model: ModelSpec,
    options: DatasetOptions,
    group: ProcessGroup,
    quiet: bool,
) -> None:
    """``--dataset``: ``ovformer_core.batch.iter_segment_dataset`` with a progress bar per rank."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ovformer_core.batch import iter_segment_dataset

    items = iter_segment_dataset(dataset_path, frames_root, results_path, model, options, group, results_parameter)
    item = loaded = next(items)  # the bar starts once the model is loaded: it would clash with a download's
    columns = (TextColumn("rank {task.fields[rank]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with progress_bar(*columns, quiet=quiet) as progress:
        task = progress.add_task("split", total=loaded.total, rank=loaded.rank)
        for item in items:
            if item.video is None:  # the last item: every rank is done, rank 0 merged the parts
                break
            progress.advance(task)
    if item.merged is not None and not quiet:
        stdout.print(
            f"wrote {results_path} ({item.merged} results for {item.num_videos} "
            f"video{'s' if item.num_videos != 1 else ''})",
            highlight=False,
            markup=False,
        )


__all__ = ["segment", "EXIT_USER_ERROR"]

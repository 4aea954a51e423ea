"""``ovformer segment``: tracked masks for videos, frame folders, images, or a whole dataset split."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ovformer_cli.console import ThreadsOption, as_flags, progress_bar, stderr, stdout, user_errors
from ovformer_cli.exit_status import EXIT_USER_ERROR
from ovformer_core.errors import OutputError, OVFormerError, ResultsError, VideoError

if TYPE_CHECKING:  # heavy imports only for the type checker; commands import them when they run
    from rich.table import Table

    from ovformer_core.devices import ProcessGroup
    from ovformer_core.inference.segment import Mode as ModeName
    from ovformer_core.inference.segment import Precision as PrecisionName
    from ovformer_core.inference.segment import SegmentOptions
    from ovformer_core.io.outputs import OutputPaths
    from ovformer_core.io.results import VideoResult
    from ovformer_core.io.video import SourceSpec, VideoSource
    from ovformer_core.predictor import Predictor
    from ovformer_core.vocab import Vocabulary

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


@dataclass(frozen=True)
class SplitOptions:
    """The inference options ``--dataset`` passes on (None: the model's own)."""

    top_k: int | None
    min_size: int | None
    window: int | None
    precision: PrecisionName


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def summary_table(result: VideoResult) -> Table:
    """Rich table: track, label, score, first/last frame with a mask."""
    from rich.table import Table  # not imported by --help

    table = Table(title=f"{result.video_name}: {len(result.tracks)} tracks, {result.num_frames} frames")
    for column in ("track", "label", "score", "first", "last"):
        table.add_column(column, justify="right" if column != "label" else "left")
    for track in result.tracks:
        present = [i for i, rle in enumerate(track.segmentations) if rle is not None and rle_nonempty(rle)]
        first = str(result.frame_indices[present[0]]) if present else "-"
        last = str(result.frame_indices[present[-1]]) if present else "-"
        table.add_row(str(track.track_id), track.category_name, f"{track.score:.3f}", first, last)
    return table


def rle_nonempty(rle: dict) -> bool:
    from ovformer_core.io.rle import rle_area

    return rle_area(rle) > 0


def check_writable(out_dir: Path) -> None:
    """Fail early, before any model work, when the output folder cannot be used."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output folder {out_dir} is a file; choose a folder with --out-dir")
    probe = out_dir if out_dir.exists() else next((p for p in out_dir.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {out_dir} is not writable; choose another with --out-dir")


def run_one(
    predictor: Predictor,
    source: VideoSource,
    vocabulary: Vocabulary,
    options: SegmentOptions,
    spec: SourceSpec,
    quiet: bool,
) -> VideoResult:
    """Segment one opened source with a progress bar (frames/s); returns its ``VideoResult``."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    # A count from the container is shown as is, an estimate (no frame index) with a "~".
    name = spec.name if source.output_frames_exact else f"{spec.name} (~{source.estimated_output_frames} frames)"
    with progress_bar(*columns, quiet=quiet) as progress:
        task = progress.add_task(name, total=source.estimated_output_frames or None, rate="")
        elapsed = 0.0
        for item in predictor.iter_segment(source, vocabulary, options=options, video_id=spec.video_id):
            # The library's count (the real one on the last item, once decoding has ended).
            total = max(item.frames_total, item.frames_done) or None
            if item.result is not None:
                progress.update(task, total=total, completed=item.frames_done)
                return item.result
            elapsed += item.seconds
            rate = f"{item.frames_done / max(elapsed, 1e-9):.1f} frames/s"
            progress.update(task, total=total, completed=item.frames_done, rate=rate)
            log.debug("%s: %d frames, %s", spec.name, item.frames_done, rate)
    raise AssertionError("iter_segment ended without a result")


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
        float, typer.Option("--threshold", help="Report tracks scoring at least this (0 = all top-k).")
    ] = 0.3,
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
    from ovformer_core.cpu_threads import set_threads
    from ovformer_core.devices import ProcessGroup
    from ovformer_core.io.outputs import RESULT, OutputPaths, check_output_paths, missing_outputs, write_outputs
    from ovformer_core.io.results import write_result_json
    from ovformer_core.io.video import ReadOptions, open_source, resolve_inputs
    from ovformer_core.predictor import load_model, segment_options_for

    set_threads(threads)
    if dataset is not None:
        if inputs:
            raise OVFormerError("give either input videos or --dataset, not both")
        if frames_root is None:
            raise OVFormerError("--dataset needs --frames-root, the folder its file_names are relative to")
        split_options = SplitOptions(top_k, min_size, window, cast("PrecisionName", precision.value))
        run_split(
            dataset,
            frames_root,
            results or out_dir / "results.json",
            model,
            weights,
            clip_weights,
            device,
            offline,
            quiet,
            split_options,
        )
        return
    if not inputs or vocab is None:
        raise OVFormerError("give input videos and --vocab (or --dataset with --frames-root)")
    formats = [extra.value for extra in dict.fromkeys(extras or [])]
    specs, unresolved = resolve_inputs(inputs)
    group = ProcessGroup.from_env()
    if group.is_distributed:
        # Under torchrun each process takes every world_size-th input, on the GPU of its local rank.
        specs, unresolved = group.shard(specs), unresolved if group.is_main else []
        device = _rank_device(device, group)
    read_options = ReadOptions(stride=stride, max_frames=max_frames, start_time=start, end_time=end)
    check_writable(out_dir)
    summary: dict = {
        "ok": [],
        "failed": [{"input": failure.input, "error": as_flags(str(failure.error))} for failure in unresolved],
        "skipped": [],
        "incomplete": [],
    }
    predictor = None
    vocabulary = None
    for spec in specs:
        started = time.perf_counter()
        paths = OutputPaths.for_input(out_dir, spec.name)
        try:
            check_output_paths(paths, formats)  # before any model work
            missing = missing_outputs(paths, formats, spec.path) if skip_existing else [RESULT, *formats]
            if not missing:
                summary["skipped"].append(str(spec.path))
                continue
            result = _saved_result(paths) if RESULT not in missing else None
            model_run = result is None
            if result is None:
                # probe first: a corrupt input fails here without loading the model
                source = open_source(spec, read_options)
                if predictor is None:
                    predictor = load_model(
                        model,
                        weights,
                        clip_weights,
                        device=device,
                        precision=precision.value,
                        allow_download=not offline,
                        progress=not quiet,
                    )
                    vocabulary = predictor.vocabulary(vocab)
                options = segment_options_for(predictor.cfg).updated(
                    mode=None if mode is None else cast("ModeName", mode.value),
                    window=window,
                    top_k=top_k,
                    score_threshold=threshold,
                    min_size=min_size,
                    precision=cast("PrecisionName", precision.value),
                )
                assert vocabulary is not None  # loaded together with the predictor above
                result = run_one(predictor, source, vocabulary, options, spec, quiet or json_summary)
                # The full result first: an interrupted run keeps the model's work, and a rerun with
                # --skip-existing makes the missing formats from it.
                write_result_json(paths.result, result)
            todo = formats if model_run else [output for output in missing if output != RESULT]
            write_outputs(result, todo, paths, spec.path)
        except (VideoError, ResultsError, OutputError) as err:
            summary["failed"].append({"input": str(spec.path), "error": as_flags(str(err))})
            continue
        seconds = time.perf_counter() - started
        complete = result.decode is None or result.decode.complete
        summary["ok"].append(
            {
                "input": str(spec.path),
                "result": str(paths.result),
                "tracks": len(result.tracks),
                "frames": result.num_frames,
                "seconds": round(seconds, 3),
                "model_run": model_run,
                "complete": complete,
                "decode": None if result.decode is None else result.decode.summary(),
            }
        )
        if not complete:
            assert result.decode is not None
            summary["incomplete"].append(str(spec.path))
            # Printed even when quiet: frames were lost, and a batch log should say which input lost them.
            stderr.print(f"warning: {spec.path}: incomplete: {result.decode.summary()}", highlight=False, markup=False)
        if not quiet and not json_summary:
            stdout.print(summary_table(result))
            rate = result.num_frames / max(seconds, 1e-9)
            stdout.print(f"wrote {paths.result} ({rate:.1f} frames/s)", highlight=False, markup=False)
    if not quiet and summary["skipped"] and not json_summary:
        stderr.print(f"skipped {len(summary['skipped'])} input(s) whose outputs all exist", highlight=False)
    if json_summary:
        typer.echo(json.dumps(summary))
    if summary["failed"]:
        # Quiet drops the header, never the errors themselves: one "error: ..." line per failed input.
        if not quiet:
            total = len(specs) + len(unresolved)
            stderr.print(f"[bold red]{len(summary['failed'])} of {total} inputs failed:[/]")
        for failure in summary["failed"]:
            line = failure_line(failure["input"], failure["error"])
            stderr.print(f"error: {line}" if quiet else f"  {line}", highlight=False, markup=False)
        raise typer.Exit(EXIT_SOME_FAILED)
    if summary["incomplete"]:
        if not quiet:
            stderr.print(
                f"{len(summary['incomplete'])} of {len(specs)} inputs are incomplete (damaged or truncated videos)",
                highlight=False,
            )
        raise typer.Exit(EXIT_INCOMPLETE)


def _rank_device(device: str | None, group: ProcessGroup) -> str:
    from ovformer_core.devices import choose_device

    return str(choose_device(device, group.local_rank))


def _saved_result(paths: OutputPaths) -> VideoResult | None:
    """The full result saved by an earlier run, or None when it cannot be read (then the model runs again)."""
    from ovformer_core.io.results import load_result

    try:
        return load_result(paths.result)
    except ResultsError as err:
        log.warning("%s; running the model again", err)
        return None


def failure_line(input_name: str, error: str) -> str:
    """``input: error``, without repeating the input when the error already names it."""
    return error if input_name in error else f"{input_name}: {error}"


def run_split(
    dataset_path: Path,
    frames_root: Path,
    results_path: Path,
    model: str,
    weights: Path | None,
    clip_weights: Path | None,
    device: str | None,
    offline: bool,
    quiet: bool,
    split_options: SplitOptions,
) -> None:
    """Whole-split inference, sharded over ``torchrun`` ranks when launched with it."""
    import torch.distributed as dist
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ovformer_core.devices import ProcessGroup, choose_device, process_group
    from ovformer_core.inference.dataset import merge_parts, read_dataset, segment_split
    from ovformer_core.predictor import load_model, segment_options_for

    data = read_dataset(dataset_path)
    if not frames_root.is_dir():
        raise OVFormerError(f"frames root {frames_root} is not a folder; check --frames-root")
    check_writable(results_path.parent)
    group = ProcessGroup.from_env()
    rank, world_size, distributed = group.rank, group.world_size, group.is_distributed
    torch_device = choose_device(device, group.local_rank)
    with process_group(group, torch_device):
        predictor = load_model(
            model,
            weights,
            clip_weights,
            device=str(torch_device),
            allow_download=not offline,
            progress=not quiet and group.is_main,
        )
        options = segment_options_for(predictor.cfg).updated(
            score_threshold=0.0,
            top_k=split_options.top_k,
            min_size=split_options.min_size,
            window=split_options.window,
            precision=split_options.precision,
        )
        share = group.shard(data.videos)
        columns = (TextColumn("rank {task.fields[rank]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with progress_bar(*columns, quiet=quiet) as progress:
            task = progress.add_task("split", total=len(share), rank=rank)
            segment_split(
                predictor,
                data,
                frames_root,
                results_path,
                options,
                rank,
                world_size,
                on_video=lambda video, skipped: progress.advance(task),
            )
        if distributed:
            dist.barrier()
        if group.is_main:
            count = merge_parts(data, results_path)
            if not quiet:
                stdout.print(
                    f"wrote {results_path} ({count} results for {len(data.videos)} videos)",
                    highlight=False,
                    markup=False,
                )


__all__ = ["segment", "EXIT_USER_ERROR"]

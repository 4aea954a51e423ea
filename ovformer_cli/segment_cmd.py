"""``ovformer segment`` and ``ovformer export``: tracked masks for videos, and format conversion."""

from __future__ import annotations

import json
import logging
import os
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ovformer_cli.console import EXIT_USER_ERROR, fail, stderr, stdout, user_errors
from ovformer_core.errors import OutputError, OVFormerError, ResultsError, VideoError

if TYPE_CHECKING:  # heavy imports only for the type checker; commands import them when they run
    from ovformer_core.inference.segment import SegmentOptions
    from ovformer_core.io.results import VideoResult
    from ovformer_core.io.video import SourceSpec, VideoSource
    from ovformer_core.predictor import Predictor
    from ovformer_core.vocab import Vocabulary

log = logging.getLogger("ovformer")

#: Exit status when some inputs of a batch failed (the others were processed).
EXIT_SOME_FAILED = 1


class Extra(str, Enum):
    """Outputs written next to the full ``<name>.json`` result."""

    ytvis = "ytvis"
    coco = "coco"
    overlay = "overlay"
    png = "png"


class Mode(str, Enum):
    """Inference rule; default: the model's own (semi-online for LV-VIS, per-frame for LVIS)."""

    semi_online = "semi-online"
    per_frame = "per-frame"
    offline = "offline"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """Where each output of input ``name`` goes."""
    return {
        "json": out_dir / f"{name}.json",
        Extra.ytvis.value: out_dir / f"{name}.ytvis.json",
        Extra.coco.value: out_dir / f"{name}.coco.json",
        Extra.overlay.value: out_dir / f"{name}.overlay.mp4",
        Extra.png.value: out_dir / f"{name}_masks",
    }


def write_extras(result: VideoResult, extras: list[Extra], paths: dict[str, Path], source_path: Path | None) -> None:
    """Write the requested extra formats of one result."""
    from ovformer_core.io.overlay import write_overlay
    from ovformer_core.io.png_masks import write_png_masks
    from ovformer_core.io.results import write_coco_json, write_ytvis_json
    from ovformer_core.io.video import open_source

    for extra in extras:
        if extra is Extra.ytvis:
            write_ytvis_json(paths[extra.value], result)
        elif extra is Extra.coco:
            write_coco_json(paths[extra.value], result)
        elif extra is Extra.png:
            write_png_masks(paths[extra.value], result)
        elif extra is Extra.overlay:
            if source_path is None:
                raise OVFormerError("an overlay needs the source video; pass it with --video")
            write_overlay(paths[extra.value], open_source(source_path).iter_frames(), result)


def summary_table(result: VideoResult) -> Table:
    """Rich table: track, label, score, first/last frame with a mask."""
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
    from ovformer_core.predictor import WindowDone

    result = None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, disable=quiet, transient=True) as progress:
        task = progress.add_task(spec.name, total=source.estimated_output_frames or None, rate="")
        elapsed = 0.0
        for item in predictor.iter_segment(source, vocabulary, options=options, video_id=spec.video_id):
            if isinstance(item, WindowDone):
                elapsed += item.seconds
                rate = f"{item.frames_done / max(elapsed, 1e-9):.1f} frames/s"
                progress.update(task, completed=item.frames_done, rate=rate)
                log.debug("%s: %d frames, %s", spec.name, item.frames_done, rate)
            else:
                result = item
    assert result is not None
    return result


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
        typer.Option(
            "--vocab", "-v", help="Categories: a .txt (one per line, synonyms after commas), a .vocab, or 'a,b,c'."
        ),
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
        typer.Option("--format", "-f", help="Also write: ytvis, coco, overlay, png (repeatable)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cuda, cpu, cuda:N (default: cuda if available).")
    ] = None,
    precision: Annotated[Precision, typer.Option("--precision", help="Network precision.")] = Precision.fp32,
    mode: Annotated[
        Mode | None, typer.Option("--mode", help="semi-online | per-frame | offline (whole video as one clip).")
    ] = None,
    window: Annotated[
        int | None, typer.Option("--window", help="Frames per clip (semi-online; official 5).", min=1)
    ] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Candidates kept per video.", min=1)] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Report tracks scoring at least this (0 = all top-k).")
    ] = 0.3,
    min_size: Annotated[
        int | None, typer.Option("--min-size", help="Shortest side fed to the network.", min=32)
    ] = None,
    stride: Annotated[int, typer.Option("--stride", help="Use every N-th frame.", min=1)] = 1,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Stop after this many frames.", min=1)] = None,
    start: Annotated[float | None, typer.Option("--start", help="Start time in seconds.", min=0)] = None,
    end: Annotated[float | None, typer.Option("--end", help="End time in seconds.")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose result exists.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download weights.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Find, segment, track and name every object of the given categories in each input."""
    from ovformer_core.io.results import write_result_json
    from ovformer_core.io.video import ReadOptions, expand_inputs, open_source
    from ovformer_core.predictor import load_model, segment_options_for

    if dataset is not None:
        if inputs:
            raise OVFormerError("give either input videos or --dataset, not both")
        if frames_root is None:
            raise OVFormerError("--dataset needs --frames-root, the folder its file_names are relative to")
        split_options = {"top_k": top_k, "min_size": min_size, "window": window, "precision": precision.value}
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
    extras = list(dict.fromkeys(extras or []))
    specs = expand_inputs(inputs)
    read_options = ReadOptions(stride=stride, max_frames=max_frames, start_time=start, end_time=end)
    todo = []
    skipped = []
    for spec in specs:
        paths = output_paths(out_dir, spec.name)
        if skip_existing and paths["json"].is_file():
            skipped.append(spec)
        else:
            todo.append((spec, paths))
    summary: dict = {"ok": [], "failed": [], "skipped": [str(s.path) for s in skipped]}
    check_writable(out_dir)
    predictor = None
    vocabulary = None
    for spec, paths in todo:
        started = time.perf_counter()
        try:
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
            overrides: dict = {"score_threshold": threshold, "top_k": top_k, "min_size": min_size}
            if mode is Mode.offline:
                overrides.update(mode="semi-online", clip_length=max(1, source.estimated_output_frames))
            elif mode is not None:
                overrides["mode"] = mode.value
            if window is not None:
                overrides["clip_length"] = window
            options = segment_options_for(predictor.cfg, precision=precision.value, **overrides)
            assert vocabulary is not None  # loaded together with the predictor above
            result = run_one(predictor, source, vocabulary, options, spec, quiet or json_summary)
            write_result_json(paths["json"], result)
            write_extras(result, extras, paths, spec.path)
        except (VideoError, ResultsError, OutputError) as err:
            summary["failed"].append({"input": str(spec.path), "error": str(err)})
            continue
        seconds = time.perf_counter() - started
        summary["ok"].append(
            {
                "input": str(spec.path),
                "result": str(paths["json"]),
                "tracks": len(result.tracks),
                "frames": result.num_frames,
                "seconds": round(seconds, 3),
            }
        )
        if not quiet and not json_summary:
            stdout.print(summary_table(result))
            rate = result.num_frames / max(seconds, 1e-9)
            stdout.print(f"wrote {paths['json']} ({rate:.1f} frames/s)", highlight=False)
    if not quiet and skipped and not json_summary:
        stderr.print(f"skipped {len(skipped)} input(s) with existing results", highlight=False)
    if json_summary:
        typer.echo(json.dumps(summary))
    if summary["failed"]:
        if not quiet:
            stderr.print(f"[bold red]{len(summary['failed'])} of {len(specs)} inputs failed:[/]")
            for failure in summary["failed"]:
                stderr.print(f"  {failure['input']}: {failure['error']}", highlight=False)
        raise typer.Exit(EXIT_SOME_FAILED)


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
    overrides: dict,
) -> None:
    """Whole-split inference, sharded over ``torchrun`` ranks when launched with it."""
    import torch
    import torch.distributed as dist

    from ovformer_core.inference.dataset import merge_parts, read_dataset, segment_split
    from ovformer_core.predictor import load_model, segment_options_for

    data = read_dataset(dataset_path)
    if not frames_root.is_dir():
        raise OVFormerError(f"frames root {frames_root} is not a folder; check --frames-root")
    check_writable(results_path.parent)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world_size > 1
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            device = f"cuda:{local_rank}"
    try:
        predictor = load_model(
            model, weights, clip_weights, device=device, allow_download=not offline, progress=not quiet and rank == 0
        )
        window = overrides.pop("window")
        if window is not None:
            overrides["clip_length"] = window
        options = segment_options_for(predictor.cfg, score_threshold=0.0, **overrides)
        share = data.videos[rank::world_size]
        columns = (TextColumn("rank {task.fields[rank]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=stderr, disable=quiet, transient=True) as progress:
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
        if rank == 0:
            count = merge_parts(data, results_path)
            if not quiet:
                stdout.print(f"wrote {results_path} ({count} results for {len(data.videos)} videos)", highlight=False)
    finally:
        if distributed:
            dist.destroy_process_group()


@user_errors
def export(
    result_path: Annotated[
        Path, typer.Argument(help="A result .json written by 'ovformer segment'.", metavar="RESULT.json")
    ],
    to: Annotated[list[Extra], typer.Option("--to", help="Format(s) to write: ytvis, coco, overlay, png.")],
    video: Annotated[Path | None, typer.Option("--video", help="The source video (needed for overlay).")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", "-o", help="Folder (default: next to the result).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Convert a saved result into other formats without running the model."""
    from ovformer_core.io.results import load_result

    result = load_result(result_path)
    folder = out_dir if out_dir is not None else result_path.parent
    name = result_path.name.removesuffix(".json")
    paths = output_paths(folder, name)
    source = video if video is not None else (Path(result.video_path) if result.video_path else None)
    if Extra.overlay in to and (source is None or not source.exists()):
        raise fail(f"the source video {source} is not available; pass it with --video")
    write_extras(result, list(dict.fromkeys(to)), paths, source)
    if not quiet:
        for extra in dict.fromkeys(to):
            stdout.print(f"wrote {paths[extra.value]}", highlight=False)


__all__ = ["segment", "export", "EXIT_USER_ERROR"]

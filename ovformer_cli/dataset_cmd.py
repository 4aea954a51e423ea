"""``ovformer dataset ...``: prepare training annotation files and split results (replaces tools/*.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from ovformer_cli.console import stdout, user_errors
from ovformer_cli.lazy_commands import command_group
from ovformer_core.config import LVIS_COMMON_BELOW, LVIS_RARE_BELOW

# The dataset tools (numpy, the evaluator) are imported inside the commands: `ovformer --help` stays fast.

dataset_app = command_group(
    "Prepare dataset files: drop rare/novel categories, category info, split results by partition."
)

AnnPath = Annotated[
    Path, typer.Argument(help="An annotation file (COCO/LVIS or YouTube-VIS/LV-VIS).", metavar="ANN.json")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")]


def _default_out(ann: Path, suffix: str) -> Path:
    # Official naming: train_instances_.json -> train_instances_nonovel.json, lvis_v1_train.json ->
    # lvis_v1_train_norare.json.
    stem = ann.name.removesuffix(".json")
    joiner = "" if stem.endswith("_") else "_"
    return ann.with_name(f"{stem}{joiner}{suffix}.json")


def _write_json(path: Path, data: Any) -> None:
    from ovformer_core.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data))


def _write_filtered(
    ann: Path, out: Path | None, quiet: bool, keep: Callable[[Mapping[str, Any]], dict[str, Any]], suffix: str
) -> None:
    """Load ``ann``, filter it with ``keep``, write it to ``out`` (default ``<ann>_<suffix>.json``)."""
    from ovformer_core.eval.dataset_tools import load_dataset

    dataset = load_dataset(ann)
    filtered = keep(dataset)
    target = out or _default_out(ann, suffix)
    _write_json(target, filtered)
    if not quiet:
        stdout.print(
            f"kept {len(filtered['annotations'])} of {len(dataset['annotations'])} annotations -> {target}",
            highlight=False,
        )


@dataset_app.command("drop-rare")
@user_errors
def drop_rare(
    ann: AnnPath,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Default: <ann>_norare.json.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Remove annotations of rare LVIS categories (open-vocabulary training on LVIS base)."""
    from ovformer_core.eval.dataset_tools import drop_rare_categories

    _write_filtered(ann, out, quiet, drop_rare_categories, "norare")


@dataset_app.command("drop-novel")
@user_errors
def drop_novel(
    ann: AnnPath,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Default: <ann>_nonovel.json.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Remove annotations of novel LV-VIS categories (partition 2/3) from a training file."""
    from ovformer_core.eval.dataset_tools import drop_novel_categories

    _write_filtered(ann, out, quiet, drop_novel_categories, "nonovel")


@dataset_app.command("cat-info")
@user_errors
def cat_info(
    ann: AnnPath,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the category list.", metavar="OUT.json")],
    add_freq: Annotated[
        bool, typer.Option("--add-freq", help="Also set 'frequency' (LVIS r/c/f, LV-VIS b/n).")
    ] = False,
    rare_below: Annotated[int, typer.Option(help="LVIS: rare below this many images.")] = LVIS_RARE_BELOW,
    common_below: Annotated[int, typer.Option(help="LVIS: common below this many images.")] = LVIS_COMMON_BELOW,
    quiet: QuietOption = False,
) -> None:
    """Write the categories with image_count / instance_count (the loss's category-frequency file)."""
    from ovformer_core.eval.dataset_tools import category_info, load_dataset

    info = category_info(load_dataset(ann), add_frequency=add_freq, rare_below=rare_below, common_below=common_below)
    _write_json(out, info)
    if not quiet:
        stdout.print(f"wrote {len(info)} categories -> {out}", highlight=False)


@dataset_app.command("split-results")
@user_errors
def split_results(
    gt: Annotated[
        Path, typer.Option("--gt", help="LV-VIS ground truth (categories with 'partition').", metavar="GT.json")
    ],
    results: Annotated[Path, typer.Option("--results", help="YouTube-VIS format results.", metavar="RESULTS.json")],
    base_out: Annotated[Path, typer.Option("--base-out", help="Results of base categories.", metavar="BASE.json")],
    novel_out: Annotated[Path, typer.Option("--novel-out", help="Results of novel categories.", metavar="NOVEL.json")],
    quiet: QuietOption = False,
) -> None:
    """Split results into base (partition 0/1) and novel (partition 2/3) categories."""
    from ovformer_core.eval.dataset_tools import split_results_by_partition
    from ovformer_core.eval.results_check import load_results

    base, novel = split_results_by_partition(load_results(results), gt)
    _write_json(base_out, base)
    _write_json(novel_out, novel)
    if not quiet:
        stdout.print(
            f"{len(base)} base results -> {base_out}; {len(novel)} novel results -> {novel_out}", highlight=False
        )


@dataset_app.command("from-results")
@user_errors
def from_results(
    results: Annotated[
        list[Path],
        typer.Argument(help="Full results (NAME.json, NAME.reviewed.json).", metavar="RESULT.json..."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="New folder for annotations.json and frames/.", metavar="DIR")
    ],
    quiet: QuietOption = False,
) -> None:
    """Training annotations from results (e.g. corrected in `ovformer view`): DIR/annotations.json + DIR/frames/."""
    from ovformer_core.io.results import load_results
    from ovformer_core.train.result_annotations import ANNOTATIONS_FILE, FRAMES_FOLDER, write_training_set

    pairs = []
    for path in results:
        for video in load_results(path):
            source = Path(video.video_path)
            if not source.is_absolute() and not source.exists():
                source = path.parent / source
            pairs.append((video, source))
    count = write_training_set(pairs, out)
    if not quiet:
        stdout.print(
            f"wrote {count} annotations of {len(pairs)} videos -> {out / ANNOTATIONS_FILE} "
            f"(frames: {out / FRAMES_FOLDER})",
            highlight=False,
        )

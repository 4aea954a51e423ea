"""``ovformer import``: an annotation-tool export (CVAT for video, MOTS PNG, Datumaro) -> YouTube-VIS dataset."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ovformer_cli.console import stdout, user_errors


class AnnotationFormat(str, Enum):
    """Export formats ``ovformer import`` reads (the names ``export --to`` writes)."""

    cvat_video = "cvat-video"
    mots = "mots"
    datumaro = "datumaro"


@user_errors
def import_annotations(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Exports: zips, unpacked folders, or bare XML/JSON files (several become one dataset).",
            metavar="FILE_OR_DIR...",
        ),
    ],
    from_format: Annotated[AnnotationFormat, typer.Option("--from", help="cvat-video | mots | datumaro")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The dataset JSON to write.", metavar="DATASET.json")],
    vocab: Annotated[
        str | None,
        typer.Option(
            "--vocab",
            help="Merge categories by name against this vocabulary (.txt, .vocab, dataset .json or 'a,b,c'); "
            "labels outside it are an error.",
        ),
    ] = None,
    frame_pattern: Annotated[
        str | None,
        typer.Option(
            "--frame-pattern",
            help="file_names of the frames, relative to the training frame root: {video} and {frame} (source "
            "number); default {video}/{frame:06d}.jpg.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Read tracks corrected in an annotation tool back into a dataset for `evaluate --gt` and `train`."""
    from ovformer_core.errors import OVFormerError
    from ovformer_core.io.annotation_formats import read_annotations
    from ovformer_core.io.atomic import write_text_atomic
    from ovformer_core.io.track_dataset import (
        DEFAULT_FRAME_PATTERN,
        check_frame_pattern,
        dataset_document,
        merge_vocabulary,
    )
    from ovformer_core.vocab import read_classes_and_ids

    for source in sources:
        if out.exists() and source.exists() and out.resolve() == source.resolve():
            raise OVFormerError(f"--out {out} is one of the exports being imported; choose another file name")
    frame_pattern = frame_pattern if frame_pattern is not None else DEFAULT_FRAME_PATTERN
    check_frame_pattern(frame_pattern)
    # A dataset JSON vocabulary's own ids, as segment gives them.
    classes, ids = read_classes_and_ids(vocab) if vocab is not None else (None, None)
    results = []
    for source in sources:
        videos = read_annotations(source, from_format.value)
        merged = merge_vocabulary(videos, classes, str(source), ids) if classes is not None else videos
        results.extend(merged)
    if not results:
        raise OVFormerError(f"no video in {', '.join(map(str, sources))}; pass an export with at least one frame")
    document = dataset_document(results, frame_pattern)
    write_text_atomic(out, json.dumps(document, separators=(",", ":")) + "\n")
    if not quiet:
        frames = sum(len(video["file_names"]) for video in document["videos"])
        stdout.print(
            f"wrote {out}: {len(document['videos'])} video(s), {frames} frames, {len(document['annotations'])} tracks, "
            f"{len(document['categories'])} categories",
            highlight=False,
        )


__all__ = ["import_annotations"]

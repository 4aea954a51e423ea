"""``ovformer export``: saved results converted to other formats, without running the model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ovformer_cli.console import stdout, user_errors
from ovformer_cli.segment_cmd import Extra
from ovformer_core.errors import OVFormerError

if TYPE_CHECKING:
    from ovformer_core.io.results import VideoResult


@user_errors
def export(
    result_paths: Annotated[
        list[Path],
        typer.Argument(
            help="Result .json files written by 'ovformer segment' (or reviewed in 'ovformer view').",
            metavar="RESULT.json...",
        ),
    ],
    to: Annotated[
        list[Extra],
        typer.Option("--to", help="Format(s) to write: ytvis, coco, overlay, png, cvat-video, mots, datumaro."),
    ],
    video: Annotated[Path | None, typer.Option("--video", help="The source video (needed for overlay).")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", "-o", help="Folder (default: next to the first result).")
    ] = None,
    name: Annotated[
        str,
        typer.Option("--name", help="With several results: file name of the combined ytvis/coco/mots/datumaro."),
    ] = "combined",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
) -> None:
    """Convert saved results into other formats without running the model.

    Several results become one file for the formats that hold several videos (a YouTube-VIS results list,
    COCO, one MOTS or Datumaro dataset with a subset per video); overlays, PNG folders and CVAT tasks are
    one per result.
    """
    from ovformer_core.io.outputs import (
        MULTI_VIDEO_FORMATS,
        OutputPaths,
        check_output_paths,
        write_combined_outputs,
        write_outputs,
    )
    from ovformer_core.io.results import load_result, load_results

    formats = [extra.value for extra in dict.fromkeys(to)]
    folder = out_dir if out_dir is not None else result_paths[0].parent
    written: list[Path] = []
    if len(result_paths) == 1:
        result = load_result(result_paths[0])
        paths = OutputPaths.for_input(folder, result_paths[0].name.removesuffix(".json"))
        check_output_paths(paths, formats)
        write_outputs(result, formats, paths, video)
        written = [paths.of(output) for output in formats]
    else:
        if video is not None:
            raise OVFormerError("--video names the source of one result; export several results without it")
        if "/" in name or name in ("", ".", ".."):
            raise OVFormerError(f"--name {name!r} must be a plain file name without folders")
        results = [(path, video_result) for path in result_paths for video_result in load_results(path)]
        combined = [output for output in formats if output in MULTI_VIDEO_FORMATS]
        single = [output for output in formats if output not in MULTI_VIDEO_FORMATS]
        per_file = Counter(path for path, _ in results)

        def output_name(path: Path, result: VideoResult) -> str:
            stem = path.name.removesuffix(".json")
            return stem if per_file[path] == 1 else f"{stem}.{result.video_name}"  # a file of several videos

        plans = [(OutputPaths.for_input(folder, output_name(path, r)), r) for path, r in results]
        combined_paths = OutputPaths.for_input(folder, name)
        check_output_paths(combined_paths, combined)
        for paths, _ in plans:
            check_output_paths(paths, single)
        if combined:
            write_combined_outputs([r for _, r in results], combined, combined_paths)
            written += [combined_paths.of(output) for output in combined]
        for paths, result in plans:
            write_outputs(result, single, paths)
            written += [paths.of(output) for output in single]
    if not quiet:
        for path in written:
            stdout.print(f"wrote {path}", highlight=False, markup=False)

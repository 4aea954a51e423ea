"""The files one segmented input becomes: their names, which of them exist, and writing the missing ones.

An input ``NAME`` gets ``NAME.json`` (the full result, always) and, on request, the formats of
``OUTPUT_FORMATS``: ``NAME.ytvis.json``, ``NAME.coco.json``, ``NAME.overlay.mp4``, the folder
``NAME_masks/``, and the annotation-tool zips ``NAME.cvat-video.zip`` (CVAT for video 1.1),
``NAME.mots.zip`` (MOTS PNG) and ``NAME.datumaro.zip`` (Datumaro 1.0). Every one is written
atomically (``ovformer_core.io.atomic``), so an existing path is a complete output: an interrupted
run leaves some formats missing, never a half-written one. Resuming
(``missing_outputs``) therefore only has to look at which paths exist, and every format can be made
again from the saved result without the model (``write_outputs``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ovformer_core.errors import OutputError
from ovformer_core.io.results import VideoResult

#: The formats written next to the full result (names as ``-f`` and ``--to`` take them).
OUTPUT_FORMATS = ("ytvis", "coco", "overlay", "png", "cvat-video", "mots", "datumaro")
#: What ``missing_outputs`` calls the full result ``NAME.json`` itself.
RESULT = "result"
#: Suffix of a reviewed result: ``NAME.json`` corrected in ``ovformer view`` becomes ``NAME.reviewed.json``.
REVIEWED_SUFFIX = ".reviewed.json"


def reviewed_path(result_path: str | os.PathLike[str]) -> Path:
    """Where the reviewed copy of the full result ``NAME.json`` goes: ``NAME.reviewed.json``, same folder."""
    path = Path(result_path)
    return path.with_name(f"{path.name.removesuffix('.json')}{REVIEWED_SUFFIX}")


def reviewed_original(path: str | os.PathLike[str]) -> Path:
    """The original ``NAME.json`` of a reviewed result ``NAME.reviewed.json``."""
    path = Path(path)
    return path.with_name(f"{path.name.removesuffix(REVIEWED_SUFFIX)}.json")


def is_reviewed_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a reviewed result (``NAME.reviewed.json``)."""
    return Path(path).name.endswith(REVIEWED_SUFFIX)


@dataclass(frozen=True)
class OutputPaths:
    """Where the outputs of one input go.

    Attributes:
        result: ``NAME.json``, the full result (``ovformer_core.io.results.write_result_json``).
        ytvis: ``NAME.ytvis.json``, the YouTube-VIS results list.
        coco: ``NAME.coco.json``, per-frame COCO annotations.
        overlay: ``NAME.overlay.mp4``, the masks drawn on the video.
        png: ``NAME_masks/``, per-frame PNG id masks (a folder).
        cvat_video: ``NAME.cvat-video.zip``, CVAT for video 1.1 (``ovformer_core.io.cvat_video``).
        mots: ``NAME.mots.zip``, MOTS PNG (``ovformer_core.io.mots``).
        datumaro: ``NAME.datumaro.zip``, Datumaro 1.0 JSON (``ovformer_core.io.datumaro_format``).
    """

    result: Path
    ytvis: Path
    coco: Path
    overlay: Path
    png: Path
    cvat_video: Path
    mots: Path
    datumaro: Path

    @classmethod
    def for_input(cls, out_dir: str | os.PathLike[str], name: str) -> OutputPaths:
        """The paths of input ``name`` in ``out_dir``."""
        folder = Path(out_dir)
        return cls(
            result=folder / f"{name}.json",
            ytvis=folder / f"{name}.ytvis.json",
            coco=folder / f"{name}.coco.json",
            overlay=folder / f"{name}.overlay.mp4",
            png=folder / f"{name}_masks",
            cvat_video=folder / f"{name}.cvat-video.zip",
            mots=folder / f"{name}.mots.zip",
            datumaro=folder / f"{name}.datumaro.zip",
        )

    def of(self, output: str) -> Path:
        """The path of one output (``"result"`` or one of ``OUTPUT_FORMATS``)."""
        if output != RESULT and output not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output {output!r}; choose from {', '.join(OUTPUT_FORMATS)}")
        return Path(getattr(self, output.replace("-", "_")))


def check_writable(out_dir: str | os.PathLike[str], parameter: str = "out_dir") -> None:
    """Fail early, before any model work, when the output folder cannot be used.

    A folder that does not exist yet is fine when its nearest existing parent is writable.

    Args:
        out_dir: the output folder.
        parameter: the setting ``out_dir`` came from, named in the error.

    Raises:
        OutputError: ``out_dir`` is a file, or cannot be written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output folder {out_dir} is a file; choose a folder with `{parameter}`")
    probe = out_dir if out_dir.exists() else next((p for p in out_dir.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {out_dir} is not writable; choose another with `{parameter}`")


def _is_folder_output(output: str) -> bool:
    return output == "png"


def check_output_paths(paths: OutputPaths, formats: Iterable[str]) -> None:
    """Refuse, before any work, outputs whose path is taken by something that cannot be replaced.

    A file output whose path is a folder, and a PNG folder whose path is a file or a foreign folder,
    would only fail after the model ran.

    Raises:
        OutputError: names the path and what is in the way.
    """
    from ovformer_core.io.png_masks import is_png_mask_folder

    for output in (RESULT, *formats):
        path = paths.of(output)
        if not os.path.lexists(path):
            continue
        if _is_folder_output(output):
            if not is_png_mask_folder(path):
                raise OutputError(
                    f"cannot write {path}: it exists and is not an ovformer PNG mask folder; "
                    "remove it or choose another output folder"
                )
        elif not path.is_file():
            raise OutputError(
                f"cannot write {path}: a folder or other non-file is in the way; "
                "remove it or choose another output folder"
            )


def missing_outputs(
    paths: OutputPaths, formats: Iterable[str], source: str | os.PathLike[str] | None = None
) -> list[str]:
    """The requested outputs not on disk yet: ``"result"`` first if the full result is missing.

    An existing path is complete (every output is written atomically), so existence decides. With
    ``source``, outputs left by another input of the same name (``a/clip.mp4`` and, in another run,
    ``b/clip.mp4``) count as missing, all of them.
    """
    wanted = [RESULT, *dict.fromkeys(formats)]
    if source is not None and os.path.lexists(paths.result) and not _same_source(paths.result, Path(source)):
        return wanted
    return [output for output in wanted if not os.path.lexists(paths.of(output))]


#: Bytes read from the start of a result file to find its ``video_path`` (written second, after the name).
_HEAD_BYTES = 64 * 1024


def _same_source(result_path: Path, source: Path) -> bool:
    """False only when the result names another existing file than ``source``; reads the file's head only.

    A result cannot be checked when its recorded path is relative to another working folder or has
    moved; then it is trusted.
    """
    try:
        with result_path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return True
    key = head.find('"video_path":')
    if key < 0:
        return True
    try:
        recorded, _ = json.JSONDecoder().raw_decode(head, key + len('"video_path":'))
    except ValueError:
        return True
    if not isinstance(recorded, str):
        return True
    try:
        return os.path.samefile(recorded, source)
    except OSError:
        return True


#: Formats whose one file can hold several videos (``write_combined_outputs``); the others hold one video
#: each (an overlay, a PNG folder, a CVAT task).
MULTI_VIDEO_FORMATS = ("ytvis", "coco", "mots", "datumaro")


def write_combined_outputs(results: Sequence[VideoResult], formats: Sequence[str], paths: OutputPaths) -> None:
    """Write several videos into one file per format (each in ``MULTI_VIDEO_FORMATS``), atomically.

    Raises:
        OutputError: a format that holds one video per file, two videos of one name (they would share
            a folder in MOTS and Datumaro), or two of one video id (YouTube-VIS and COCO key on it).
    """
    from ovformer_core.io.datumaro_format import write_datumaro
    from ovformer_core.io.mots import write_mots
    from ovformer_core.io.results import write_coco_json, write_ytvis_json

    single = [output for output in formats if output not in MULTI_VIDEO_FORMATS]
    if single:
        raise OutputError(
            f"{', '.join(single)} hold one video per file; export those per result "
            f"(formats that take several videos: {', '.join(MULTI_VIDEO_FORMATS)})"
        )
    for key, what in ((lambda r: r.video_name, "name"), (lambda r: r.video_id, "video id")):
        seen: dict[object, VideoResult] = {}
        for result in results:
            other = seen.setdefault(key(result), result)
            if other is not result:
                raise OutputError(
                    f"two videos have the {what} {key(result)!r} ({other.video_path} and {result.video_path}); "
                    "export them separately or segment them in one run"
                )
    writers = {"ytvis": write_ytvis_json, "coco": write_coco_json, "mots": write_mots, "datumaro": write_datumaro}
    for output in dict.fromkeys(formats):
        writers[output](paths.of(output), results)


def write_outputs(
    result: VideoResult,
    formats: Sequence[str],
    paths: OutputPaths,
    source_path: str | os.PathLike[str] | None = None,
) -> None:
    """Write the requested formats of one result (not the full result itself), each atomically.

    Args:
        result: the segmented video.
        formats: which formats to write.
        paths: where (``OutputPaths.for_input``).
        source_path: the source video, needed for the overlay (default: the path recorded in the result).

    Raises:
        OutputError: a format cannot be written (disk full, a folder in the way, ...), or the overlay's
            source video is not available.
    """
    from ovformer_core.io.cvat_video import write_cvat_video
    from ovformer_core.io.datumaro_format import write_datumaro
    from ovformer_core.io.mots import write_mots
    from ovformer_core.io.overlay import result_frames, write_overlay
    from ovformer_core.io.png_masks import write_png_masks
    from ovformer_core.io.results import write_coco_json, write_ytvis_json

    for output in dict.fromkeys(formats):
        path = paths.of(output)
        if output == "ytvis":
            write_ytvis_json(path, result)
        elif output == "coco":
            write_coco_json(path, result)
        elif output == "png":
            write_png_masks(path, result)
        elif output == "cvat-video":
            write_cvat_video(path, result)
        elif output == "mots":
            write_mots(path, result)
        elif output == "datumaro":
            write_datumaro(path, result)
        elif output == "overlay":
            source = Path(source_path) if source_path is not None else Path(result.video_path)
            if not source.exists():
                raise OutputError(
                    f"the overlay needs the source video {source}, which is not there (a relative path is read from "
                    "the current folder); pass the video the result was made from (`ovformer export --video PATH`)"
                )
            frames = result_frames(source, result)
            try:
                write_overlay(path, frames, result)
            finally:
                frames.close()

"""Whole-split inference: every video of a YouTube-VIS-format dataset -> one results JSON.

The dataset's own category names (ascending id) are the vocabulary. Each finished video is written
to ``<results>.parts/<video_id>.json`` at once, so an interrupted run resumes where it stopped. A part
records a key of everything that made it (the video's frame names and sizes, the categories, the
weights' content, the device kind and precision, the inference options): a rerun reuses only parts
whose key matches and runs the others again, so a part left by another split, other weights or other
options (or by a version of ovformer whose parts had no key) never reaches the results.
Under ``torchrun`` rank r takes videos r, r + W, r + 2W, ...; rank 0 merges the parts after a
barrier. The merged file is the same whatever the number of processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovformer_core.errors import ResultsError
from ovformer_core.inference.segment import SegmentOptions
from ovformer_core.io.atomic import write_text_atomic
from ovformer_core.io.dataset_json import check_dataset
from ovformer_core.io.json_input import is_int, read_json
from ovformer_core.io.results import ytvis_entries
from ovformer_core.io.video import open_frame_list

PARTS_SUFFIX = ".parts"
#: Format of a part file; a part of another format is run again.
PART_FORMAT = "ovformer-split-part-1"


@dataclass(frozen=True)
class DatasetVideo:
    """One video of the split.

    Attributes:
        video_id: the dataset's id.
        file_names: frame files relative to the frames root, in order.
        width, height: the size the dataset declares (None where it gives none); results must have it.
    """

    video_id: int
    file_names: tuple[str, ...]
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Dataset:
    """Videos and categories of a YouTube-VIS-format json (LV-VIS, YTVIS, OVIS, BURST).

    Attributes:
        videos: in file order.
        category_ids: dataset ids in ascending order (label c <-> ``category_ids[c]``).
        category_names: names in the same order.
    """

    videos: tuple[DatasetVideo, ...]
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]


def read_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Parse the parts of a dataset json that inference needs; one-line ``ResultsError`` when malformed.

    Checked with the other dataset readers (``ovformer_core.io.dataset_json.check_dataset``): unique
    video and category ids, category names, and frame file names that stay inside the frames root.
    """
    data = read_json(path, "dataset file", ResultsError)
    check_dataset(
        data,
        f"dataset file {path}",
        ResultsError,
        need_file_names=True,
        need_sizes=False,
        need_category_names=True,
        need_categories=True,
        need_annotations=False,
    )
    videos = tuple(
        DatasetVideo(
            int(video["id"]),
            tuple(video["file_names"]),
            int(video["width"]) if is_int(video.get("width")) else None,
            int(video["height"]) if is_int(video.get("height")) else None,
        )
        for video in data["videos"]
    )
    categories = sorted((int(c["id"]), c["name"]) for c in data["categories"])
    return Dataset(
        videos=videos,
        category_ids=tuple(c[0] for c in categories),
        category_names=tuple(c[1] for c in categories),
    )


def check_frames(frames_root: str | os.PathLike[str], videos: Sequence[DatasetVideo]) -> None:
    """Every frame of ``videos`` exists, has a readable size, the video's other frames' and the declared one.

    Run before the model loads, so that a bad frame stops a split before any video is segmented
    instead of when its video is reached (file headers only: no pixels are decoded).

    Raises:
        VideoError: a missing or unreadable frame, or frames of differing sizes.
        ResultsError: frames of another size than the dataset declares for their video.
    """
    root = Path(frames_root)
    for video in videos:
        info = open_frame_list([root / name for name in video.file_names], name=str(video.video_id)).info
        declared = (video.width, video.height)
        if None not in declared and declared != (info.width, info.height):
            raise ResultsError(
                f"video {video.video_id} is {video.width}x{video.height} (width x height) in the dataset file but "
                f"its frames are {info.width}x{info.height}; fix the dataset's width and height or the frames"
            )


def parts_folder(results_path: Path) -> Path:
    """Where per-video results of ``results_path`` are kept until the merge."""
    return results_path.with_name(results_path.name + PARTS_SUFFIX)


def part_key(video: DatasetVideo, dataset: Dataset, frames_root: Path, run_key: str, options: SegmentOptions) -> str:
    """sha256 of what a video's part depends on: its frames (names and sizes), categories, model, options.

    Frames are identified by their names in the dataset and their sizes in bytes, not by where they are
    or when they were written: under ``torchrun`` on several machines each may hold its own copy of the
    frames (rank 0 checks every rank's parts against its own copy), and reading every frame again to
    resume a split would cost as much as decoding it.
    """
    frames = []
    for name in video.file_names:
        try:
            frames.append([name, (frames_root / name).stat().st_size])
        except OSError:
            frames.append([name, None])  # found and reported when the video is read
    what = {
        "format": PART_FORMAT,
        "video_id": video.video_id,
        "frames": frames,
        "categories": [list(dataset.category_ids), list(dataset.category_names)],
        "model": run_key,
        "options": dataclasses.asdict(options),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def split_keys(
    predictor: Any, dataset: Dataset, frames_root: str | os.PathLike[str], options: SegmentOptions
) -> dict[int, str]:
    """Every video's ``part_key`` for a run of ``predictor`` with ``options`` (what ``merge_parts`` checks)."""
    run_key = predictor.run_key(options)
    return {video.video_id: part_key(video, dataset, Path(frames_root), run_key, options) for video in dataset.videos}


def _read_part(path: Path) -> dict[str, Any] | None:
    """A part file's content, or None when there is none or it cannot be read (it is then run again)."""
    if not path.is_file():
        return None
    try:
        part = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return part if isinstance(part, dict) and part.get("format") == PART_FORMAT else None


def _usable(part: dict[str, Any] | None, key: str | None) -> bool:
    """Whether a read part holds its entries and was made with ``key`` (any key when None)."""
    return part is not None and isinstance(part.get("entries"), list) and (key is None or part.get("key") == key)


def _part_matches(path: Path, key: str) -> bool:
    return _usable(_read_part(path), key)


def iter_segment_split(
    predictor: Any,
    dataset: Dataset,
    frames_root: str | os.PathLike[str],
    results_path: str | os.PathLike[str],
    options: SegmentOptions | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[DatasetVideo, bool]]:
    """Segment this rank's share of the split into per-video part files; yields (video, was_skipped) after each.

    Args:
        predictor: a ``ovformer_core.predictor.Predictor``.
        dataset: from ``read_dataset``.
        frames_root: folder the ``file_names`` are relative to.
        results_path: the final merged file (parts go next to it).
        options: inference options (default: the model's official rule, no score threshold).
        rank, world_size: this process's share.
    """
    root = Path(frames_root)
    parts = parts_folder(Path(results_path))
    parts.mkdir(parents=True, exist_ok=True)
    options = options or predictor.options
    vocabulary = predictor.vocabulary(list(dataset.category_names))
    run_key = predictor.run_key(options)
    for video in dataset.videos[rank::world_size]:
        part = parts / f"{video.video_id}.json"
        key = part_key(video, dataset, root, run_key, options)
        if _part_matches(part, key):
            yield video, True
            continue
        source = open_frame_list([root / name for name in video.file_names], name=str(video.video_id))
        result = predictor.segment(
            source, vocabulary, options=options, video_id=video.video_id, category_ids=dataset.category_ids
        )
        entries = ytvis_entries(result, extra_keys=False)
        write_text_atomic(part, json.dumps({"format": PART_FORMAT, "key": key, "entries": entries}))
        yield video, False


def segment_split(
    predictor: Any,
    dataset: Dataset,
    frames_root: str | os.PathLike[str],
    results_path: str | os.PathLike[str],
    options: SegmentOptions | None = None,
    rank: int = 0,
    world_size: int = 1,
    on_video: Callable[[DatasetVideo, bool], None] | None = None,
) -> int:
    """``iter_segment_split`` run to the end, calling ``on_video(video, was_skipped)`` after each video.

    Returns:
        number of videos processed (not skipped) by this rank.
    """
    processed = 0
    for video, skipped in iter_segment_split(predictor, dataset, frames_root, results_path, options, rank, world_size):
        processed += not skipped
        if on_video is not None:
            on_video(video, skipped)
    return processed


def merge_parts(dataset: Dataset, results_path: str | os.PathLike[str], keys: dict[int, str] | None = None) -> int:
    """Concatenate every video's part in dataset order into ``results_path`` (atomic). Returns entries.

    Args:
        keys: each video's ``part_key`` for this run; a part with another key is not this run's. None:
            any part of the current format is taken (the caller knows the folder holds only this run's).
    """
    results_path = Path(results_path)
    parts = parts_folder(results_path)
    found = {video.video_id: _read_part(parts / f"{video.video_id}.json") for video in dataset.videos}
    missing = [
        video_id for video_id, part in found.items() if not _usable(part, None if keys is None else keys[video_id])
    ]
    if missing:
        raise ResultsError(
            f"{len(missing)} of {len(dataset.videos)} videos have no results of this run yet (e.g. video "
            f"{missing[0]}); run again to finish them"
        )
    entries = [entry for part in found.values() if part is not None for entry in part["entries"]]
    write_text_atomic(results_path, json.dumps(entries))
    return len(entries)

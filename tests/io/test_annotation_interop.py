"""Datumaro as the independent reader and writer of what ovformer exports and imports.

Our exports of a synthetic result (several tracks, a gap, overlaps, odd frame size, a stride) must
import with Datumaro with the same ids, labels, frame numbers and masks pixel for pixel; datasets that
Datumaro exports in each format must import with ``ovformer import`` to the same tracks.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ovformer_core.io.annotation_formats import read_annotations
from ovformer_core.io.outputs import OutputPaths, write_outputs
from ovformer_core.io.track_dataset import frame_number
from tests.io.track_fixtures import (
    HEIGHT,
    WIDTH,
    assert_same_tracks,
    flattened_tracks,
    synthetic_result,
    visible_tracks,
)

Tracks = dict[int, tuple[str, dict[int, np.ndarray]]]

#: ovformer's format name -> Datumaro's importer / exporter names.
DATUMARO_NAMES = {"cvat-video": ("cvat", "cvat"), "mots": ("mots", "mots_png"), "datumaro": ("datumaro", "datumaro")}


def datumaro_tracks(dataset: object) -> tuple[Tracks, dict[int, float]]:
    """Track id -> (label, frame -> mask) and track id -> score, as Datumaro sees a dataset."""
    from datumaro.components.annotation import AnnotationType

    labels = dataset.categories()[AnnotationType.label]  # type: ignore[attr-defined]
    tracks: Tracks = {}
    scores: dict[int, float] = {}
    for item in dataset:  # type: ignore[attr-defined]
        frame = item.attributes.get("frame")
        frame = frame_number(item.id) if frame is None else int(frame)
        for ann in item.annotations:
            assert ann.type == AnnotationType.mask
            if ann.attributes.get("outside"):
                continue
            track_id = int(ann.attributes["track_id"])
            label, masks = tracks.setdefault(track_id, (labels[ann.label].name, {}))
            assert label == labels[ann.label].name and frame not in masks
            masks[frame] = ann.image.astype(bool)
            if "score" in ann.attributes:
                scores[track_id] = float(ann.attributes["score"])
    return tracks, scores


@pytest.mark.parametrize("fmt", ["cvat-video", "mots", "datumaro"])
def test_datumaro_reads_what_we_export(datumaro: ModuleType, tmp_path: Path, fmt: str) -> None:
    result = synthetic_result()
    paths = OutputPaths.for_input(tmp_path, "clip")
    write_outputs(result, [fmt], paths)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(paths.of(fmt)) as archive:
        archive.extractall(unpacked)

    dataset = datumaro.Dataset.import_from(str(unpacked), DATUMARO_NAMES[fmt][0])
    got, scores = datumaro_tracks(dataset)

    # MOTS holds one object per pixel: overlaps resolve to the higher score (track 1 vanishes from frame 4).
    expected = flattened_tracks(result) if fmt == "mots" else visible_tracks(result)
    assert_same_tracks(got, expected)
    assert 9 not in got  # a track without a pixel has nothing to show
    assert len(dataset) == (result.num_frames if fmt != "cvat-video" else len({f for _, m in got.values() for f in m}))
    if fmt != "mots":
        assert scores == {track.track_id: track.score for track in result.tracks if track.track_id in got}


def _datumaro_dataset(datumaro: ModuleType, tracks: Tracks, frames: list[int]) -> object:
    from datumaro.components.annotation import Mask
    from datumaro.components.media import Image

    labels = sorted({label for label, _ in tracks.values()})
    items = []
    for frame in frames:
        annotations = [
            Mask(image=masks[frame].astype(np.uint8), label=labels.index(label), attributes={"track_id": track_id})
            for track_id, (label, masks) in sorted(tracks.items())
            if frame in masks
        ]
        items.append(
            datumaro.DatasetItem(
                id=f"frame_{frame:06d}",
                media=Image.from_numpy(np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)),
                annotations=annotations,
                attributes={"frame": frame},
            )
        )
    return datumaro.Dataset.from_iterable(items, categories=labels)


@pytest.mark.parametrize("fmt", ["cvat-video", "mots", "datumaro"])
def test_we_read_what_datumaro_exports(datumaro: ModuleType, tmp_path: Path, fmt: str) -> None:
    result = synthetic_result(seed=3)
    # What each format can hold: MOTS one object per pixel (overlaps resolved).
    tracks = flattened_tracks(result) if fmt == "mots" else visible_tracks(result)
    frames = list(result.frame_indices)
    if fmt == "cvat-video":
        # Datumaro's CVAT writer numbers the task's frames 0..N-1 whatever the items' frame numbers
        # (it has no frame step), so the frames are numbered so here.
        renumber = {frame: t for t, frame in enumerate(frames)}
        tracks = {tid: (label, {renumber[f]: m for f, m in masks.items()}) for tid, (label, masks) in tracks.items()}
        frames = list(range(len(frames)))
    dataset = _datumaro_dataset(datumaro, tracks, frames)
    exported = tmp_path / "exported"
    options = {"use_track": True} if fmt == "cvat-video" else {}
    dataset.export(str(exported), DATUMARO_NAMES[fmt][1], save_media=False, **options)  # type: ignore[attr-defined]

    (video,) = read_annotations(exported, fmt)
    assert_same_tracks(visible_tracks(video), tracks)
    assert video.frame_indices == frames
    assert (video.height, video.width) == (HEIGHT, WIDTH)

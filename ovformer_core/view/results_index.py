"""The results a viewer shows: found in the served folder, read once, summarised for the index page.

A result file is any ``*.json`` below the served folder that starts as ``ovformer segment`` writes it
(``{"format": "ovformer-results", ...}``); only its first bytes are read to tell. Its reviewed copy
``NAME.reviewed.json`` is not listed on its own: it is the review state of ``NAME.json``. Each video
of a result file gets an opaque id (``<hash of the relative path>-<video position>``), so page URLs
never carry a file path. Parsed files are cached by modification time and size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ovformer_core.errors import ResultsError
from ovformer_core.io.json_input import is_int
from ovformer_core.io.outputs import is_reviewed_path, reviewed_original, reviewed_path
from ovformer_core.io.results import RESULT_VERSION, VideoResult, load_results
from ovformer_core.view.masks import track_presence
from ovformer_core.view.served_files import ServedFolder

#: Bytes read from the start of a ``.json`` file to decide whether it is a full ovformer result.
_HEAD_BYTES = 256
_RESULT_HEAD = re.compile(rb'^\s*\{\s*"format"\s*:\s*"ovformer-results"')
#: Parsed result files kept in memory (the largest are tens of MB).
LOADED_FILES_KEPT = 8


def is_result_file(path: Path) -> bool:
    """Whether ``path`` starts like a full ovformer result file (reads its first bytes only)."""
    try:
        with path.open("rb") as handle:
            return bool(_RESULT_HEAD.match(handle.read(_HEAD_BYTES)))
    except OSError:
        return False


def _outline_of_video(video: VideoResult) -> dict[str, Any]:
    names = sorted({track.category_name for track in video.tracks})
    return {
        "video_name": video.video_name,
        "frames": video.num_frames,
        "tracks": len(video.tracks),
        "categories": names,
    }


def _outline_of(document: Any) -> list[dict[str, Any]] | None:
    """The index rows of a parsed result document, or None when its outline is not as written by ovformer."""
    if not isinstance(document, dict) or document.get("version") != RESULT_VERSION:
        return None
    videos = document.get("videos")
    if not isinstance(videos, list):
        return None
    outline = []
    for video in videos:
        tracks = video.get("tracks") if isinstance(video, dict) else None
        if not (
            isinstance(tracks, list)
            and isinstance(video.get("video_name"), str)
            and isinstance(video.get("num_frames"), int)
            and all(isinstance(t, dict) and isinstance(t.get("category_name"), str) for t in tracks)
        ):
            return None
        names = sorted({t["category_name"] for t in tracks})
        outline.append(
            {
                "video_name": video["video_name"],
                "frames": video["num_frames"],
                "tracks": len(tracks),
                "categories": names,
            }
        )
    return outline


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True)
class ReviewState:
    """What a reviewed copy says about one video.

    Attributes:
        reviewed: a reviewed copy of this video exists.
        revision: how many times it was saved (0: never); a save must name the revision it started from.
        time: when it was last saved (ISO 8601, UTC), or None.
        edits: the corrections it holds, in order (``ovformer_core.view.review`` format).
        problem: why the reviewed copy could not be read, or None.
    """

    reviewed: bool = False
    revision: int = 0
    time: str | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reviewed": self.reviewed,
            "revision": self.revision,
            "time": self.time,
            "edits": self.edits,
            "problem": self.problem,
        }


def review_state_of(result: VideoResult) -> ReviewState:
    """The review recorded in a reviewed video's metadata (``metadata["review"]``)."""
    review = result.metadata.get("review")
    if not isinstance(review, dict) or not review.get("reviewed"):
        return ReviewState()
    revision = review.get("revision")
    edits = review.get("edits")
    return ReviewState(
        reviewed=True,
        revision=revision if is_int(revision) else 1,
        time=review.get("time") if isinstance(review.get("time"), str) else None,
        edits=edits if isinstance(edits, list) else [],
    )


@dataclass(frozen=True)
class LoadedVideo:
    """One video of a result file, ready for the result page.

    Attributes:
        result_id: its id in page URLs.
        path: the original result file.
        video_index: its position in the file's ``videos``.
        result: the parsed result.
        present: bool ``[N, T]``, which track has pixels in which processed frame.
    """

    result_id: str
    path: Path
    video_index: int
    result: VideoResult
    present: np.ndarray = field(repr=False)


class ResultIndex:
    """Finds and reads the results of the served folder.

    Args:
        folder: the served folder.
        only: list just these result files (``ovformer view RESULT.json``) plus those added later
            with ``add`` (results of runs started from the page); None lists every result found.
    """

    def __init__(self, folder: ServedFolder, only: Sequence[Path] | None = None) -> None:
        self.folder = folder
        self.only = None if only is None else [Path(os.path.realpath(p)) for p in only]
        self._ids: dict[str, Path] = {}
        self._loaded: OrderedDict[Path, tuple[tuple[int, int] | None, list[VideoResult] | ResultsError]] = OrderedDict()
        self._present: dict[tuple[Path, int, tuple[int, int] | None], np.ndarray] = {}
        self._outlines: dict[Path, tuple[tuple[int, int] | None, list[dict[str, Any]]]] = {}
        self._lock = threading.RLock()
        self._file_locks: dict[Path, threading.Lock] = {}
        self._reader: threading.Thread | None = None

    def add(self, path: Path) -> None:
        """List ``path`` too (a result written by a run from the page)."""
        if self.only is not None:
            with self._lock:
                self.only.append(Path(os.path.realpath(path)))

    def file_id(self, path: Path) -> str:
        """The stable id part of a result file (hash of its path relative to the served folder)."""
        return hashlib.sha1(self.folder.display(path).encode("utf-8")).hexdigest()[:12]

    def result_files(self) -> list[Path]:
        """The original result files, sorted by path; refreshes the id table."""
        if self.only is not None:
            candidates = [p for p in self.only if p.is_file()]
        else:
            candidates = [p for p in self.folder.walk() if p.suffix == ".json"]
        files = []
        for path in candidates:
            if is_reviewed_path(path) and reviewed_original(path).is_file():
                continue  # the review state of its original, not a result of its own
            if is_result_file(path):
                files.append(path)
        with self._lock:
            self._ids = {self.file_id(path): path for path in files}
        return sorted(files, key=lambda p: self.folder.display(p))

    def read(self, path: Path) -> list[VideoResult]:
        """The videos of a result file (cached while the file is unchanged).

        Requests for other files go on while one is read; requests for the same file wait for it.

        Raises:
            ResultsError: the file is malformed.
        """
        key = _file_key(path)
        with self._lock:
            file_lock = self._file_locks.setdefault(path, threading.Lock())
        with file_lock:
            with self._lock:
                cached = self._loaded.get(path)
                if cached is not None and cached[0] == key:
                    self._loaded.move_to_end(path)
            if cached is None or cached[0] != key:
                try:
                    outcome: list[VideoResult] | ResultsError = load_results(path)
                except ResultsError as err:
                    outcome = err
                cached = (key, outcome)
                with self._lock:
                    self._loaded[path] = cached
                    while len(self._loaded) > LOADED_FILES_KEPT:
                        self._loaded.popitem(last=False)
        if isinstance(cached[1], ResultsError):
            raise cached[1]
        return cached[1]

    def read_ahead(self, paths: Sequence[Path]) -> None:
        """Read (and check) ``paths`` on a background thread, newest first, so their pages open at once."""
        newest = sorted(paths, key=lambda p: _file_key(p) or (0, 0), reverse=True)[:LOADED_FILES_KEPT]

        def read_all() -> None:
            for path in newest:
                try:
                    self.read(path)
                except (ResultsError, OSError):
                    pass  # listed with its error; the page reports it when opened

        with self._lock:
            if self._reader is not None and self._reader.is_alive():
                return
            self._reader = threading.Thread(target=read_all, name="ovformer-view-read-ahead", daemon=True)
            self._reader.start()

    def review_state(self, path: Path, video_index: int) -> ReviewState:
        """The review state of video ``video_index`` of result file ``path``."""
        if is_reviewed_path(path):
            return ReviewState(problem="this is a reviewed copy whose original is missing; it is shown read-only")
        reviewed = reviewed_path(path)
        if not reviewed.exists():
            return ReviewState()
        try:
            videos = self.read(reviewed)
        except ResultsError as err:
            return ReviewState(problem=f"{reviewed.name} cannot be read ({err}); move it away to save a new review")
        if video_index >= len(videos):
            return ReviewState()
        return review_state_of(videos[video_index])

    def _outline(self, path: Path) -> list[dict[str, Any]]:
        """``video_name``, ``frames``, ``tracks`` and ``categories`` of each video of a result file.

        Read with a plain JSON parse (cached while the file is unchanged): checking every mask of
        every listed file would make the index of a folder of long results slow. A file whose outline
        looks wrong is read in full, for the exact error.

        Raises:
            ResultsError: the file is malformed.
        """
        key = _file_key(path)
        with self._lock:
            cached = self._outlines.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            outline = _outline_of(json.loads(path.read_bytes()))
        except (OSError, ValueError):
            outline = None
        if outline is None:
            outline = [_outline_of_video(video) for video in self.read(path)]
        with self._lock:
            self._outlines[path] = (key, outline)
        return outline

    def summaries(self) -> list[dict[str, Any]]:
        """One row per video for the index page (name, frames, tracks, categories, date, review state)."""
        rows = []
        files = self.result_files()
        for path in files:
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
            base: dict[str, Any] = {"file": self.folder.display(path), "modified": modified}
            try:
                outline = self._outline(path)
            except ResultsError as err:
                rows.append({**base, "id": None, "error": str(err)})
                continue
            for k, video in enumerate(outline):
                review = self.review_state(path, k).to_dict()
                rows.append({**base, **video, "id": f"{self.file_id(path)}-{k}", "review": review})
        self.read_ahead(files)
        return rows

    def locate(self, result_id: str) -> tuple[Path, int]:
        """The result file and video position behind a page id, without reading the file.

        Raises:
            KeyError: no such id (never listed, or its file is gone).
        """
        found = re.fullmatch(r"([0-9a-f]{12})-(\d{1,6})", result_id or "")
        if found is None:
            raise KeyError(result_id)
        with self._lock:
            path = self._ids.get(found[1])
        if path is None:
            self.result_files()
            with self._lock:
                path = self._ids.get(found[1])
        if path is None or not path.is_file():
            raise KeyError(result_id)
        return path, int(found[2])

    def video(self, result_id: str) -> LoadedVideo:
        """The video behind a page id.

        Raises:
            KeyError: no such id (never listed, or its file is gone).
            ResultsError: its file is malformed.
        """
        path, index = self.locate(result_id)
        videos = self.read(path)
        if index >= len(videos):
            raise KeyError(result_id)
        key = (path, index, _file_key(path))
        with self._lock:
            present = self._present.get(key)
        if present is None:
            present = track_presence(videos[index])
            with self._lock:
                self._present = {k: v for k, v in self._present.items() if k[0] != path}
                self._present[key] = present
                while len(self._present) > 4 * LOADED_FILES_KEPT:
                    del self._present[next(iter(self._present))]
        return LoadedVideo(result_id, path, index, videos[index], present)

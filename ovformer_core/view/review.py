"""Corrections of a result and the reviewed copy they are saved to.

A review is the original result plus an ordered list of edits:

- ``{"op": "rename", "track_id": 3, "category_name": "dog"}``: a name of the vocabulary takes its
  label and id; a new name is appended to the result's categories (next free id);
- ``{"op": "delete", "track_id": 5}``: a false positive;
- ``{"op": "merge", "track_id": 7, "into": 2}``: one object split by the tracker; track 7's masks are
  joined to track 2's (union where both have one), track 2 keeps its id and name, the score is the
  higher of the two, and track 7 disappears.

Saving applies the edits to the untouched original ``NAME.json`` and writes ``NAME.reviewed.json``
(atomically, same full-result format, other videos of the file kept as they were) with the review in
each reviewed video's ``metadata["review"]``: ``reviewed``, ``revision`` (saves so far), ``time``
(UTC), ``edits``, ``original`` (file name), ``tracks_before``/``tracks_after``. A save names the
revision it started from, so two pages saving the same result cannot silently overwrite each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pycocotools import mask as mask_utils

from ovformer_core.errors import ResultsError, ReviewError
from ovformer_core.io.json_input import is_int
from ovformer_core.io.outputs import reviewed_path
from ovformer_core.io.results import Track, VideoResult, load_results, write_result_json
from ovformer_core.io.rle import Rle

EditOp = Literal["rename", "delete", "merge"]
#: Most edits one review may hold.
MAX_EDITS = 10_000
#: Longest category name a rename may give.
MAX_NAME_LENGTH = 200


class ReviewConflict(ReviewError):
    """The reviewed copy changed since the page loaded it (another page saved in between)."""


@dataclass(frozen=True)
class Edit:
    """One correction (see the module docstring).

    Attributes:
        op: ``rename``, ``delete`` or ``merge``.
        track_id: the track corrected (merge: the track that disappears into ``into``).
        category_name: the new name (rename only).
        into: the track that absorbs ``track_id`` (merge only).
    """

    op: EditOp
    track_id: int
    category_name: str | None = None
    into: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"op": self.op, "track_id": self.track_id}
        if self.op == "rename":
            data["category_name"] = self.category_name
        if self.op == "merge":
            data["into"] = self.into
        return data


def _track_id(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ReviewError(f"{where}: track ids are integers from 1; reload the page")
    return value


def _category_name(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ReviewError(f"{where}: the new category name must be text")
    name = " ".join(value.split())
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ReviewError(f"{where}: a category name has 1 to {MAX_NAME_LENGTH} characters; type another name")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ReviewError(f"{where}: the category name holds control characters; type another name")
    return name


def parse_edits(data: Any) -> list[Edit]:
    """Check a list of edits as the page sends it.

    Raises:
        ReviewError: not a list, too long, or an entry that is not a well-formed edit.
    """
    if not isinstance(data, list):
        raise ReviewError("'edits' must be a list of corrections")
    if len(data) > MAX_EDITS:
        raise ReviewError(f"{len(data)} edits are more than {MAX_EDITS}; save more often")
    edits = []
    for i, item in enumerate(data):
        where = f"edit {i + 1}"
        if not isinstance(item, dict):
            raise ReviewError(f"{where} must be an object with 'op' and 'track_id'")
        op = item.get("op")
        track_id = _track_id(item.get("track_id"), where)
        if op == "rename":
            edits.append(Edit("rename", track_id, category_name=_category_name(item.get("category_name"), where)))
        elif op == "delete":
            edits.append(Edit("delete", track_id))
        elif op == "merge":
            into = _track_id(item.get("into"), where)
            if into == track_id:
                raise ReviewError(f"{where}: a track cannot be merged into itself; pick two different tracks")
            edits.append(Edit("merge", track_id, into=into))
        else:
            raise ReviewError(f"{where}: unknown op {op!r}; use rename, delete or merge")
    return edits


def _union(first: Rle | None, second: Rle | None) -> Rle | None:
    if first is None or second is None:
        return first if second is None else second
    as_coco = [{"size": list(r["size"]), "counts": r["counts"].encode("ascii")} for r in (first, second)]
    merged = mask_utils.merge(as_coco, intersect=False)
    return {"size": [int(v) for v in merged["size"]], "counts": merged["counts"].decode("ascii")}


def apply_edits(result: VideoResult, edits: list[Edit]) -> VideoResult:
    """The result with ``edits`` applied in order (``result`` itself is not changed).

    Raises:
        ReviewError: an edit names a track that does not exist (any more).
    """
    tracks: dict[int, Track] = {track.track_id: track for track in result.tracks}
    categories = [dict(category) for category in result.categories]
    for i, edit in enumerate(edits):
        where = f"edit {i + 1}"
        for track_id in (edit.track_id, edit.into):
            if track_id is not None and track_id not in tracks:
                raise ReviewError(
                    f"{where}: track {track_id} does not exist (deleted or merged by an earlier edit?); reload the page"
                )
        track = tracks[edit.track_id]
        if edit.op == "delete":
            del tracks[edit.track_id]
        elif edit.op == "rename":
            assert edit.category_name is not None
            label = next((n for n, c in enumerate(categories) if c["name"] == edit.category_name), None)
            if label is None:
                new_id = max((int(c["id"]) for c in categories), default=0) + 1
                categories.append({"id": new_id, "name": edit.category_name})
                label = len(categories) - 1
            tracks[edit.track_id] = replace(
                track,
                label=label,
                category_name=str(categories[label]["name"]),
                category_id=int(categories[label]["id"]),
            )
        else:
            assert edit.into is not None
            target = tracks[edit.into]
            joined = [_union(a, b) for a, b in zip(target.segmentations, track.segmentations, strict=True)]
            tracks[edit.into] = replace(target, score=max(target.score, track.score), segmentations=joined)
            del tracks[edit.track_id]
    kept = [tracks[t.track_id] for t in result.tracks if t.track_id in tracks]
    return replace(result, tracks=kept, categories=categories)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (threads of this process and other processes alike)."""
    with path.open("rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _revision_of(result: VideoResult) -> int:
    review = result.metadata.get("review")
    if not isinstance(review, dict) or not review.get("reviewed"):
        return 0
    revision = review.get("revision")
    return revision if is_int(revision) else 1


@dataclass(frozen=True)
class SavedReview:
    """Outcome of ``save_review``.

    Attributes:
        path: the reviewed copy written.
        revision: its revision now.
        time: the save time (ISO 8601, UTC).
        tracks: tracks left after the edits.
    """

    path: Path
    revision: int
    time: str
    tracks: int


def save_review(
    original: Path,
    video_index: int,
    edits: list[Edit],
    base_revision: int,
    video_path: str | None = None,
) -> SavedReview:
    """Apply ``edits`` to video ``video_index`` of ``original`` and write ``NAME.reviewed.json``.

    Args:
        original: the result file as ``ovformer segment`` wrote it (never modified).
        video_index: which of its videos was reviewed.
        edits: the whole review (it replaces the previous one).
        base_revision: the revision the page started from (0 when there was no reviewed copy).
        video_path: where the source video is now, when the page was pointed at a moved video.

    Raises:
        ReviewConflict: the reviewed copy was saved by someone else since ``base_revision``, or it is
            unreadable.
        ReviewError: an edit does not apply.
        ResultsError: the original is unreadable.
        OutputError: the reviewed copy cannot be written (disk full...); the old one stays.
    """
    target = reviewed_path(original)
    with _exclusive(original):
        originals = load_results(original)
        if video_index >= len(originals):
            raise ReviewError(f"{original.name} has no video {video_index}; reload the page")
        current: list[VideoResult] | None = None
        if os.path.lexists(target):
            try:
                current = load_results(target)
            except ResultsError as err:
                raise ReviewConflict(f"{target.name} cannot be read ({err}); move it away, then save again") from None
            if len(current) != len(originals):
                current = None
        revision = _revision_of(current[video_index]) if current is not None else 0
        if revision != base_revision:
            raise ReviewConflict(
                f"{target.name} was saved from another page since this one loaded it (revision {revision}, "
                f"this page started from {base_revision}); reload the page to see those corrections"
            )
        reviewed = apply_edits(originals[video_index], edits)
        time = datetime.now(timezone.utc).isoformat(timespec="seconds")
        review = {
            "reviewed": True,
            "revision": revision + 1,
            "time": time,
            "edits": [edit.to_dict() for edit in edits],
            "original": original.name,
            "tracks_before": len(originals[video_index].tracks),
            "tracks_after": len(reviewed.tracks),
        }
        reviewed = replace(
            reviewed,
            video_path=video_path if video_path is not None else reviewed.video_path,
            metadata={**reviewed.metadata, "review": review},
        )
        videos = [
            reviewed if k == video_index else (current[k] if current is not None else video)
            for k, video in enumerate(originals)
        ]
        write_result_json(target, videos)
    return SavedReview(target, revision + 1, time, len(reviewed.tracks))

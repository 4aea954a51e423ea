"""The checks every reader of a YouTube-VIS / COCO-style dataset file shares (inference, evaluation, training).

``check_dataset`` looks at the structure the three readers rely on, once, with one-line errors:

- ``videos`` (or ``images``) are objects with unique integer ids; frame ``file_names`` (``file_name`` of
  an image) are relative paths that stay inside the folder they are read from (no absolute path, no
  ``..`` component); ``height`` / ``width`` are a frame size a video can have; ``length`` agrees with
  ``file_names``;
- ``categories`` are objects with unique integer ids (and string names where asked);
- ``annotations`` are objects, and their ``id`` s, where given, are unique.

A duplicate id is refused rather than resolved: a repeated video would be segmented and reported
twice, a repeated category id makes the vocabulary order ambiguous, a repeated annotation id makes the
evaluator's matching ill-defined. What each reader does with the data (which keys it needs beyond these,
unknown video or category ids in annotations) stays with the reader.
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from ovformer_core.errors import OVFormerError
from ovformer_core.io.json_input import brief
from ovformer_core.io.rle import frame_size_problem

#: Ids are held in int64 arrays (evaluation) and tensors (training): larger ones cannot be represented.
MAX_ID = 2**63 - 1
#: Most frames a video may list: 2**31 - 1 (at 1,000 fps, 24 days of video); keeps frame counts in int32.
MAX_VIDEO_FRAMES = 2**31 - 1

_PATH_SEPARATORS = re.compile(r"[/\\]")


def is_id(value: Any) -> bool:
    """True for an integer (Python or numpy, not a bool) in int64 range."""
    if type(value) is int:  # the usual case, without the slower abstract-class check below
        return -MAX_ID - 1 <= value <= MAX_ID
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and -MAX_ID - 1 <= int(value) <= MAX_ID


def file_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a frame file name relative to a dataset's root folder, or None.

    Absolute paths and ``..`` components are refused: a dataset file must not make a run read files
    outside the folder the user named (``--frames-root``, ``data.train_root``). Both ``/`` and ``\\``
    count as separators, so a name is refused alike on every platform.
    """
    if not isinstance(name, str) or not name:
        return f"{brief(name)} is not a file name"
    if ".." not in name and ":" not in name and "\x00" not in name and name[0] not in "/\\":
        return None  # the usual case: nothing below can apply
    if "\x00" in name:
        return f"{brief(name)} contains a NUL byte"
    if os.path.isabs(name) or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"{brief(name)} is an absolute path; file names must be relative to the frames folder"
    if ".." in _PATH_SEPARATORS.split(name):
        return f"{brief(name)} goes up a folder ('..'); file names must stay inside the frames folder"
    return None


def _fail(error: type[OVFormerError], where: str, message: str) -> OVFormerError:
    return error(f"{where}: {message}")


_SINGULAR = {"videos": "video", "images": "image", "categories": "category", "annotations": "annotation"}


def check_ids(records: list[Any], section: str, error: type[OVFormerError], where: str, required: bool) -> None:
    """Every record of ``section`` is an object; its ids (when ``required``, else where given) are unique
    int64 integers.

    Raises:
        error: ``"<where>: <section>[i] ..."`` for the first bad record.
    """
    first_at: dict[int, int] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise _fail(error, where, f"{section}[{i}] is not an object")
        if "id" not in record:
            if required:
                raise _fail(error, where, f"{section}[{i}] has no 'id'")
            continue
        record_id = record["id"]
        if not is_id(record_id):
            raise _fail(error, where, f"{section}[{i}] 'id' must be an integer, not {brief(record_id)}")
        if record_id in first_at:
            raise _fail(
                error,
                where,
                f"{_SINGULAR[section]} id {record_id} appears twice in '{section}' ({section}[{first_at[record_id]}] "
                f"and {section}[{i}]); ids must be unique",
            )
        first_at[record_id] = i


def check_categories(data: Any, where: str, error: type[OVFormerError], *, need_names: bool) -> list[dict[str, Any]]:
    """The ``categories`` list of a dataset file (any COCO / LVIS / YouTube-VIS style), checked.

    For readers that need only the categories (a vocabulary, a split by partition); ``check_dataset``
    checks a whole file.

    Returns:
        The category records, each an object with a unique integer ``id`` (and a string ``name`` when
        ``need_names``).

    Raises:
        error: ``"<where> has no 'categories' list ..."`` or ``"<where>: categories[i] ..."``.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("categories"), list):
        raise error(f"{where} has no 'categories' list with 'id' and 'name'; give a COCO/YouTube-VIS-style dataset")
    categories: list[dict[str, Any]] = data["categories"]
    check_ids(categories, "categories", error, where, required=True)
    if need_names:
        _check_category_names(categories, error, where)
    return categories


def _check_category_names(categories: list[dict[str, Any]], error: type[OVFormerError], where: str) -> None:
    for i, category in enumerate(categories):
        if not isinstance(category.get("name"), str):
            raise _fail(error, where, f"categories[{i}] (id {category['id']}) needs a string 'name'")


def _check_video(
    video: dict[str, Any], label: str, error: type[OVFormerError], where: str, need_file_names: bool, need_sizes: bool
) -> None:
    names = video.get("file_names")
    if names is None and need_file_names:
        raise _fail(error, where, f"{label} has no 'file_names'")
    if names is not None:
        if not isinstance(names, list) or not names:
            raise _fail(error, where, f"{label} 'file_names' must be a non-empty list of frame paths")
        for name in names:
            problem = file_name_problem(name)
            if problem is not None:
                raise _fail(error, where, f"{label} frame {problem}")
    length = video.get("length")
    if length is not None:
        if not (is_id(length) and 1 <= length <= MAX_VIDEO_FRAMES):
            raise _fail(error, where, f"{label} 'length' {brief(length)} is not a frame count")
        if names is not None and length != len(names):
            raise _fail(error, where, f"{label} has 'length' {length} but {len(names)} file names")
    elif names is None:
        raise _fail(error, where, f"{label} has neither 'length' nor 'file_names'")
    _check_size(video, label, error, where, need_sizes)


def _check_size(record: dict[str, Any], label: str, error: type[OVFormerError], where: str, required: bool) -> None:
    for key in ("height", "width"):
        if key not in record:
            if required:
                raise _fail(error, where, f"{label} has no '{key}'")
            return
    problem = frame_size_problem(record["height"], record["width"])
    if problem is not None:
        raise _fail(
            error,
            where,
            f"{label} frame size ({brief(record['width'])} x {brief(record['height'])}) {problem}",
        )


def _require_list(data: dict[str, Any], key: str, error: type[OVFormerError], where: str) -> list[Any]:
    if key not in data:
        raise _fail(
            error, where, f"'{key}' is missing; a YouTube-VIS file has 'videos', 'categories' and 'annotations'"
        )
    value = data[key]
    if not isinstance(value, list):
        raise _fail(error, where, f"'{key}' must be a list, not {type(value).__name__}")
    return value


def check_dataset(
    data: Any,
    where: str,
    error: type[OVFormerError],
    *,
    need_file_names: bool,
    need_sizes: bool,
    need_category_names: bool,
    need_categories: bool,
    need_annotations: bool,
    allow_images: bool = False,
) -> Literal["videos", "images"]:
    """Check the shared structure of a dataset file (see the module docstring).

    Args:
        data: the parsed JSON.
        where: names the file in messages (``"ground truth"``, ``"dataset file gt.json"``).
        error: the ``OVFormerError`` subclass to raise.
        need_file_names: every video must list its frames (inference, training).
        need_sizes: every video must give ``height`` and ``width`` (evaluation, training).
        need_category_names: every category must have a string ``name`` (it becomes the vocabulary).
        need_categories: ``categories`` must not be empty.
        need_annotations: ``annotations`` must be present (else it may be missing, e.g. a test split).
        allow_images: a COCO/LVIS image file (``images`` with ``file_name`` / ``coco_url``) is accepted
            when it has no ``videos``.

    Returns:
        Which key holds the items: ``"videos"`` or ``"images"``.

    Raises:
        error: one line naming the first problem.
    """
    if not isinstance(data, dict):
        raise error(f"{where}: the top level must be an object, not {type(data).__name__}")
    section: Literal["videos", "images"] = "images" if allow_images and "videos" not in data else "videos"
    if section == "images" and "images" not in data:
        raise error(
            f"{where} has neither 'videos' (YouTube-VIS format) nor 'images' (COCO/LVIS format); give a dataset json"
        )
    items = _require_list(data, section, error, where)
    check_ids(items, section, error, where, required=True)
    for i, item in enumerate(items):
        label = f"{section}[{i}] (id {item['id']})"
        if section == "videos":
            _check_video(item, label, error, where, need_file_names, need_sizes)
        else:
            if "file_name" in item:
                problem = file_name_problem(item["file_name"])
                if problem is not None:
                    raise _fail(error, where, f"{label} file name {problem}")
            _check_size(item, label, error, where, need_sizes)
    categories = _require_list(data, "categories", error, where)
    if need_categories and not categories:
        raise _fail(error, where, "'categories' is empty; list the categories with 'id' and 'name'")
    check_ids(categories, "categories", error, where, required=True)
    if need_category_names:
        _check_category_names(categories, error, where)
    if need_annotations or "annotations" in data:
        annotations = _require_list(data, "annotations", error, where)
        check_ids(annotations, "annotations", error, where, required=False)
    return section

"""The usual results file decoded straight into typed columns, without building its JSON tree.

A results file is tens of megabytes of one shape: a list of ``{"video_id": int, "category_id": int,
"score": number, "segmentations": [{"size": [h, w], "counts": str} or null, ...]}``. msgspec decodes
that shape in C into small records, checking every type on the way, in about half the time a generic
parser takes to build the dicts. Anything else (another shape, an extra key, a key given twice, text
the strict parser would read differently) gives None here and goes through ``parse_json_text``
and the entry-by-entry checks, which decide and name the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import msgspec
import numpy as np

from ovformer_core.io.json_input import collector_paused, has_escaped_colon


class _Mask(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    size: tuple[int, int]
    counts: str


class _Result(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    video_id: int
    category_id: int
    # An int stays an int, so that its conversion to float is Python's, as on the generic path.
    score: float | int
    segmentations: list[_Mask | None]


_DECODER = msgspec.json.Decoder(list[_Result])


@dataclass(frozen=True)
class ResultColumns:
    """The fields of every result, with their types checked and nothing else (not the ground truth).

    Built here from the typed decode and by ``results_check`` from parsed dicts.

    Attributes:
        video_ids, category_ids: ints, one per result.
        scores: floats or ints, one per result.
        num_frames: int64 ``[N]`` segmentations per result.
        is_present: bool ``[F]`` over all results' segmentations end to end: a mask, not absent.
        sizes: of every mask (``is_present``), in order: tuples of two ints from the typed decode, the
            ``size`` values as found (unchecked) from dicts.
        counts: of every mask, str.
    """

    video_ids: list[int]
    category_ids: list[int]
    scores: list[float | int]
    num_frames: np.ndarray
    is_present: np.ndarray
    sizes: list[Any]
    counts: list[str]


def decode_result_columns(data: bytes) -> ResultColumns | None:
    """The columns of a results file of the usual shape, or None (see the module docstring).

    msgspec keeps the last of a repeated key where the strict parser refuses the file, so repeats are
    ruled out by counting: every key of the decoded records is followed by one ``:`` outside strings,
    and the only strings that may hold a ``:`` are the counts, so the text must hold exactly one per
    field of each result and of each mask, plus those in the counts. An escaped colon (``\\u003a``)
    could hide one, so such text is left to the generic path.
    """
    if has_escaped_colon(data):
        return None
    try:
        with collector_paused():
            records = _DECODER.decode(data)
    except msgspec.DecodeError:  # ValidationError included
        return None
    segmentations = [r.segmentations for r in records]
    flat = list(chain.from_iterable(segmentations))
    present: list[_Mask] = list(filter(None, flat))
    counts = [m.counts for m in present]
    colons = (
        len(_Result.__struct_fields__) * len(records)
        + len(_Mask.__struct_fields__) * len(present)
        + sum(map(str.count, counts, repeat(":")))
    )
    if data.count(b":") != colons:
        return None
    return ResultColumns(
        video_ids=[r.video_id for r in records],
        category_ids=[r.category_id for r in records],
        scores=[r.score for r in records],
        num_frames=np.fromiter(map(len, segmentations), dtype=np.int64, count=len(records)),
        is_present=np.fromiter(map(bool, flat), dtype=bool, count=len(flat)),  # as `filter(None, flat)`
        sizes=[m.size for m in present],
        counts=counts,
    )

"""Results files decoded straight to columns give what the generic parse and checks give, or defer to them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ovformer_core.errors import ResultsError
from ovformer_core.eval import results_check
from ovformer_core.eval.ground_truth import GroundTruth, load_ground_truth
from ovformer_core.eval.results_check import Detections, check_results, load_results, read_checked_results
from ovformer_core.eval.results_typed import decode_result_columns
from tests.eval.eval_cases import EVAL_CASES

CASE = EVAL_CASES / "case1_small"


def _summary(detections: Detections) -> tuple[Any, ...]:
    arrays = (detections.video, detections.category, detections.score, detections.file_index)
    masks = detections.masks
    return (
        tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays),  # bit for bit (-0.0 is not 0.0)
        tuple((a.dtype.str, a.shape, a.tobytes()) for a in (masks.frame, masks.area, masks.track_start)),
        [{"size": list(r["size"]), "counts": r["counts"]} for r in masks.rles],
        detections.num_results,
        detections.num_unknown_category,
    )


def _outcome(read: Any) -> tuple[str, Any]:
    try:
        return "ok", _summary(read())
    except ResultsError as err:
        return "error", str(err)


def _both(path: Path, gt: GroundTruth) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """(typed reader, generic parse + checks) outcomes for one file."""
    return _outcome(lambda: read_checked_results(path, gt)), _outcome(lambda: check_results(load_results(path), gt))


@pytest.mark.parametrize("case", ["case0_tiny", "case1_small", "case3_large", "case5_empty_results"])
def test_reference_files_decode_straight_to_the_same_detections(case: str) -> None:
    path = EVAL_CASES / case / "results.json"
    assert decode_result_columns(path.read_bytes()) is not None
    typed, generic = _both(path, load_ground_truth(EVAL_CASES / case / "gt.json"))
    assert typed[0] == "ok" and typed == generic


def _texts() -> dict[str, tuple[str, bool]]:
    """Edits of case1_small's results text, and whether the typed decoder reads the edited text at all.

    Those it reads still fail a check there and take the generic path; the others never reach it.
    """
    results = json.loads((CASE / "results.json").read_text())
    plain = json.dumps(results)
    first_mask = next(seg for seg in results[1]["segmentations"] if seg)
    counts, size = json.dumps(first_mask["counts"]), json.dumps(first_mask["size"])
    with_colon = next(seg["counts"] for r in results for seg in r["segmentations"] if seg and ":" in seg["counts"])

    def score(value: str) -> str:
        return re.sub(r'"score": [^,}]+', f'"score": {value}', plain, count=1)

    return {
        "repeated result key": (plain.replace('"score": ', '"score": 0.5, "score": ', 1), False),
        "repeated mask key": (plain.replace('"counts": ', '"counts": "0", "counts": ', 1), False),
        "repeated key with colons in the dropped value": (
            plain.replace(
                '"segmentations": ', '"segmentations": [{"size": [1, 1], "counts": "::"}], "segmentations": ', 1
            ),
            False,
        ),
        "extra key": (plain.replace('"score": ', '"id": 7, "score": ', 1), False),
        "escaped colon": (plain.replace(json.dumps(with_colon), json.dumps(with_colon).replace(":", "\\u003a")), False),
        "byte-order mark": ("\ufeff" + plain, False),
        "NaN score": (score("NaN"), False),
        "score too large for a float": (score("1" + "0" * 400), True),
        "empty object for an absent frame": (plain.replace(json.dumps(first_mask), "{}", 1), False),
        "float frame size": (plain.replace(size, size.replace(",", ".0,", 1), 1), False),
        "empty counts": (plain.replace(counts, '""', 1), True),
        "unknown video": (plain.replace('"video_id": ', '"video_id": 99', 1), True),
        "trailing text": (plain + " []", False),
        "full ovformer result": (json.dumps({"version": 1, "videos": []}), False),
    }


@pytest.mark.parametrize("name", sorted(_texts()))
def test_unusual_text_goes_the_generic_way_with_the_same_outcome(name: str, tmp_path: Path) -> None:
    text, decodes = _texts()[name]
    path = tmp_path / "results.json"
    path.write_bytes(text.encode("utf-8"))
    assert (decode_result_columns(path.read_bytes()) is not None) == decodes
    typed, generic = _both(path, load_ground_truth(CASE / "gt.json"))
    assert typed == generic


def test_colons_inside_counts_are_not_taken_for_repeated_keys(tmp_path: Path) -> None:
    results = json.loads((CASE / "results.json").read_text())
    colons = sum(seg["counts"].count(":") for r in results for seg in r["segmentations"] if seg)
    assert colons > 0  # the RLE alphabet holds ':', so real counts carry them
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results, indent=1))
    columns = decode_result_columns(path.read_bytes())
    assert columns is not None and len(columns.counts) == sum(1 for r in results for s in r["segmentations"] if s)
    typed, generic = _both(path, load_ground_truth(CASE / "gt.json"))
    assert typed[0] == "ok" and typed == generic


def test_integer_scores_convert_as_python_converts_them(tmp_path: Path) -> None:
    results = json.loads((CASE / "results.json").read_text())
    results[0]["score"] = 2**60 + 1  # not exactly a float: the rounding must be Python's
    results[1]["score"] = 1
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    gt = load_ground_truth(CASE / "gt.json")
    typed = read_checked_results(path, gt)
    assert typed.score[typed.file_index == 0][0] == float(2**60 + 1)
    assert _summary(typed) == _summary(check_results(load_results(path), gt))


def test_long_halfway_scores_are_the_same_floats_both_ways(tmp_path: Path) -> None:
    results = json.loads((CASE / "results.json").read_text())
    literal = "0.750000000000000055511151231257827021181583404541015625" + "0" * 800
    text = re.sub(r'"score": [^,}]+', f'"score": {literal}', json.dumps(results), count=1)
    path = tmp_path / "results.json"
    path.write_text(text)
    gt = load_ground_truth(CASE / "gt.json")
    typed, generic = _both(path, gt)
    assert typed[0] == "ok" and typed == generic
    assert read_checked_results(path, gt).score[0] == 0.75  # as Python rounds it (ties to even)


def test_running_out_of_memory_in_the_typed_reader_leaves_it_to_the_generic_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(data: bytes) -> None:
        raise MemoryError

    monkeypatch.setattr(results_check, "decode_result_columns", no_memory)
    path = CASE / "results.json"
    gt = load_ground_truth(CASE / "gt.json")
    assert _summary(read_checked_results(path, gt)) == _summary(check_results(load_results(path), gt))


def test_bad_masks_are_named_as_before(tmp_path: Path) -> None:
    results = json.loads((CASE / "results.json").read_text())
    entry = results[2]
    frame = next(f for f, seg in enumerate(entry["segmentations"]) if seg)
    entry["segmentations"][frame]["counts"] = "1"  # one run of one pixel
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    typed, generic = _both(path, load_ground_truth(CASE / "gt.json"))
    assert typed == generic and typed[0] == "error"
    assert typed[1].startswith(f"results entry 2: frame {frame} has a bad RLE")


def test_scores_decode_to_the_same_floats_as_the_standard_parser() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(2000), rng.random(500) * 1e-300, rng.random(500) * 1e300])
    texts = [repr(float(v)) for v in values]
    texts += ["0.1", "1e-400", "4.9e-324", "2.2250738585072014e-308", "123456789012345678901"]
    entries = (f'{{"video_id": 1, "category_id": 1, "score": {t}, "segmentations": []}}' for t in texts)
    data = "[" + ", ".join(entries) + "]"
    columns = decode_result_columns(data.encode())
    assert columns is not None
    ours = np.array([float(s) for s in columns.scores])
    assert ours.tobytes() == np.array([float(json.loads(t)) for t in texts]).tobytes()


def test_random_edits_of_the_text_give_the_same_outcome_both_ways(tmp_path: Path) -> None:
    """Characters inserted, deleted or replaced anywhere: the typed reader never disagrees with the generic one."""
    text = (EVAL_CASES / "case0_tiny" / "results.json").read_bytes()
    gt = load_ground_truth(EVAL_CASES / "case0_tiny" / "gt.json")
    rng = np.random.default_rng(12)
    alphabet = b'0123456789:,{}[]" eE.-+nulltrue\\u003aoO_'
    path = tmp_path / "results.json"
    outcomes = set()
    for _ in range(300):
        data = bytearray(text)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(data)))
            action = rng.integers(0, 3)
            char = alphabet[int(rng.integers(0, len(alphabet)))]
            if action == 0:
                data.insert(at, char)
            elif action == 1:
                del data[at]
            else:
                data[at] = char
        path.write_bytes(bytes(data))
        typed, generic = _both(path, gt)
        assert typed == generic, bytes(data)
        outcomes.add(typed[0])
    assert outcomes == {"ok", "error"}  # both kinds of outcome were exercised


def test_the_first_bad_mask_is_named_whatever_the_category_of_the_later_one(tmp_path: Path) -> None:
    results = json.loads((CASE / "results.json").read_text())
    for index in (1, 3):
        frame = next(f for f, seg in enumerate(results[index]["segmentations"]) if seg)
        results[index]["segmentations"][frame]["counts"] = "1"  # one run of one pixel
    results[3]["category_id"] = 10**6  # not in the ground truth: ignored, but still checked
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    typed, generic = _both(path, load_ground_truth(CASE / "gt.json"))
    assert typed == generic and typed[0] == "error"
    assert typed[1].startswith("results entry 1: ")

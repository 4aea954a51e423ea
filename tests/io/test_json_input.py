"""The one JSON reader and the input-path check: every unusable file is one line naming it."""

from __future__ import annotations

import gc
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ovformer_core.errors import ResultsError, TrainingError
from ovformer_core.io.json_input import (
    _parse_fast,
    _parse_strict,
    _Unsure,
    brief,
    collector_paused,
    finite_float,
    parse_json_text,
    read_json,
)
from ovformer_core.io.paths import check_input_path, input_path_problem


def _error(path: Path) -> str:
    with pytest.raises(ResultsError) as info:
        read_json(path, "results file", ResultsError)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"results file {path} "), message
    return message


def _write(text: bytes | str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "input.json"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return make


def _symlink(target: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        link = folder / "input.json"
        link.symlink_to(folder / target)
        return link

    return make


def _loop(folder: Path) -> Path:
    (folder / "a.json").symlink_to(folder / "b.json")
    (folder / "b.json").symlink_to(folder / "a.json")
    return folder / "a.json"


def _folder(folder: Path) -> Path:
    (folder / "input.json").mkdir()
    return folder / "input.json"


BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda folder: folder / "missing.json", "does not exist; check the path"),
    "folder": (_folder, "is a folder, not a file"),
    "broken symlink": (_symlink("gone.json"), "is a broken symbolic link (to"),
    "symlink loop": (_loop, "is a symbolic link loop"),
    "parent is a file": (lambda folder: _write("{}")(folder) / "x.json", "a folder on its way is a file"),
    "latin-1": (_write(b'{"name": "caf\xe9"}'), "is not UTF-8 text (byte 0xe9 on line 1); save it as UTF-8"),
    "UTF-16": (_write('{"a": 1}'.encode("utf-16")), "is UTF-16 or UTF-32 text, not UTF-8"),
    "syntax": (_write('[\n  {"a": 1,}\n]'), "is not valid JSON (line 2, column 11: Expecting property name"),
    "empty": (_write(""), "is empty; it must hold JSON"),
    "whitespace only": (_write(" \n\t"), "is empty"),
    "deep nesting": (_write("[" * 100_000 + "]" * 100_000), "nests arrays or objects too deeply to parse"),
    "NaN": (_write('{"score": NaN}'), "contains NaN, which is not JSON"),
    "Infinity": (_write("[1, Infinity]"), "contains Infinity, which is not JSON"),
    "-Infinity": (_write("[-Infinity]"), "contains -Infinity, which is not JSON"),
    "float overflow": (_write('{"fps": 1e999}'), "contains the number 1e999, too large for a float"),
    "huge integer": (_write("[" + "7" * 5000 + "]"), "holds an integer with more than 4300 digits"),
    "duplicate key": (_write('{"score": 0.9, "id": 1, "score": 0.1}'), "has the key 'score' twice in one object"),
    "lone surrogate": (_write('["\\ud800x"]'), "contains an unpaired UTF-16 surrogate escape"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_json_inputs_are_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    make, expected = BAD_FILES[case]
    assert expected in _error(make(tmp_path))


def test_a_device_is_refused_without_reading_it() -> None:
    # Reading /dev/zero would never end.
    assert "is a device or socket, not a file" in _error(Path("/dev/zero"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _write("{}")(tmp_path)
    path.chmod(0)
    assert "cannot be read (permission denied)" in _error(path)


def test_plain_json_is_read_as_is(tmp_path: Path) -> None:
    document = {"names": ["café", "😀"], "score": 0.5, "ids": [1, -2, 10**30], "deep": [[[[[]]]]], "none": None}
    path = _write(json.dumps(document))(tmp_path)
    assert read_json(path, "results file", ResultsError) == document
    bom = _write(b"\xef\xbb\xbf" + json.dumps(document).encode())(tmp_path)
    assert read_json(bom, "results file", ResultsError) == document  # RFC 8259 lets a parser skip a BOM
    escaped = _write('["\\ud83d\\ude00", 1e308, -0.0]')(tmp_path)
    assert read_json(escaped, "results file", ResultsError) == ["😀", 1e308, -0.0]  # a surrogate pair is fine
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    writer = os.fork()
    if writer == 0:  # pragma: no cover - child process
        with open(fifo, "w") as handle:
            handle.write("[1, 2]")
        os._exit(0)
    assert read_json(fifo, "results file", ResultsError) == [1, 2]  # e.g. --gt <(zcat gt.json.gz)
    os.waitpid(writer, 0)


def test_text_parsing_raises_the_callers_error() -> None:
    assert parse_json_text('{"a": [1, 2]}', "--set a", TrainingError) == {"a": [1, 2]}
    with pytest.raises(TrainingError, match=r"^--set a contains NaN, which is not JSON"):
        parse_json_text("NaN", "--set a", TrainingError)


def test_path_kinds(tmp_path: Path) -> None:
    file = _write("{}")(tmp_path)
    assert input_path_problem(file, "file") is None and input_path_problem(tmp_path, "folder") is None
    assert input_path_problem(file, "any") is None and input_path_problem(tmp_path, "any") is None
    assert input_path_problem(file, "folder") == "is a file, not a folder; pass a folder"
    assert input_path_problem("a\x00b", "file") == "is not a valid path (it contains a NUL byte); check the path"
    with pytest.raises(TrainingError, match=r"^frames root .*gone does not exist; check the path$"):
        check_input_path(tmp_path / "gone", "frames root", TrainingError, kind="folder")
    assert check_input_path(file, "results file", ResultsError) == file


def test_brief_values_and_numbers() -> None:
    assert "..." in brief("x" * 1000) and len(brief("x" * 1000)) <= 40
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    assert len(brief(nested)) < 60  # no RecursionError, no megabyte message
    assert finite_float(0.5) == 0.5 and finite_float(3) == 3.0
    assert finite_float(10**400) is None and finite_float(float("nan")) is None and finite_float(True) is None
    assert finite_float("1") is None


# The fast path (orjson) must give exactly what the strict parser gives, or leave the text to it.
PLAIN_DOCUMENTS = [
    '{"names": ["café", "😀", "\\ud83d\\ude00", "a\\"b\\\\", "x:y"], "none": null, "flags": [true, false]}',
    "[0.1, 1e-05, 0.00012345678901234567, 123456.789e10, 5e-324, 1e-400, -0.0, -0, 2.5E3]",
    "[9223372036854775807, -9223372036854775808, 18446744073709551615, 123456789012345678]",
    '\ufeff{"a": {"b": [{"c": 1}, {"c": 2}]}}',
    '[{"size": [48, 64], "counts": "R10000000000000000000000000[1111111111111111111111]:"}]',
]
DEFERRED_DOCUMENTS = {
    "duplicate key": '{"a": 1, "a": 2}',
    "duplicate key, space before colon": '{"a" : 1, "a":2, "b":3}',
    "duplicate key, escaped colon": '{"a":1,"a":"\\u003a"}',
    "duplicate nested key": '[{"b": {"c": 1, "c": 1}}]',
    "integer beyond 64 bits": "[18446744073709551616]",
    "negative integer beyond 64 bits": '{"id": -9223372036854775809}',
    "integer of 30 digits": "[123456789012345678901234567890]",
    "float overflow": "[1e999]",
    "float of 1e16 or more (read alike, but written as an integer beyond 64 bits would be)": "[1.5e300]",
    "NaN": "[NaN]",
    "lone surrogate": '["\\ud800"]',
    "deep nesting": "[" * 2000 + "]" * 2000,
    "not UTF-8": b'["caf\xe9"]',
    "empty": "",
    "a literal of 769 digits (orjson may round a halfway one the other way)": "[0." + "7" * 768 + "]",
}


@pytest.mark.parametrize("text", PLAIN_DOCUMENTS)
def test_fast_parse_is_the_strict_parse(text: str) -> None:
    fast = _parse_fast(text)
    assert not isinstance(fast, _Unsure), "plain JSON should take the fast path"
    strict = _parse_strict(text, "t", ResultsError)
    assert fast == strict
    assert json.dumps(fast) == json.dumps(strict)  # same types and float bits (repr round-trips)
    assert _parse_fast(text.encode("utf-8")) == strict


@pytest.mark.parametrize("case", sorted(DEFERRED_DOCUMENTS))
def test_fast_parse_leaves_what_it_may_read_differently_to_the_strict_parser(case: str) -> None:
    assert isinstance(_parse_fast(DEFERRED_DOCUMENTS[case]), _Unsure)


def test_long_halfway_literals_round_as_python_rounds_them() -> None:
    # 0.75 + 2**-54: exactly halfway between 0.75 and the next float; ties round to even (0.75). Padded
    # with zeros past 768 digits, orjson 3.13 rounded it up; the text must reach the strict parser.
    halfway = "0.750000000000000055511151231257827021181583404541015625"
    for zeros in (0, 714, 715, 2000):
        literal = halfway + "0" * zeros
        assert parse_json_text(f"[{literal}]", "t", ResultsError) == [float(literal)] == [0.75]


def test_random_duplicate_keys_are_always_refused() -> None:
    rng = random.Random(0)

    def value(depth: int) -> object:
        kind = rng.randrange(6 if depth < 3 else 3)
        if kind == 0:
            return rng.choice([1, -7, 0.25, 1e-9, True, None, 2**63])
        if kind == 1:
            return "".join(rng.choice('ab:"\\0{}[],') for _ in range(rng.randrange(6)))
        if kind == 2:
            return rng.random()
        if kind in (3, 4):
            return {f"k{i}": value(depth + 1) for i in range(rng.randrange(4))}
        return [value(depth + 1) for _ in range(rng.randrange(4))]

    refused = 0
    for _ in range(300):
        document = json.dumps({"root": value(0), "tail": value(1)}, separators=rng.choice([(",", ":"), (", ", ": ")]))
        assert parse_json_text(document, "t", ResultsError) == json.loads(document)
        # The same document with one key written twice (the copy first or last, with any value).
        at = document.index('"tail"')
        doubled = document[:at] + '"root": ' + json.dumps(value(1)) + ", " + document[at:]
        with pytest.raises(ResultsError, match="has the key 'root' twice in one object"):
            parse_json_text(doubled, "t", ResultsError)
        refused += 1
    assert refused == 300


def test_the_collector_is_paused_only_inside() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()

"""The one reader of JSON inputs: results, ground truth, dataset files, vocabularies, training configs.

Anything that is not plain, unambiguous JSON is refused with one line naming the file and, where it
helps, the line and column: a path that cannot be read (see ``ovformer_core.io.paths``), bytes that are
not UTF-8, invalid syntax, nesting deeper than the parser can follow, ``NaN`` / ``Infinity`` (Python
extensions, not JSON), a number too large for a float (``1e999`` would silently become infinity) or too
long for an integer, a key given twice in one object (parsers disagree on which one wins) and an
unpaired UTF-16 surrogate escape (``"\\ud800"``, not a character: writing it back as UTF-8 fails). A
UTF-8 byte-order mark is skipped (RFC 8259 section 8.1 allows a parser to ignore it).

Speed: orjson parses first; its result is returned only where it provably equals the strict parse
(see ``_parse_fast``), and anything it refuses or might read differently goes through the strict
standard-library parser, which gives every message. Python's cyclic garbage collector is paused while
parsing: a parse builds only acyclic containers, which the collector would otherwise rescan over and
over (about 4x the parse time on a 60 MB results file).
"""

from __future__ import annotations

import gc
import json
import math
import numbers
import os
import reprlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeGuard

from ovformer_core.errors import OVFormerError
from ovformer_core.io.paths import check_input_path

_UTF8_BOM = b"\xef\xbb\xbf"
#: Byte-order marks of UTF-16 / UTF-32 (UTF-32-LE starts like UTF-16-LE).
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
#: How a lone surrogate can appear in parsed text: only through a ``\\uD800``-``\\uDFFF`` escape.
_SURROGATE_ESCAPE_STARTS = ("\\ud8", "\\ud9", "\\uda", "\\udb", "\\udc", "\\udd", "\\ude", "\\udf")

_brief = reprlib.Repr()
_brief.maxstring = 40
_brief.maxother = 40
_brief.maxlong = 40
_brief.maxlevel = 2
_brief.maxlist = _brief.maxdict = _brief.maxtuple = 4


def brief(value: Any) -> str:
    """A short ``repr`` of a value taken from a user's file, safe to put in a one-line message.

    Long strings, big numbers, long lists and deep nesting are cut (a plain ``repr`` of a hostile value
    could be megabytes long or exceed the recursion limit).
    """
    return _brief.repr(value)


def is_int(value: object) -> TypeGuard[int]:
    """True for a JSON integer (a Python ``int``, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float when it is a real number (not a bool) that fits one, else None.

    JSON integers can have thousands of digits; ``float()`` of those raises, so every number read from
    a user's file goes through here before arithmetic.
    """
    if type(value) is float:  # the usual case, without the slower abstract-class checks below
        return value if math.isfinite(value) else None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    try:
        converted = float(value)
    except OverflowError:
        return None
    return converted if math.isfinite(converted) else None


class _Refused(Exception):
    """Raised by the parser hooks: the text is valid Python-JSON but not plain JSON."""


def _refuse_constant(name: str) -> NoReturn:
    raise _Refused(f"contains {name}, which is not JSON; write null or a finite number instead")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Refused(f"contains the number {text[:24]}, too large for a float; write a smaller number")
    return value


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"has the key {brief(key)} twice in one object; keep one")
            seen.add(key)
    return obj


def _has_lone_surrogate(text: str, parsed: Any) -> bool:
    lowered = text.lower()
    if not any(start in lowered for start in _SURROGATE_ESCAPE_STARTS):
        return False
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _decode(data: bytes) -> str:
    """UTF-8 text of ``data`` (a leading UTF-8 BOM dropped); raises ``_Refused`` otherwise."""
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    elif data.startswith(_WIDE_BOMS) or b"\x00" in data[:4]:
        raise _Refused("is UTF-16 or UTF-32 text, not UTF-8; save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise _Refused(f"is not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); save it as UTF-8") from None


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building many acyclic containers (parsing, checking).

    Reference counting still frees everything; only the periodic rescans of every live container are
    skipped. The collector's previous state is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Unsure:
    """``_parse_fast`` could not prove its result equal to the strict parse."""


_UNSURE = _Unsure()
#: How orjson writes a float of magnitude 1e16 or more (``1.2345678901234567e+19``); integer literals
#: beyond 64 bits, which orjson returns as floats, are such floats.
_LARGE_FLOAT_EXPONENT = b"e+"
#: ``:`` written as an escape inside a string (JSON hex digits may be either case).
_ESCAPED_COLONS = (b"\\u003a", b"\\u003A")
#: orjson (3.13) rounds a decimal literal of 769 or more significant digits that lies exactly halfway
#: between two floats the wrong way (issue 12 review); the standard library and msgspec round it right.
#: Any run this long of digits and points, in a number or a string, sends the text to the strict parser.
_LONG_DIGIT_RUN = b"\x01" * 769
_DIGITS_AND_POINT = bytes.maketrans(b"0123456789.", b"\x01" * 11)


def has_escaped_colon(raw: bytes) -> bool:
    """True when JSON text may write a ``:`` inside a string as an escape (a count of colons misses it).

    Also true for an escaped backslash followed by ``u003a`` (a harmless false alarm: the caller only
    takes a slower path).
    """
    return b"\\u" in raw and any(escaped in raw for escaped in _ESCAPED_COLONS)


def _parse_fast(data: str | bytes) -> Any:
    """orjson's parse of ``data`` when it provably equals the strict parse, else ``_UNSURE``.

    orjson refuses NaN/Infinity, numbers that overflow a float, invalid UTF-8, unpaired surrogate
    escapes and nesting deeper than 1024 (all then left to the strict parser for the message), and
    parses numbers and strings as the standard library does. Three differences remain and are checked.
    A literal of 769 or more significant digits exactly halfway between two floats may round the other
    way, so text with such a run of digits goes to the strict parser. Integers beyond 64 bits become
    floats: those are 1e16 or more, which orjson writes with ``e+``, so any ``e+`` in its output (such a
    float, or those two characters in a string) sends the text to the strict parser. A key given twice
    silently keeps its last value: every key is followed by a ``:`` outside strings and orjson writes a
    string's ``:`` unescaped, so unless the text escapes a colon (``\\u003a``), a dropped key shows as
    fewer colons in orjson's re-serialisation than in the text (the dropped key's own, plus any inside
    its dropped value).
    """
    import orjson  # here, not at the top: `ovformer --help` imports this module

    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate character
            return _UNSURE
    else:
        raw = data
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    if _LONG_DIGIT_RUN in raw.translate(_DIGITS_AND_POINT):
        return _UNSURE
    try:
        parsed = orjson.loads(raw)
        written = orjson.dumps(parsed)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, MemoryError):
        return _UNSURE
    if _LARGE_FLOAT_EXPONENT in written or has_escaped_colon(raw):
        return _UNSURE
    if written.count(b":") != raw.count(b":"):
        return _UNSURE
    return parsed


def parse_json_text(data: str | bytes, where: str, error: type[OVFormerError]) -> Any:
    """Parse JSON text, refusing anything that is not plain JSON (see the module docstring).

    Args:
        data: the text, or its UTF-8 bytes.
        where: names the text in the message, e.g. ``"results file r.json"``.
        error: the ``OVFormerError`` subclass to raise.

    Raises:
        error: ``"<where> <what is wrong>; <what to do>"``.
    """
    with collector_paused():
        parsed = _parse_fast(data)
        if not isinstance(parsed, _Unsure):
            return parsed
        return _parse_strict(data, where, error)


def _parse_strict(data: str | bytes, where: str, error: type[OVFormerError]) -> Any:
    """The standard library's parser with every check of ``parse_json_text`` and its messages."""
    try:
        text = data if isinstance(data, str) else _decode(data)
        if text.startswith("\ufeff"):
            text = text[1:]
        if not text.strip():
            raise _Refused("is empty; it must hold JSON")
        parsed = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_object_without_duplicate_keys,
        )
        if _has_lone_surrogate(text, parsed):
            raise _Refused(
                "contains an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff), not a character; "
                "fix or regenerate it"
            )
        return parsed
    except _Refused as err:
        raise error(f"{where} {err}") from None
    except json.JSONDecodeError as err:
        raise error(
            f"{where} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); fix or regenerate it"
        ) from None
    except RecursionError:
        raise error(
            f"{where} nests arrays or objects too deeply to parse (about a thousand levels or more); "
            "fix or regenerate it"
        ) from None
    except ValueError:  # an integer literal longer than Python converts
        raise error(
            f"{where} holds an integer with more than {sys.get_int_max_str_digits()} digits; fix or regenerate it"
        ) from None
    except MemoryError:
        raise error(f"{where} is too large to parse in the memory available") from None


def read_json_bytes(path: str | os.PathLike[str], what: str, error: type[OVFormerError]) -> tuple[bytes, str]:
    """The bytes of the JSON file at ``path`` and the words naming it in messages (``"<what> <path>"``).

    Raises:
        error: missing, a folder, a broken link, a link loop, unreadable (see ``read_json``).
    """
    file = check_input_path(path, what, error, kind="file")
    where = f"{what} {file}"
    try:
        return file.read_bytes(), where
    except PermissionError:
        raise error(f"{where} cannot be read (permission denied); check its permissions") from None
    except MemoryError:
        raise error(f"{where} is too large to read into memory") from None
    except OSError as err:
        raise error(f"{where} cannot be read ({err.strerror or err}); check the file") from None


def read_json(path: str | os.PathLike[str], what: str, error: type[OVFormerError]) -> Any:
    """Read and parse the JSON file at ``path`` with one-line errors naming it.

    Args:
        path: the file (a regular file or a pipe).
        what: what it is, for messages: ``"results file"``, ``"ground truth file"``, ``"training config"``.
        error: the ``OVFormerError`` subclass to raise.

    Raises:
        error: ``"<what> <path> <what is wrong>; <what to do>"``: missing, a folder, a broken link, a
            link loop, unreadable, not UTF-8, not plain JSON (see ``parse_json_text``).
    """
    data, where = read_json_bytes(path, what, error)
    return parse_json_text(data, where, error)

"""Files of tensors (weights, checkpoints, caches): which format a file is in, and the one safe reader for all.

Every weight slot (``--weights``, ``--clip-weights``, training's ``clip_weights`` / ``init_weights`` /
``backbone_weights``, resumed checkpoints, official feature files) reads through ``read_tensor_file``.
The format is told by content, never by the file name:

- ``safetensors``: an 8-byte little-endian header length, then the JSON header (``{``). Read by the
  safetensors library, which checks every offset and shape against the file before reading.
- ``torchscript``: a ``torch.jit.save`` zip (OpenAI's CLIP ``.pt``). Read by ``io.torchscript``
  as tensors only; its code is never compiled or run (``torch.jit.load`` would run it).
- ``torch-zip``: a ``torch.save`` zip. Read with ``torch.load(weights_only=True)`` after checking
  the zip's directory: torch inflates a record fully before comparing it with the tensor it feeds,
  so a record that declares far more bytes than the file holds is refused first.
- ``pickle``: anything else (legacy ``torch.save`` streams, plain pickles): ``torch.load(weights_only=True)``.

Failures are one-line ``CheckpointError``s naming the file: a path that is missing, a folder, a
dangling link or a link loop; a damaged file (with the reader's reason); or a refused file (the
Python object or code it would need). Nothing from a file is ever run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, Literal

import torch
from safetensors import safe_open
from torch import Tensor

from ovformer_core.errors import CheckpointError, first_line
from ovformer_core.io.paths import path_fact
from ovformer_core.io.torchscript import (
    TorchScriptRefused,
    TorchScriptUnreadable,
    is_torchscript_archive,
    read_torchscript_tensors,
)

TensorFileFormat = Literal["safetensors", "torchscript", "torch-zip", "pickle"]

#: A zip may declare at most this many times its own size in records (plus ``ZIP_SLACK_BYTES``):
#: torch writes records uncompressed, so real files declare about their size.
ZIP_MAX_INFLATION = 4
ZIP_SLACK_BYTES = 64 << 20
#: First byte of a pickle of protocol >= 2 (legacy ``torch.save`` streams start with one).
PICKLE_PROTO = b"\x80"
#: Wrappers around a state dict, unwrapped by ``read_state_dict`` (open_clip/timm ``state_dict``, detectron2 ``model``).
STATE_DICT_WRAPPERS = ("state_dict", "model")


def path_problem(path: Path) -> str | None:
    """What keeps ``path`` from being read as a file ("does not exist", "is a folder", ...), or None."""
    found = path_fact(path, "file")
    return None if found is None else found[0]


def check_file(path: Path, what: str, hint: str) -> None:
    """Raise a one-line ``CheckpointError`` unless ``path`` is a readable regular file (links followed).

    Args:
        path: the file.
        what: what the file should be, for the message ("CLIP weights").
        hint: what the user can do, ending the message.
    """
    problem = path_problem(path)
    if problem is not None:
        raise CheckpointError(f"{what} file {path} {problem}; {hint}")


def sniff_format(path: Path) -> TensorFileFormat:
    """The format of a tensor file, from its first bytes (and, for zips, its member names)."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return "torchscript" if is_torchscript_archive(archive) else "torch-zip"
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return "torch-zip"  # torch.load reports the damage
    if head[:1] != PICKLE_PROTO and path.suffix == ".safetensors":
        return "safetensors"  # a damaged header: let the safetensors reader say what is wrong with it
    return "pickle"


def read_tensor_file(
    path: str | os.PathLike[str],
    what: str,
    hint: str,
    extra_globals: Iterable[Callable[..., Any]] = (),
) -> Any:
    """The object stored in a tensor file, built without running anything from the file.

    Args:
        path: the file (any of the formats in the module docstring).
        what: what the file should be, for messages ("checkpoint", "CLIP weights").
        hint: what the user can do, ending every message ("re-download ViT-B-32.pt").
        extra_globals: callables ``torch.load`` may rebuild besides tensors and containers (e.g.
            numpy's array rebuilders for official feature files).

    Returns:
        safetensors and TorchScript files: a dict of name -> CPU tensor (TorchScript: its
        ``state_dict()``, stored dtypes); ``torch.save`` files: the saved object, tensors on CPU.

    Raises:
        CheckpointError: unreadable path, damaged file, or a file that needs code or Python objects.
    """
    path = Path(path)
    check_file(path, what, hint)
    kind: TensorFileFormat = "pickle"
    try:
        kind = sniff_format(path)
        if kind == "safetensors":
            return _read_safetensors(path)[0]
        if kind == "torchscript":
            return read_torchscript_tensors(path)
        if kind == "torch-zip":
            _check_zip_sizes(path, path.stat().st_size)
        return _torch_load(path, extra_globals)
    except TorchScriptRefused as err:
        raise CheckpointError(f"refusing to load {what} {path}: {err}; nothing from it was run; {hint}") from None
    except Exception as err:  # damaged files raise nearly anything (struct.error, UnicodeDecodeError, ...)
        raise _read_error(path, kind, err, what, hint) from None


def read_safetensors(path: str | os.PathLike[str], what: str, hint: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and the string metadata of a safetensors file (e.g. a ``.vocab`` or a CLIP cache).

    Raises:
        CheckpointError: unreadable path, or not a valid safetensors file.
    """
    path = Path(path)
    check_file(path, what, hint)
    try:
        return _read_safetensors(path)
    except Exception as err:  # safetensors raises SafetensorError, TypeError (absurd shapes), OSError ...
        raise _read_error(path, "safetensors", err, what, hint) from None


def read_state_dict(path: str | os.PathLike[str], what: str, hint: str) -> dict[str, Tensor]:
    """A state dict (name -> tensor) from any tensor file, unwrapping ``{"state_dict": ...}`` / ``{"model": ...}``.

    Raises:
        CheckpointError: unreadable, or not a dict of tensors.
    """
    data = read_tensor_file(path, what, hint)
    for key in STATE_DICT_WRAPPERS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not data or not all(isinstance(k, str) for k in data):
        raise CheckpointError(f"{what} {path}: not a state dict of tensors (names -> tensors); {hint}")
    others = [k for k, v in data.items() if not isinstance(v, Tensor)]
    if others:
        kind = type(data[others[0]]).__name__
        raise CheckpointError(f"{what} {path}: not a state dict of tensors ({others[0]!r} is a {kind}); {hint}")
    return data


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = handle.metadata() or {}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    return tensors, dict(metadata)


def load_torch_bytes(data: bytes) -> Any:
    """``torch.load(weights_only=True)`` of an in-memory ``torch.save`` blob (zip directory checked first).

    Raises:
        Exception: whatever torch raises for a damaged blob (callers turn it into their one line).
    """
    source = io.BytesIO(data)
    if zipfile.is_zipfile(source):
        _check_zip_sizes(source, len(data))
    source.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(source, map_location="cpu", weights_only=True)


def _check_zip_sizes(source: Path | BinaryIO, size: int) -> None:
    with zipfile.ZipFile(source) as archive:
        declared = sum(info.file_size for info in archive.infolist())
    if declared > ZIP_MAX_INFLATION * size + ZIP_SLACK_BYTES:
        raise ValueError(f"its records declare {declared} bytes, far more than the {size}-byte file holds")


def _torch_load(path: Path, extra_globals: Iterable[Callable[..., Any]]) -> Any:
    with path.open("rb") as handle, warnings.catch_warnings():
        # torch warns about pickle protocols and deprecated formats before failing; the error says enough.
        warnings.simplefilter("ignore")
        # A file object, not the path: torch.load hands any path ending in .safetensors to safetensors.
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(handle, map_location="cpu", weights_only=True)


def looks_like_html(head: bytes) -> bool:
    """Whether a file or body starting with ``head`` is a web page (an error page saved as a download)."""
    return head[:512].lstrip().lower().startswith((b"<!doctype html", b"<html"))


def _read_error(path: Path, kind: TensorFileFormat, err: BaseException, what: str, hint: str) -> CheckpointError:
    text = str(err)
    with contextlib.suppress(OSError), path.open("rb") as handle:
        if looks_like_html(handle.read(512)):
            return CheckpointError(f"cannot read {what} {path}: it is a web page (a failed download?); {hint}")
    # torch's weights-only unpickler names a refused global as "... GLOBAL module.name ..." (wording varies).
    refused = re.search(r"\bGLOBAL ([\w.]+)", text) if text.startswith("Weights only load failed") else None
    if refused:
        return CheckpointError(
            f"refusing to load {what} {path}: it references {refused[1]}, not only tensors; nothing from it was run; "
            f"{hint}"
        )
    if isinstance(err, TorchScriptUnreadable):
        reason = f"TorchScript archive: {first_line(err)}"
    elif kind == "safetensors":
        reason = f"corrupt safetensors file: {first_line(err).removeprefix('Error while deserializing header: ')}"
    else:
        opcode = re.search(r"Unsupported operand (\d+)", text)
        if opcode:  # a real torch.save file with pickle_protocol > 2: say so rather than "damaged"
            return CheckpointError(
                f"cannot read {what} {path}: it was saved with a pickle protocol whose opcode {opcode[1]} torch's "
                f"safe loader does not support; re-save it with torch.save's default protocol, or {hint}"
            )
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        # torch's reader errors go on with advice for developers ("This is an internal miniz error. ...").
        first = (detail[1].strip() if detail else first_line(err)).split(". ")[0]
        reason = f"truncated or not a PyTorch file: {first}"
    return CheckpointError(f"cannot read {what} {path} ({reason}); {hint}")

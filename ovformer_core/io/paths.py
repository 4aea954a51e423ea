"""Why an input path cannot be used, in words: missing, a folder, a broken link, a link loop, a device.

``input_path_problem`` only looks (``lstat``/``stat``); ``check_input_path`` turns a problem into the
caller's one-line ``OVFormerError``. Every command that reads a file or folder a user named checks it
here first, so the same mistake gets the same words everywhere.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Literal

from ovformer_core.errors import OVFormerError

#: What an input must be: a file (regular file or pipe), a folder, or either.
PathKind = Literal["file", "folder", "any"]


def _describe_stat_error(path: Path, err: OSError) -> tuple[str, str]:
    """What is wrong with a path whose ``stat`` failed, and the usual advice."""
    if err.errno == errno.ELOOP:
        return "is a symbolic link loop (or goes through one)", "fix the link"
    if err.errno == errno.ENOENT:
        if os.path.islink(path):
            return f"is a broken symbolic link (to {os.readlink(path)}, which does not exist)", "fix the link"
        return "does not exist", "check the path"
    if err.errno == errno.ENOTDIR:
        return "does not exist (a folder on its way is a file)", "check the path"
    if err.errno == errno.ENAMETOOLONG:
        return "is too long a name for the file system", "check the path"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "cannot be reached (permission denied on a folder on its way)", "check the permissions"
    return f"cannot be used ({err.strerror or err})", "check the path"


def path_fact(path: str | os.PathLike[str], kind: PathKind = "file") -> tuple[str, str] | None:
    """What keeps ``path`` from being read as a ``kind`` input and the usual advice, or None when it can be.

    For callers with advice of their own (``"pass the path of ViT-B-32.pt"``): the fact completes a
    sentence starting with the path (``"is a symbolic link loop (or goes through one)"``). A file may
    be a regular file or a pipe (``<(zcat gt.json.gz)``); devices and sockets are refused: reading
    ``/dev/zero`` would never end.
    """
    try:
        file = Path(path)
        info = file.stat()
    except ValueError:  # an embedded NUL byte
        return "is not a valid path (it contains a NUL byte)", "check the path"
    except OSError as err:
        return _describe_stat_error(Path(path), err)
    is_folder = stat.S_ISDIR(info.st_mode)
    is_file = stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)
    if kind == "file" and is_folder:
        return "is a folder, not a file", "pass the file itself"
    if kind == "folder" and not is_folder:
        return ("is a file, not a folder" if is_file else "is not a folder"), "pass a folder"
    if not (is_folder or is_file):
        return "is a device or socket, not a file", "pass a regular file"
    if is_file and not os.access(file, os.R_OK):
        return "cannot be opened (permission denied)", "check the permissions"
    return None


def input_path_problem(path: str | os.PathLike[str], kind: PathKind = "file") -> str | None:
    """Why ``path`` cannot be read as a ``kind`` input, with the usual advice, or None when it can.

    The answer completes a sentence starting with the path, e.g. ``"is a folder, not a file; pass the
    file itself"`` (see ``path_fact``).
    """
    found = path_fact(path, kind)
    return None if found is None else f"{found[0]}; {found[1]}"


def check_input_path(
    path: str | os.PathLike[str],
    what: str,
    error: type[OVFormerError] = OVFormerError,
    kind: PathKind = "file",
    advice: str | None = None,
) -> Path:
    """``path`` as a ``Path`` when it can be read as ``kind``, else ``error("<what> <path> <problem>")``.

    Args:
        path: the input as the user gave it.
        what: what it is, for the message (``"results file"``, ``"frames root"``).
        error: the ``OVFormerError`` subclass to raise.
        kind: ``"file"``, ``"folder"`` or ``"any"``.
        advice: what to do instead of the usual advice, when the caller knows better
            (``"give a results folder or a result .json"``).
    """
    found = path_fact(path, kind)
    if found is not None:
        raise error(f"{what} {path} {found[0]}; {advice or found[1]}")
    return Path(path)

"""Atomic outputs: a reader never sees a half-written file or folder, a failed run leaves none behind.

Every output of the project is written through ``atomic_path`` (one file) or ``atomic_dir`` (a
folder of files): the data go to a hidden ``.NAME.*.part`` sibling that is renamed onto the target
only when complete, and removed on any exception, Ctrl-C and the signals the CLI turns into
exceptions (SIGTERM, SIGHUP) included. A destination that cannot take the data (disk full, quota,
file-size limit, read-only file system, a folder in the way) becomes one ``OutputError`` naming the
target and the cause, so a batch can report it and go on with its other inputs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from ovformer_core.errors import OutputError, OVFormerError

#: What to do when writing fails with one of these errno values: they describe the destination, never
#: an input being read, so they can be reported as an output problem wherever they surface.
_WRITE_FAILURES = {
    errno.ENOSPC: "free some disk space or choose another output folder",
    errno.EDQUOT: "free some of your disk quota or choose another output folder",
    errno.EFBIG: "the file system or a file-size limit (ulimit -f) refuses files this large; "
    "choose another output folder",
    errno.EROFS: "the file system is read-only; choose another output folder",
}


def output_error(target: Path, err: OSError) -> OutputError | None:
    """The one-line ``OutputError`` for a write-side ``OSError`` on ``target``, or None for other errors."""
    advice = _WRITE_FAILURES.get(err.errno or 0)
    if advice is None:
        return None
    reason = err.strerror or os.strerror(err.errno or 0)
    return OutputError(f"cannot write {target}: {reason.lower()}; {advice}")


#: Free space below which a failed write is put down to a full disk (a few file-system blocks).
_NEARLY_FULL_BYTES = 64 * 1024


def _diagnose(target: Path, tmp: Path, err: Exception) -> OutputError | None:
    """Name the cause of a write that a library reported without its errno.

    torch.save raises ``RuntimeError("... unexpected pos ...")`` and safetensors its own error type
    when the disk fills up, so the cause is read off the error text (Rust's "os error N") or off the
    destination itself: no free space left, or the file at the process's file-size limit.
    """
    found = re.search(r"os error (\d+)", str(err))
    if found:
        code = int(found[1])
        return output_error(target, OSError(code, os.strerror(code)))
    try:
        stats = os.statvfs(tmp.parent)
        if stats.f_bavail * stats.f_frsize < _NEARLY_FULL_BYTES:
            return output_error(target, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and tmp.exists() and tmp.stat().st_size >= limit - _NEARLY_FULL_BYTES:
            return output_error(target, OSError(errno.EFBIG, os.strerror(errno.EFBIG)))
    except OSError:
        return None
    return None


@contextlib.contextmanager
def _write_failures_named(target: Path, staged: Path) -> Iterator[None]:
    """Re-raise a write failure inside the block as the one-line ``OutputError`` naming ``target``."""
    try:
        yield
    except OVFormerError:
        raise
    except Exception as err:
        failure = output_error(target, err) if isinstance(err, OSError) else _diagnose(target, staged, err)
        if failure is None:
            raise
        raise failure from err


def _in_the_way(target: Path, err: OSError) -> OutputError:
    if target.is_dir() and not target.is_symlink():
        return OutputError(
            f"cannot write {target}: a folder of that name is in the way; remove it or choose another name"
        )
    reason = (err.strerror or str(err)).lower()
    return OutputError(f"cannot write {target}: {reason}; choose a writable output location")


#: Longest file name most file systems take (bytes); staging names are cut to fit under it.
_NAME_MAX = 255


def _sibling_prefix(target: Path, tail_bytes: int) -> str:
    """``.NAME.`` for a hidden sibling of ``target``, NAME cut so that ``tail_bytes`` more still fit.

    A target whose own name is legal but near the limit would otherwise have no legal staging name.
    """
    room = _NAME_MAX - len(b"..") - tail_bytes
    name = os.fsencode(target.name)[:room].decode("utf-8", errors="ignore") if room > 0 else ""
    return f".{name}."


def _cannot_stage(target: Path, folder: Path, err: OSError) -> OutputError:
    """A staging file or folder could not be made next to ``target``."""
    failure = output_error(target, err)
    if failure is not None:
        return failure
    reason = (err.strerror or str(err)).lower()
    return OutputError(f"cannot write to {folder}: {reason}; choose a writable output location")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _staging_folder(target: Path) -> Path:
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot write to {folder}: {(err.strerror or str(err)).lower()}; choose a writable output location"
        ) from err
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the destination folder so the final ``os.replace`` is atomic
    (same file system). On any exception the temporary file is removed; a full disk and the like
    are re-raised as ``OutputError`` (``output_error``), anything else as it was.
    """
    target = Path(path)
    folder = _staging_folder(target)
    try:
        # mkstemp adds 8 random characters between prefix and suffix
        fd, tmp_name = tempfile.mkstemp(prefix=_sibling_prefix(target, 8 + len(".part")), suffix=".part", dir=folder)
    except OSError as err:
        raise _cannot_stage(target, folder, err) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _write_failures_named(target, tmp):
            yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.replace(tmp, target)
        except OSError as err:
            raise output_error(target, err) or _in_the_way(target, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], replaceable: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder next to ``path``; it becomes ``path`` only if the block succeeds.

    Args:
        path: the folder to create.
        replaceable: whether an existing ``path`` may be replaced (the caller has checked it is a
            previous output of its own); otherwise an existing path is an ``OutputError``.

    On any exception the staging folder and everything in it are removed; write-side ``OSError``\\ s
    become ``OutputError`` as in ``atomic_path``. An old folder being replaced is moved aside first
    and put back if the new one cannot take its place.
    """
    target = Path(path)
    if os.path.lexists(target) and not replaceable:
        raise OutputError(f"{target} already exists; remove it or choose another name")
    folder = _staging_folder(target)
    # Not tempfile.mkdtemp: its 0700 mode would stick to the final folder; mkdir honours the umask.
    staging = folder / f"{_sibling_prefix(target, 12 + len('.part'))}{uuid.uuid4().hex[:12]}.part"
    try:
        staging.mkdir()
    except OSError as err:
        raise _cannot_stage(target, folder, err) from err
    try:
        with _write_failures_named(target, staging):
            yield staging
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` onto ``target``; an old ``target`` is moved aside first and removed after."""
    old: Path | None = None
    if target.exists():
        old = target.parent / f"{_sibling_prefix(target, 12 + len('.old'))}{uuid.uuid4().hex[:12]}.old"
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError as err:
        if old is not None:
            os.replace(old, target)
        raise output_error(target, err) or _in_the_way(target, err) from err
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))

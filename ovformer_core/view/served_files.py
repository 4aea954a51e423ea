"""The files a viewer may touch: the served folder (read and write) and extra video folders (read only).

Every path that comes from a request goes through ``ServedFolder.resolve``: it must be relative, free
of ``..`` and NUL bytes, and still lie inside an allowed folder once every symbolic link is resolved,
so neither ``../../etc/passwd`` nor a link pointing out of the folder reaches a file outside it. Paths
found by walking the folder get the same containment check (the walk does not follow links into
other folders).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ovformer_core.errors import OutputError, OVFormerError
from ovformer_core.io.atomic import output_error
from ovformer_core.io.video import VIDEO_SUFFIXES

#: Longest path a request may name (characters); anything longer is refused before touching the disk.
MAX_REQUEST_PATH = 1024
#: Folder depth below the served folder that listings walk (results and videos deeper are not listed).
MAX_WALK_DEPTH = 4
#: Most entries a listing returns (a served home folder must not stall the page).
MAX_LISTED = 2000
#: Sub-folder of the served folder that uploads are written into.
UPLOAD_FOLDER = "uploads"
#: Longest stem kept from an uploaded file's name.
_MAX_UPLOAD_STEM = 80


class PathRefused(OVFormerError):
    """A path named in a request lies outside the folders the viewer may read, or is malformed."""


def is_inside(path: Path, folder: Path) -> bool:
    """Whether the resolved ``path`` is ``folder`` or lies below it (both already resolved)."""
    return path == folder or folder in path.parents


class ServedFolder:
    """The served folder and the extra read-only folders for source videos.

    Args:
        root: the folder given to ``ovformer view``; results are read from it, uploads and run
            results are written into it.
        video_roots: more folders whose videos may be shown (read only), e.g. where the sources of
            the results live when they are not below ``root``.
    """

    def __init__(self, root: Path, video_roots: Sequence[Path] = ()) -> None:
        self.root = Path(os.path.realpath(root))
        self.video_roots = (self.root, *(Path(os.path.realpath(folder)) for folder in video_roots))

    def contains(self, path: str | os.PathLike[str], video: bool = False) -> bool:
        """Whether ``path`` (links resolved) lies inside the served folder, or any video folder with ``video``."""
        real = Path(os.path.realpath(path))
        roots = self.video_roots if video else (self.root,)
        return any(is_inside(real, folder) for folder in roots)

    def resolve(self, requested: str, video: bool = False) -> Path:
        """The real path of a path named in a request.

        Args:
            requested: relative to the served folder; with ``video``, also an absolute path inside one
                of the video folders (as listed by ``list_videos``).
            video: allow the read-only video folders too.

        Raises:
            PathRefused: empty, too long, a NUL byte, a ``..`` component, absolute where not allowed,
                or outside the allowed folders once links are resolved.
        """
        if not isinstance(requested, str) or not requested.strip():
            raise PathRefused("no path given; pick a file from the list")
        if len(requested) > MAX_REQUEST_PATH or "\x00" in requested:
            raise PathRefused("the path is too long or holds a NUL byte; pick a file from the list")
        parts = re.split(r"[\\/]", requested)
        if ".." in parts:
            raise PathRefused(f"{requested!r} climbs out with '..'; name a file inside the served folder")
        candidate = Path(requested)
        if candidate.is_absolute() and not video:
            raise PathRefused(f"{requested!r} is absolute; name a file relative to the served folder")
        real = Path(os.path.realpath(candidate if candidate.is_absolute() else self.root / candidate))
        if not self.contains(real, video=video):
            raise PathRefused(f"{requested!r} lies outside the folders this viewer serves; pick a file from the list")
        return real

    def display(self, path: Path) -> str:
        """How a listing names ``path``: relative to the served folder if below it, else absolute."""
        real = Path(os.path.realpath(path))
        return real.relative_to(self.root).as_posix() if is_inside(real, self.root) else str(real)

    def walk(self, folder: Path | None = None) -> Iterator[Path]:
        """Files below ``folder`` (default: the served folder), at most ``MAX_WALK_DEPTH`` deep.

        Hidden entries, ``*_masks`` folders and anything whose real path leaves ``folder`` are skipped.
        """
        top = Path(os.path.realpath(folder or self.root))
        for current, dirs, files in os.walk(top, followlinks=False):
            depth = len(Path(current).relative_to(top).parts)
            dirs[:] = sorted(
                d for d in dirs if not d.startswith(".") and not d.endswith("_masks") and depth < MAX_WALK_DEPTH
            )
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(current) / name
                if path.is_symlink() and not is_inside(Path(os.path.realpath(path)), top):
                    continue
                yield path

    def list_videos(self, include_video_roots: bool = False) -> list[str]:
        """Video files the viewer may read, as ``display`` names them (at most ``MAX_LISTED``)."""
        found: dict[str, None] = {}
        roots = self.video_roots if include_video_roots else (self.root,)
        for folder in roots:
            for path in self.walk(folder):
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    found[self.display(path)] = None
                    if len(found) >= MAX_LISTED:
                        return list(found)
        return list(found)

    def upload_name(self, filename: str) -> tuple[str, str]:
        """``(stem, suffix)`` an upload the browser calls ``filename`` is stored under.

        Only the name's last component is kept, reduced to letters, digits, ``_`` and ``-``.

        Raises:
            PathRefused: the name has no video suffix.
        """
        base = re.split(r"[\\/]", filename or "")[-1]
        suffix = Path(base).suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            allowed = ", ".join(sorted(VIDEO_SUFFIXES))
            raise PathRefused(f"{base or 'the file'} is not a video file by its name; upload one of {allowed}")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(base).stem).strip("_")[:_MAX_UPLOAD_STEM] or "upload"
        return stem, suffix

    @contextlib.contextmanager
    def staged_upload(self) -> Iterator[Path]:
        """A hidden temporary file in ``uploads/`` to receive an upload; removed unless claimed.

        Raises:
            PathRefused: ``uploads/`` is not a plain folder.
            OutputError: the folder cannot be written.
        """
        folder = self.root / UPLOAD_FOLDER
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise PathRefused(f"{folder} is not a plain folder; remove it so uploads can be stored")
        try:
            folder.mkdir(exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=folder)
        except OSError as err:
            raise output_error(folder, err) or OutputError(
                f"cannot store uploads in {folder} ({err.strerror or err}); make it writable"
            ) from None
        os.close(handle)
        staged = Path(name)
        try:
            yield staged
        finally:
            staged.unlink(missing_ok=True)

    def claim_upload(self, staged: Path, stem: str, suffix: str) -> Path:
        """Move a complete staged upload to ``uploads/STEM.SUFFIX``, or ``STEM-2``, ``STEM-3``...

        A name is reserved by creating it exclusively before the move, so two uploads of the same
        name at once never replace each other, nor an existing file.
        """
        number = 1
        while True:
            target = staged.parent / (f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}")
            try:
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            except FileExistsError:
                number += 1
                continue
            os.chmod(staged, 0o666 & ~_umask())
            os.replace(staged, target)
            return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["PathRefused", "ServedFolder", "UPLOAD_FOLDER", "is_inside"]

"""The files of an annotation-tool export, whether a zip archive, a folder or one bare file.

CVAT and Datumaro hand out zips (``annotations.xml``, ``instances/*.png``, ``annotations/*.json``);
people also unpack them, or keep only the XML. ``open_export`` gives the three the same face: a
sorted list of member names (POSIX, relative) and ``read`` for their bytes. Nothing is extracted to
disk, so member names cannot point outside any folder. A truncated or damaged archive is one
``AnnotationError`` naming the archive and, where it is known, the entry. ``write_zip`` writes the
zips ovformer exports: atomically, and byte for byte the same for the same content.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ovformer_core.errors import AnnotationError
from ovformer_core.io.atomic import atomic_path
from ovformer_core.io.paths import input_path_problem

#: Timestamp of every member written (the zip format's earliest), so equal content gives equal bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: Largest member read into memory (a zip bomb or a stray video is refused, not decompressed).
MAX_MEMBER_BYTES = 2 * 1024**3
#: A member this large must not inflate more than ``MAX_INFLATION`` times its packed size (deflate, what
#: CVAT and Datumaro write; ``MAX_INFLATION_OTHER`` for bzip2 / LZMA): CVAT XML of objects that stand
#: still deflates up to about 150x (a shape per frame), a deflate bomb (padding) about 1,000x.
LARGE_MEMBER_BYTES = 64 * 1024**2
MAX_INFLATION = 400
MAX_INFLATION_OTHER = 4000


@dataclass
class AnnotationExport:
    """An opened export.

    Attributes:
        path: the zip, folder or file as given.
        names: member names, POSIX-relative, sorted (for a bare file: its own name).
    """

    path: Path
    names: list[str]
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        """The export's name without folders and extensions (``clip.cvat-video.zip`` -> ``clip``)."""
        name = self.path.name or self.path.resolve().name  # "." and ".." name the folder they stand for
        if name in (".", ".."):
            name = self.path.resolve().name
        return name.split(".", 1)[0] or name

    def where(self, name: str) -> str:
        """How to name a member in a message: ``export.zip:annotations.xml``, or the file's path."""
        if self._zip is not None:
            return f"{self.path}:{name}"
        if self.path.is_dir():
            return str(self.path / name)
        return str(self.path)

    def read(self, name: str) -> bytes:
        """The bytes of member ``name`` (one of ``names``).

        Raises:
            AnnotationError: the member is damaged, truncated, unreadable or too large.
        """
        if self._zip is not None:
            try:
                info = self._zip.getinfo(name)
                inflation = info.file_size / max(info.compress_size, 1)
                limit = MAX_INFLATION if info.compress_type == zipfile.ZIP_DEFLATED else MAX_INFLATION_OTHER
                if info.file_size > MAX_MEMBER_BYTES:
                    raise AnnotationError(
                        f"{self.where(name)} is {info.file_size} bytes, more than an annotation file can be; "
                        "check that you passed the right archive"
                    )
                if info.file_size > LARGE_MEMBER_BYTES and inflation > limit:
                    raise AnnotationError(
                        f"{self.where(name)} inflates {inflation:.0f}x to {info.file_size} bytes, like a zip bomb; "
                        "if it is a genuine export, unzip it and pass the folder"
                    )
                with self._zip.open(info) as member:
                    return member.read(MAX_MEMBER_BYTES + 1)
            except RuntimeError as err:  # zipfile's word for an encrypted member
                raise AnnotationError(
                    f"{self.where(name)} cannot be read ({err}); export it again without a password"
                ) from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, KeyError) as err:
                raise AnnotationError(
                    f"{self.where(name)} is damaged or truncated ({err}); export it again from the annotation tool"
                ) from None
        target = self.path / name if self.path.is_dir() else self.path
        if self.path.is_dir():
            # Only the folder's own regular files: a link can point anywhere (unzip makes real links of
            # an archive's link entries), a FIFO or device never ends.
            mode = target.lstat().st_mode if os.path.lexists(target) else 0
            if stat.S_ISLNK(mode):
                raise AnnotationError(
                    f"{target} is a symbolic link; an export folder's files are read only from the folder itself: "
                    "copy the file there"
                )
            if not stat.S_ISREG(mode):
                raise AnnotationError(f"{target} is not a regular file; check the export folder")
        try:
            if target.stat().st_size > MAX_MEMBER_BYTES:
                raise AnnotationError(f"{target} is too large to be an annotation file; check the path")
            return target.read_bytes()
        except OSError as err:
            raise AnnotationError(f"cannot read {target} ({err.strerror or err}); check the path") from None

    def close(self) -> None:
        """Close the archive (no-op for folders and files)."""
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> AnnotationExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _folder_names(folder: Path) -> list[str]:
    names = []
    for root, _dirs, files in os.walk(folder):
        for file in files:
            names.append(Path(root, file).relative_to(folder).as_posix())
    return sorted(names)


def open_export(path: str | os.PathLike[str]) -> AnnotationExport:
    """Open a zip archive, a folder, or a single annotation file.

    Raises:
        AnnotationError: the path does not exist, or a ``.zip`` is not a complete zip archive.
    """
    path = Path(path)
    if path.is_dir():
        return AnnotationExport(path, _folder_names(path))
    problem = input_path_problem(path, "any")
    if problem is not None:
        raise AnnotationError(f"{path} {problem}")
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError) as err:
            raise AnnotationError(
                f"{path} is not a complete zip archive ({err}); it may be truncated: download or export it again"
            ) from None
        names = sorted(info.filename for info in archive.infolist() if not info.is_dir())
        repeated = next((a for a, b in zip(names, names[1:], strict=False) if a == b), None)
        if repeated is not None:
            archive.close()
            raise AnnotationError(
                f"{path} holds two entries named {repeated}; export it again from the annotation tool"
            )
        return AnnotationExport(path, names, archive)
    return AnnotationExport(path, [path.name])


def write_zip(path: str | os.PathLike[str], members: Mapping[str, bytes]) -> None:
    """Write a deflated zip of ``members`` (name -> bytes, in the given order) to ``path``; atomic.

    Members carry a fixed timestamp and mode, so the same content always gives the same bytes.
    """
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)

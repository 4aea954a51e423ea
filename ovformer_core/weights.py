"""Where weight files live: an explicit path, the ovformer cache folder, or a verified download.

Resolution order for one ``WeightFile``:

1. an explicit path (a command-line flag) wins; if it does not exist that is an error, never a
   silent fallback to the cache;
2. ``$OVFORMER_HOME/<filename>`` (default ``~/.cache/ovformer``);
3. a download from ``WeightFile.url`` into that folder, streamed to a temporary file next to the
   target, checked against ``sha256`` / ``size`` when known, then renamed. A failed or interrupted
   download leaves no file behind. ``OVFORMER_OFFLINE=1`` (or ``allow_download=False``) never
   touches the network and says which file to put where instead.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ovformer_core.errors import DownloadError, WeightsNotFoundError
from ovformer_core.io.atomic import atomic_path
from ovformer_core.io.tensor_files import looks_like_html, path_problem

#: Environment variable naming the cache folder.
HOME_ENV = "OVFORMER_HOME"
#: Environment variable that forbids downloads when set to anything but "", "0", "false", "no".
OFFLINE_ENV = "OVFORMER_OFFLINE"
#: Cache folder when ``$OVFORMER_HOME`` is not set.
DEFAULT_HOME = Path("~/.cache/ovformer")
#: Bytes read per network / disk chunk.
CHUNK_BYTES = 1 << 20
#: Seconds without data before a download is given up.
DOWNLOAD_TIMEOUT_S = 60.0
#: Bytes hashed at each end of a file by ``fingerprint``.
FINGERPRINT_EDGE_BYTES = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    """A published weight file.

    Attributes:
        name: human-readable name used in messages ("OpenAI CLIP ViT-B/32").
        filename: file name inside the cache folder.
        url: where it is downloaded from.
        sha256: expected hex digest, or None when unpublished.
        size: expected size in bytes, or None when unknown.
    """

    name: str
    filename: str
    url: str
    sha256: str | None = None
    size: int | None = None


def ovformer_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``home`` if given, else ``$OVFORMER_HOME``, else ``~/.cache/ovformer``."""
    if home is not None:
        return Path(home).expanduser()
    from_env = os.environ.get(HOME_ENV, "").strip()
    return Path(from_env).expanduser() if from_env else DEFAULT_HOME.expanduser()


def offline() -> bool:
    """True when ``$OVFORMER_OFFLINE`` forbids network access."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def resolve(
    weight: WeightFile,
    explicit_path: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    progress: bool = True,
    parameter: str | None = None,
) -> Path:
    """Find (or download) a weight file and return its path.

    Args:
        weight: the file wanted.
        explicit_path: a path given by the user; wins over the cache, must exist.
        home: cache folder; default ``ovformer_home()``.
        allow_download: False never touches the network (as ``OVFORMER_OFFLINE=1`` does).
        progress: show a progress bar on stderr while downloading.
        parameter: the parameter that takes an explicit path (``clip_weights``; the CLI shows it as its
            flag), named in messages so the user knows how to point at a file they downloaded themselves.

    Returns:
        Path of an existing file.

    Raises:
        WeightsNotFoundError: the explicit path is missing, or the file is not cached and may not be
            downloaded.
        DownloadError: the download failed or its checksum is wrong.
    """
    pass_it = f", or pass its path with `{parameter}`" if parameter else ""
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        problem = path_problem(path)
        if problem is not None:
            via = f" (given with `{parameter}`)" if parameter else ""
            raise WeightsNotFoundError(
                f"{weight.name} weights not found: {path}{via} {problem}; check the path or download {weight.url}"
            )
        return path
    target = ovformer_home(home) / weight.filename
    if target.is_file():
        if weight.size is not None and target.stat().st_size != weight.size:
            raise DownloadError(
                f"cached {weight.name} weights at {target} have {target.stat().st_size} bytes, expected "
                f"{weight.size}; delete the file and run again to re-download it"
            )
        return target
    if offline() or not allow_download:
        why = f"{OFFLINE_ENV}=1 forbids downloads" if offline() else "downloads are disabled"
        raise WeightsNotFoundError(
            f"{weight.name} weights are not at {target} and {why}; download {weight.url} "
            f"and save it as {target}{pass_it}"
        )
    download(weight, target, progress=progress, hint=pass_it)
    return target


@dataclass(frozen=True)
class CachedWeight:
    """Where a weight file belongs in the cache and whether it is there.

    Attributes:
        weight: the file.
        path: ``<cache>/<filename>``.
        size: bytes on disk, or None when absent.
    """

    weight: WeightFile
    path: Path
    size: int | None


def cache_status(files: Sequence[WeightFile], home: str | os.PathLike[str] | None = None) -> list[CachedWeight]:
    """What the cache holds of ``files`` (nothing is read or downloaded)."""
    folder = ovformer_home(home)
    status = []
    for weight in files:
        path = folder / weight.filename
        status.append(CachedWeight(weight, path, path.stat().st_size if path.is_file() else None))
    return status


def download_missing(
    files: Sequence[WeightFile], home: str | os.PathLike[str] | None = None, progress: bool = True
) -> Iterator[tuple[CachedWeight, str | None]]:
    """Put every file of ``files`` into the cache, for offline use later; verified like ``resolve``'s downloads.

    Yields:
        Each file in order, with the sha256 of a new download, or None when it was cached already.

    Raises:
        DownloadError: ``$OVFORMER_OFFLINE`` forbids downloads, or a download failed (earlier ones are kept).
    """
    if offline():
        raise DownloadError(f"{OFFLINE_ENV}=1 forbids downloads; unset it to download the weight files")
    for entry in cache_status(files, home):
        yield entry, None if entry.size is not None else download(entry.weight, entry.path, progress=progress)


def resolve_all(
    wanted: Sequence[tuple[WeightFile, str | os.PathLike[str] | None, str | None]],
    home: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    progress: bool = True,
) -> list[Path]:
    """``resolve`` for several files (each: file, explicit path, parameter); every missing one is named at once.

    Every file is tried even after one fails, so that a machine without network learns of all the files it
    must fetch by hand from one run.

    Raises:
        DownloadError: a download failed (one line naming each failed or missing file).
        WeightsNotFoundError: one line naming each file that is missing.
    """
    paths: list[Path] = []
    missing: list[str] = []
    failed_download = False
    for weight, explicit_path, parameter in wanted:
        try:
            paths.append(resolve(weight, explicit_path, home, allow_download, progress, parameter))
        except DownloadError as err:
            missing.append(str(err))
            failed_download = True
        except WeightsNotFoundError as err:
            missing.append(str(err))
    error = DownloadError if failed_download else WeightsNotFoundError
    if len(missing) == 1:
        raise error(missing[0])
    if missing:
        raise error(f"{len(missing)} weight files are missing: " + "; and ".join(missing))
    return paths


def download(weight: WeightFile, target: Path, progress: bool = True, hint: str = "") -> str:
    """Download ``weight`` to ``target`` atomically, verifying its checksum and size when known.

    Returns:
        The file's sha256 hex digest (so an unpublished one can be recorded).

    Raises:
        DownloadError: network failure, truncated transfer, or wrong checksum / size; no file is left.
    """
    manual = f"download {weight.url} yourself and save it as {target}{hint}"
    try:
        with atomic_path(target) as tmp:
            try:
                digest, num_bytes = _stream_to(weight, tmp, progress)
            except _WebPageError:
                raise DownloadError(
                    f"{weight.url} sent a web page, not the {weight.name} weights (Google Drive does so when "
                    f"a file's download quota is used up or it asks for a sign-in); {manual}"
                ) from None
            if weight.sha256 is not None and digest != weight.sha256.lower():
                raise DownloadError(
                    f"downloaded {weight.name} weights have sha256 {digest[:12]}..., expected "
                    f"{weight.sha256[:12]}... (corrupt or tampered download); try again or {manual}"
                )
            if weight.size is not None and num_bytes != weight.size:
                raise DownloadError(
                    f"downloaded {weight.name} weights have {num_bytes} bytes, expected {weight.size}; "
                    f"try again or {manual}"
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        # URLError (refused, unknown host, HTTP status) and socket timeouts are OSErrors too.
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise DownloadError(f"cannot download {weight.name} weights ({reason}); {manual}") from None
    return digest


class _WebPageError(Exception):
    """The server answered with an HTML page where a weight file was expected."""


def _stream_to(weight: WeightFile, tmp: Path, progress: bool) -> tuple[str, int]:
    """Copy the URL's body into ``tmp``; returns (sha256 hex digest, byte count).

    Raises:
        _WebPageError: the body is an HTML page (with no published checksum it would be cached as weights).
    """
    hasher = hashlib.sha256()
    num_bytes = 0
    with urllib.request.urlopen(weight.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        if response.headers.get_content_type() == "text/html":
            raise _WebPageError
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else weight.size
        with (
            tmp.open("wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=weight.filename,
                disable=not progress,
                file=sys.stderr,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                if num_bytes == 0 and looks_like_html(chunk):
                    raise _WebPageError
                out.write(chunk)
                hasher.update(chunk)
                num_bytes += len(chunk)
                bar.update(len(chunk))
        if total is not None and length and num_bytes != int(length):
            # urllib does not raise on a body shorter than Content-Length when the peer closes early.
            raise http.client.IncompleteRead(b"", int(length) - num_bytes)
    return hasher.hexdigest(), num_bytes


def fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap content identity of a large file: sha256 of its size and first/last MiB (16 hex digits).

    Used to key caches derived from a weight file (e.g. encoded vocabularies) without hashing
    hundreds of megabytes on every run; a moved or copied file keeps its fingerprint.
    """
    path = Path(path)
    size = path.stat().st_size
    hasher = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        hasher.update(handle.read(FINGERPRINT_EDGE_BYTES))
        if size > FINGERPRINT_EDGE_BYTES:
            handle.seek(max(FINGERPRINT_EDGE_BYTES, size - FINGERPRINT_EDGE_BYTES))
            hasher.update(handle.read(FINGERPRINT_EDGE_BYTES))
    return hasher.hexdigest()[:16]

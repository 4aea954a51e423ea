"""Reading annotation-tool exports back: the formats ``ovformer import --from`` takes, and the dispatch."""

from __future__ import annotations

import os

from ovformer_core.io.results import VideoResult

#: Names as ``ovformer import --from`` takes them (the same names ``export --to`` writes).
ANNOTATION_FORMATS = ("cvat-video", "mots", "datumaro")


def read_annotations(path: str | os.PathLike[str], annotation_format: str) -> list[VideoResult]:
    """The videos of an export (zip, folder or file) in one of ``ANNOTATION_FORMATS``.

    Raises:
        AnnotationError: the export is damaged or an entry does not fit (one line naming it).
        ValueError: an unknown format name (a programming error; the CLI offers only the known ones).
    """
    if annotation_format == "cvat-video":
        from ovformer_core.io.cvat_video import read_cvat_video

        return [read_cvat_video(path)]
    if annotation_format == "mots":
        from ovformer_core.io.mots import read_mots

        return read_mots(path)
    if annotation_format == "datumaro":
        from ovformer_core.io.datumaro_format import read_datumaro

        return read_datumaro(path)
    raise ValueError(f"unknown annotation format {annotation_format!r}; choose from {', '.join(ANNOTATION_FORMATS)}")

"""Errors a user can cause (each carries one line: what is wrong, and what to do) and ``first_line`` for reasons.

A message names a parameter of the library in backticks, and a value for it as ```name`='value'``
("use `device`='cpu'"); the CLI shows the same line with its flags ("use --device cpu"). A library
function to call is named as ```name()``` ("re-create it with `Vocabulary.save()`"); the CLI shows the
command that does the same ("`ovformer vocab-encode`"), so a message need not quote a CLI command or flag.
"""

from __future__ import annotations

from typing import Literal


def first_line(err: BaseException, limit: int = 120) -> str:
    """A short one-line reason for an exception (torch's multi-paragraph load errors shortened)."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    if text.startswith("Weights only load failed"):
        return "not a file of tensors"
    return text.splitlines()[0][:limit]


#: How torch words running out of memory: an accelerator's (besides ``torch.OutOfMemoryError``: what
#: cuDNN / cuBLAS report when their workspace allocation fails, and the CUDA runtime's own error) and the
#: host's (its CPU allocator raises a plain ``RuntimeError``, not ``MemoryError``).
_GPU_OOM_MARKERS = ("CUDA out of memory", "CUDA error: out of memory", "STATUS_ALLOC_FAILED")
_HOST_OOM_MARKERS = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


def out_of_memory(err: BaseException) -> Literal["gpu", "host"] | None:
    """``"gpu"`` or ``"host"`` when ``err`` is torch running out of that memory, else None.

    ``torch.OutOfMemoryError`` (CUDA, ROCm, MPS, XPU) is known by its class name and the rest by their
    text, so torch need not be imported here (the CLI's start-up).
    """
    if not isinstance(err, RuntimeError):
        return None
    text = str(err)
    if type(err).__name__ == "OutOfMemoryError" or any(marker in text for marker in _GPU_OOM_MARKERS):
        return "gpu"
    if any(marker in text for marker in _HOST_OOM_MARKERS):
        return "host"
    return None


class OVFormerError(Exception):
    """Base class for every user-facing error; the CLI prints ``str(err)`` and exits non-zero."""


class CheckpointError(OVFormerError):
    """A weight file is unreadable or does not fit the chosen configuration."""


class WeightsNotFoundError(OVFormerError):
    """A weight file is neither given, cached, nor downloadable."""


class DownloadError(OVFormerError):
    """A download failed or produced a file with the wrong checksum."""


class VideoError(OVFormerError):
    """A video, image or frame folder cannot be read."""


class VocabularyError(OVFormerError):
    """A vocabulary is empty, has duplicates, or a vocabulary file is corrupt."""


class ResultsError(OVFormerError):
    """A results or ground-truth file is malformed."""


class ReviewError(OVFormerError):
    """A correction of a result (rename, delete, merge) cannot be applied or saved."""


class OutputError(OVFormerError):
    """An output location cannot be written."""


class TrainingError(OVFormerError):
    """Training data, a training config or a training run is unusable (bad annotation, NaN loss, ...)."""


class AnnotationError(OVFormerError):
    """An annotation-tool export (CVAT for video, MOTS PNG, Datumaro) is malformed or does not fit."""

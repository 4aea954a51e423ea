"""The official precomputed inputs, loaded without running code from the files.

- DetPro text classifiers ``fg_bg_5_10_<dataset>_ens.npy``: float32 ``[C, 512]``, row c = text
  embedding of class c. Read with ``numpy.load(allow_pickle=False)``.
- Per-frame CLIP image features ``<dataset>_<split>_clip_feature.pkl``: despite the extension these
  are ``torch.save`` files of a dict {file name (or LVIS image id) -> ``[1, 512]`` tensor, often
  float16 on CUDA}; keys are the paths the official script opened, e.g.
  ``datasets/LVVIS/val/JPEGImages/00000/00000.jpg``. Zip-format and legacy ``torch.save`` files are
  read by the shared weight reader (``io.tensor_files``: ``torch.load(weights_only=True)``); a plain
  ``pickle.dump`` of the same dict goes through ``io.restricted_pickle`` allowing only what rebuilds
  dicts of numpy arrays and tensors. A file that
  references anything else is refused with one line, and nothing from it runs.
"""

from __future__ import annotations

import codecs
import collections
import os
import pickle
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ovformer_core.errors import OVFormerError, VocabularyError, first_line
from ovformer_core.io.restricted_pickle import RefusedGlobalError, RestrictedUnpickler
from ovformer_core.io.tensor_files import load_torch_bytes, read_tensor_file

#: First object of a legacy (non-zip) ``torch.save`` stream (torch/serialization.py MAGIC_NUMBER).
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: Embedding size of CLIP ViT-B/32, the only image/text space the official files use.
CLIP_DIM = 512

FeatureKey = str | int


def load_text_classifier_npy(path: str | os.PathLike[str], embed_dim: int = CLIP_DIM) -> Tensor:
    """Read an official DetPro classifier file.

    Args:
        path: ``.npy`` file holding ``[C, embed_dim]`` float values.
        embed_dim: expected embedding size (512 for CLIP ViT-B/32).

    Returns:
        ``[C, embed_dim]`` float32 tensor, rows as stored (not normalised).

    Raises:
        VocabularyError: missing, unreadable, pickled, or wrongly shaped file.
    """
    path = Path(path)
    if not path.is_file():
        raise VocabularyError(f"text classifier {path} does not exist; pass the path of a [C, {embed_dim}] .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:  # corrupt files raise nearly anything (struct.error, UnicodeDecodeError, ...)
        raise VocabularyError(
            f"cannot read text classifier {path} ({first_line(err)}); it must be a plain [C, {embed_dim}] .npy array"
        ) from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.shape[1] != embed_dim or array.shape[0] == 0:
        shape = list(getattr(array, "shape", []))
        raise VocabularyError(f"text classifier {path} has shape {shape}; expected [C, {embed_dim}] with C >= 1")
    if not np.issubdtype(array.dtype, np.floating):
        raise VocabularyError(f"text classifier {path} holds {array.dtype} values; expected floats")
    if not np.isfinite(array).all():
        raise VocabularyError(f"text classifier {path} contains NaN or infinite values; regenerate it")
    return torch.from_numpy(array.astype(np.float32, copy=False))


def load_clip_features(path: str | os.PathLike[str], embed_dim: int = CLIP_DIM) -> dict[FeatureKey, Tensor]:
    """Read an official per-frame CLIP feature dictionary safely.

    Args:
        path: ``*_clip_feature.pkl`` (``torch.save`` zip or legacy format, or a plain pickle).
        embed_dim: expected embedding size.

    Returns:
        {file name or image id -> ``[embed_dim]`` float32 CPU tensor}. The stored ``[1, D]``
        (one ``encode_image`` batch of one) is flattened; float16 values are widened exactly.

    Raises:
        OVFormerError: missing or corrupt file, a file that references anything but arrays and
            tensors, or values of the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise OVFormerError(f"CLIP feature file {path} does not exist; pass the path of a *_clip_feature.pkl file")
    data = _load_feature_dict(path)
    if not isinstance(data, dict):
        raise OVFormerError(f"{path} holds a {type(data).__name__}, not a dict of CLIP features; check the file")
    features: dict[FeatureKey, Tensor] = {}
    for key, value in data.items():
        tensor = torch.as_tensor(value) if isinstance(value, np.ndarray) else value
        if not isinstance(key, (str, int)) or not isinstance(tensor, Tensor) or tensor.numel() != embed_dim:
            shape = list(tensor.shape) if isinstance(tensor, Tensor) else type(value).__name__
            raise OVFormerError(
                f"{path} entry {key!r} is {shape}; expected a [{embed_dim}] or [1, {embed_dim}] CLIP feature per frame"
            )
        features[key] = tensor.detach().reshape(embed_dim).to(device="cpu", dtype=torch.float32)
    return features


def clip_features_for_files(
    features: dict[FeatureKey, Tensor], file_names: Sequence[str], source: str = "the CLIP feature file"
) -> Tensor:
    """Look up the features of a video's frames.

    The official keys are the paths the extraction script opened (dataset root + ``file_names``
    entry), so a frame is found by its exact key or, failing that, by the unique key ending in
    ``/<file name>``.

    Args:
        features: result of ``load_clip_features``.
        file_names: the video's ``file_names`` as in its dataset JSON, in frame order.
        source: how to name the feature file in an error.

    Returns:
        ``[T, D]`` float32, one row per file name.

    Raises:
        OVFormerError: a frame has no feature or matches several keys.
    """
    by_suffix: dict[str, list[str]] = collections.defaultdict(list)
    for key in features:
        if isinstance(key, str):
            parts = key.replace("\\", "/").split("/")
            # Index every tail ("c.jpg", "b/c.jpg", ...) so dataset-relative names find the full key.
            for start in range(len(parts)):
                by_suffix["/".join(parts[start:])].append(key)
    rows = []
    for name in file_names:
        if name in features:
            rows.append(features[name])
            continue
        matches = by_suffix.get(name.replace("\\", "/").lstrip("/"), [])
        if len(matches) != 1:
            what = "no CLIP feature" if not matches else f"{len(matches)} CLIP features"
            raise OVFormerError(
                f"{source} has {what} for frame {name!r}; use the feature file of the same dataset split"
            )
        rows.append(features[matches[0]])
    return torch.stack(rows) if rows else torch.zeros(0, CLIP_DIM)


def _load_feature_dict(path: Path) -> Any:
    if zipfile.is_zipfile(path):
        return _torch_load(path)
    with path.open("rb") as handle:
        try:
            first = RestrictedUnpickler(handle, _allowed_globals()).load()
        except Exception as err:  # corrupt files raise nearly anything (struct.error, UnicodeDecodeError, ...)
            raise _unreadable(path, err) from None
        if first == TORCH_LEGACY_MAGIC:
            return _torch_load(path)
        return first


def _torch_load(path: Path) -> Any:
    # weights_only refuses numpy arrays by default; these few rebuilders are as safe as tensors.
    numpy_globals = [g for (module, _), g in _allowed_globals().items() if module.startswith("numpy")]
    return read_tensor_file(path, "CLIP feature", "use the official feature file", extra_globals=numpy_globals)


def _unreadable(path: Path, err: BaseException) -> OVFormerError:
    if isinstance(err, RefusedGlobalError):
        return OVFormerError(
            f"refusing to load {path}: it references Python objects other than arrays and tensors "
            f"({err.qualified_name}); use the official feature file"
        )
    return OVFormerError(
        f"cannot read CLIP feature file {path} ({first_line(err)}); the file is corrupt, re-download it"
    )


def _load_storage_bytes(data: bytes) -> Any:
    """Safe stand-in for ``torch.storage._load_from_bytes`` (which unpickles without restriction)."""
    return load_torch_bytes(data)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` as protocol-2 pickles use it for bytes; text codecs only."""
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1", "utf-8"):
        raise pickle.UnpicklingError(f"refusing codec {encoding!r}")
    return codecs.encode(text, encoding)


def _rebuilder(reduced: str | tuple[Any, ...]) -> Callable[..., Any]:
    """The callable of a ``__reduce__``/``__reduce_ex__`` result: its first item."""
    # A str result would name a module global; numpy arrays and scalars always reduce to a tuple.
    assert isinstance(reduced, tuple), f"unexpected reduce result {reduced!r}"
    return reduced[0]


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any] | type]:
    """The only callables a plain feature pickle may name, mapped to what we actually call."""
    reconstruct = _rebuilder(np.ndarray.__reduce__(np.zeros(0)))  # numpy's array rebuilder, whatever its module
    scalar = _rebuilder(np.float32(0).__reduce__())
    from_buffer = _rebuilder(np.zeros(1).__reduce_ex__(5))  # protocol 5 rebuilds arrays from raw buffers
    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "dict"): dict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("torch", "Size"): torch.Size,
    }
    # numpy 1.x pickles say numpy.core, numpy 2.x numpy._core.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = from_buffer
    for dtype_class in (
        "Float32DType",
        "Float16DType",
        "Float64DType",
        "Int64DType",
        "Int32DType",
        "UInt8DType",
    ):
        allowed[("numpy.dtypes", dtype_class)] = getattr(np.dtypes, dtype_class)
    return allowed

"""CLIP image embeddings of training frames, looked up by frame file name.

The classifier attends to one CLIP embedding per frame. The official training reads them from
precomputed ``*_clip_feature.pkl`` files: ``encode_image`` of the whole, un-augmented frame (OpenAI's
``preprocess`` on the file as read by PIL), keyed by the path the extraction script opened (LV-VIS),
or by image id (LVIS). Here the same embeddings come from one of three sources with one ``lookup``:

- ``build_clip_cache`` encodes every frame once with the frozen ``ClipFrameEncoder`` and writes one
  safetensors file (embeddings + file names + a fingerprint of the CLIP weights);
  ``ClipEmbeddingCache.open`` reads it back.
- ``ClipEmbeddingCache.open`` also reads the official feature files (through the restricted
  loader of ``ovformer_core.io.precomputed``; nothing in them runs).
- ``OnTheFlyClipEmbeddings`` encodes frames when first asked for and keeps the latest ones.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ovformer_core.errors import OVFormerError, TrainingError
from ovformer_core.io.atomic import atomic_path
from ovformer_core.io.json_input import parse_json_text
from ovformer_core.io.paths import path_fact
from ovformer_core.io.precomputed import first_line, load_clip_features
from ovformer_core.model.clip import ClipFrameEncoder

#: ``format`` entry of our cache files' metadata, and the layout version.
CACHE_FORMAT = "ovformer-clip-embeddings"
CACHE_VERSION = "1"
#: Folder the official extraction script (tools/save_clip_features.py) read datasets from; its keys
#: start with it ("datasets/LVVIS/train/JPEGImages/00000/00000.jpg").
OFFICIAL_DATA_FOLDER = "datasets"
#: Values per weight tensor that enter the CLIP fingerprint (evenly spaced over the tensor).
FINGERPRINT_SAMPLES = 1024
#: Frames kept by ``OnTheFlyClipEmbeddings`` by default: a few hundred clips' worth, ~8 MiB.
DEFAULT_MEMO_SIZE = 4096


class ClipEmbeddingSource(Protocol):
    """Anything that gives the CLIP embeddings of a clip's frames."""

    def lookup(self, file_names: Sequence[str]) -> Tensor:
        """``[T, D]`` float32 CPU embeddings, one row per file name, in order."""
        ...


def read_rgb_frame(file_name: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``[H, W, 3]`` uint8 RGB (PIL; grey and palette images converted).

    Raises:
        TrainingError: missing or unreadable file.
    """
    try:
        with Image.open(file_name) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise TrainingError(f"frame {file_name} does not exist; check the dataset root") from None
    except Exception as err:  # PIL raises many types for damaged files
        raise TrainingError(f"cannot read frame {file_name} ({first_line(err)}); check the image file") from None


def encode_each_alone(encoder: ClipFrameEncoder, frames: Sequence[np.ndarray]) -> Tensor:
    """``[T, D]`` float32 CPU embeddings, each frame sent through the encoder on its own.

    A matmul's rounding depends on how many rows it has (the BLAS library picks another kernel), so
    a frame encoded together with others can differ in the last bits from the same frame encoded
    with a different batch. Training must not depend on which frames happened to be looked up
    together (a resumed run starts with an empty memo), so every frame is its own batch: its
    embedding is then a function of its pixels alone, equal in a cache, on the fly, and after a resume.
    """
    if not frames:
        return torch.zeros(0, _encoder_dim(encoder))
    return torch.cat([encoder([frame]).float().cpu() for frame in frames])


def encoder_fingerprint(encoder: ClipFrameEncoder) -> str:
    """A short identity of the CLIP weights and preprocessing (16 hex digits).

    Hashes every weight's name and shape and ``FINGERPRINT_SAMPLES`` evenly spaced values rounded
    to float16, so the same weights give the same fingerprint on any device and in float32 or
    float16, while other weights (another checkpoint, a fine-tuned tower) give another.
    """
    hasher = hashlib.sha256()
    cfg = encoder.cfg
    hasher.update(json.dumps([cfg.image_size, list(cfg.mean), list(cfg.std)]).encode())
    for name, tensor in sorted(encoder.visual.state_dict().items()):
        hasher.update(f"{name}:{list(tensor.shape)}".encode())
        if tensor.is_floating_point() and tensor.numel():
            flat = tensor.detach().reshape(-1)
            stride = max(1, flat.numel() // FINGERPRINT_SAMPLES)
            hasher.update(flat[::stride].to(device="cpu", dtype=torch.float16).numpy().tobytes())
    return hasher.hexdigest()[:16]


def build_clip_cache(
    file_names: Sequence[str],
    encoder: ClipFrameEncoder,
    path: str | os.PathLike[str],
    batch_size: int = 256,
    num_readers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ClipEmbeddingCache:
    """Encode every frame once and write the embeddings to a safetensors file (atomically).

    Args:
        file_names: frame files (duplicates are encoded once), e.g. every ``TrainVideo.file_names``.
        encoder: the frozen CLIP frame encoder of the model to train.
        path: output ``.safetensors`` file; nothing is written if any frame fails.
        batch_size: frames read into memory per round (each is encoded alone, ``encode_each_alone``).
        num_readers: threads decoding images (PIL releases the GIL while decoding).
        progress: called with the number of frames done after each round.

    Returns:
        The written cache, opened.

    Raises:
        TrainingError: no file names, or a frame that cannot be read.
    """
    names = list(dict.fromkeys(str(name) for name in file_names))
    if not names:
        raise TrainingError("no frames to encode; the training set lists no file names")
    rounds = []
    with ThreadPoolExecutor(max_workers=max(1, num_readers)) as readers:
        for start in range(0, len(names), batch_size):
            frames = list(readers.map(read_rgb_frame, names[start : start + batch_size]))
            rounds.append(encode_each_alone(encoder, frames))
            if progress is not None:
                progress(min(start + batch_size, len(names)))
    embeddings = torch.cat(rounds).contiguous()
    metadata = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "fingerprint": encoder_fingerprint(encoder),
        "file_names": json.dumps(names),
    }
    with atomic_path(path) as tmp:
        save_file({"embeddings": embeddings}, str(tmp), metadata=metadata)
    return ClipEmbeddingCache(
        embeddings, {name: row for row, name in enumerate(names)}, Path(path), metadata["fingerprint"]
    )


class ClipEmbeddingCache:
    """Embeddings held in memory, looked up by frame file name."""

    def __init__(
        self,
        embeddings: Tensor,
        rows: dict[str, int],
        source: Path,
        fingerprint: str | None = None,
        official_keys: _OfficialKeyIndex | None = None,
    ) -> None:
        """Wrap loaded embeddings; use ``open`` or ``build_clip_cache`` rather than this.

        Args:
            embeddings: ``[N, D]`` float32.
            rows: file name -> row of ``embeddings``.
            source: the file they came from (for messages).
            fingerprint: ``encoder_fingerprint`` of the CLIP that made them, if known.
            official_keys: key matching for an official feature file (None: exact names only).
        """
        self.embeddings = embeddings
        self.rows = rows
        self.source = source
        self.fingerprint = fingerprint
        self._official_keys = official_keys

    @classmethod
    def open(cls, path: str | os.PathLike[str], fingerprint: str | None = None) -> ClipEmbeddingCache:
        """Read a cache written by ``build_clip_cache`` or an official ``*_clip_feature.pkl``.

        Args:
            path: the file.
            fingerprint: ``encoder_fingerprint`` of the CLIP in use; a cache made by another CLIP is
                refused (official files carry no fingerprint and are not checked).

        Raises:
            TrainingError: missing, corrupt or stale file.
        """
        path = Path(path)
        found = path_fact(path, "file")
        if found is not None:
            hint = "build it first (`build_training_clip_cache()`)" if found[0] == "does not exist" else found[1]
            raise TrainingError(f"CLIP embedding cache {path} {found[0]}; {hint}")
        if path.suffix == ".safetensors" or _looks_like_safetensors(path):
            cache = cls._open_safetensors(path)
        else:
            cache = cls._open_official(path)
        if fingerprint is not None and cache.fingerprint is not None and cache.fingerprint != fingerprint:
            raise TrainingError(
                f"CLIP embedding cache {path} was made with other CLIP weights ({cache.fingerprint}, "
                f"now {fingerprint}); rebuild it"
            )
        return cache

    @classmethod
    def _open_safetensors(cls, path: Path) -> ClipEmbeddingCache:
        rebuild = "rebuild it with build_clip_cache"
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                embeddings = handle.get_tensor("embeddings") if "embeddings" in handle.keys() else None
        except Exception as err:  # safetensors raises several types for damaged files
            raise TrainingError(f"cannot read CLIP embedding cache {path} ({first_line(err)}); {rebuild}") from None
        if metadata.get("format") != CACHE_FORMAT or embeddings is None:
            raise TrainingError(f"{path} is not a CLIP embedding cache; {rebuild}")
        if metadata.get("version") != CACHE_VERSION:
            raise TrainingError(f"CLIP embedding cache {path} has layout version {metadata.get('version')}; {rebuild}")
        try:
            names = parse_json_text(metadata.get("file_names", ""), f"CLIP embedding cache {path}", TrainingError)
        except TrainingError:
            names = None
        if (
            not isinstance(names, list)
            or not all(isinstance(name, str) for name in names)
            or embeddings.ndim != 2
            or embeddings.shape[0] != len(names)
            or len(set(names)) != len(names)
            or not embeddings.is_floating_point()
        ):
            raise TrainingError(f"CLIP embedding cache {path} is inconsistent (names vs. embeddings); {rebuild}")
        return cls(embeddings.float(), {name: row for row, name in enumerate(names)}, path, metadata.get("fingerprint"))

    @classmethod
    def _open_official(cls, path: Path) -> ClipEmbeddingCache:
        try:
            features = load_clip_features(path)
        except OVFormerError as err:
            raise TrainingError(str(err)) from None
        if not features:
            raise TrainingError(f"CLIP feature file {path} is empty; use the file of the training split")
        keys = list(features)
        embeddings = torch.stack([features[key] for key in keys])
        index = _OfficialKeyIndex(keys)
        return cls(embeddings, index.exact, path, official_keys=index)

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def embed_dim(self) -> int:
        """D, the embedding size (512 for ViT-B/32)."""
        return self.embeddings.shape[1]

    def lookup(self, file_names: Sequence[str]) -> Tensor:
        """Embeddings of a clip's frames.

        Args:
            file_names: T frame files, as the dataset lists them.

        Returns:
            ``[T, D]`` float32 CPU tensor (rows repeat when a frame repeats).

        Raises:
            TrainingError: a frame the cache does not hold (named).
        """
        rows = [self._row(str(name)) for name in file_names]
        return self.embeddings[torch.tensor(rows, dtype=torch.long)]

    def _row(self, name: str) -> int:
        row = self.rows.get(name)
        if row is not None:
            return row
        if self._official_keys is None:
            raise TrainingError(
                f"CLIP embedding cache {self.source} has no frame {name!r}; rebuild the cache for this dataset"
            )
        return self._official_keys.find(name, self.source)


class _OfficialKeyIndex:
    """Matches dataset file names to the keys of an official feature file.

    Keys are the paths the official script opened relative to its working folder
    (``datasets/LVVIS/train/JPEGImages/00000/00000.jpg``) or, for LVIS, image ids (the file is
    ``<id zero-padded to 12>.jpg``). A file name matches a key when, path-component-wise, the key
    without its leading ``datasets/`` ends the file name (dataset at another root), or the file name
    ends the key (a dataset-relative name); an all-digit file stem matches the image id. The match
    must be unique.
    """

    AMBIGUOUS = -1

    def __init__(self, keys: Sequence[str | int]) -> None:
        self.exact: dict[str, int] = {}
        self.ids: dict[int, int] = {}
        self.relative: dict[str, int] = {}  # key without "datasets/" -> row
        self.tails: dict[str, int] = {}  # every tail of every key -> row (or AMBIGUOUS)
        for row, key in enumerate(keys):
            if isinstance(key, int):
                self.ids[key] = row
                continue
            self.exact[key] = row
            parts = _path_parts(key)
            if parts and parts[0] == OFFICIAL_DATA_FOLDER:
                parts = parts[1:]
            self._add(self.relative, "/".join(parts), row)
            for start in range(len(parts)):
                self._add(self.tails, "/".join(parts[start:]), row)

    def _add(self, table: dict[str, int], key: str, row: int) -> None:
        table[key] = self.AMBIGUOUS if key in table and table[key] != row else row

    def find(self, name: str, source: Path) -> int:
        """Row of ``name``; raises a one-line TrainingError when there is none or several."""
        parts = _path_parts(name)
        candidates = [self.tails.get("/".join(parts), None)]
        # Longest tail of the name first: the most specific match wins.
        candidates += [self.relative.get("/".join(parts[start:])) for start in range(len(parts))]
        stem = re.fullmatch(r"(\d+)\.\w+", parts[-1]) if parts else None
        if stem is not None:
            candidates.append(self.ids.get(int(stem[1])))
        for row in candidates:
            if row is None:
                continue
            if row == self.AMBIGUOUS:
                raise TrainingError(
                    f"frame {name!r} matches several entries of {source}; pass full file names from the dataset json"
                )
            return row
        raise TrainingError(
            f"CLIP feature file {source} has no frame {name!r}; use the file of the same dataset split "
            "or build a cache for it (build_clip_cache)"
        )


def _path_parts(name: str) -> list[str]:
    return [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]


def _looks_like_safetensors(path: Path) -> bool:
    # safetensors: an 8-byte little-endian header length, then the JSON header.
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


class OnTheFlyClipEmbeddings:
    """Encodes frames when first looked up and remembers the most recent ones (LRU).

    For short runs and small datasets where building a cache first is not worth it. Each
    ``lookup`` reads and encodes only the frames it does not remember, each on its own
    (``encode_each_alone``), so an embedding never depends on what was remembered before.
    """

    def __init__(self, encoder: ClipFrameEncoder, max_frames: int = DEFAULT_MEMO_SIZE) -> None:
        """Remember up to ``max_frames`` embeddings.

        Args:
            encoder: the frozen CLIP frame encoder.
            max_frames: embeddings remembered at most (the least recently used are forgotten first).
        """
        self.encoder = encoder
        self.max_frames = max_frames
        self.num_encoded = 0  # frames sent through the encoder so far
        self._memo: collections.OrderedDict[str, Tensor] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._memo)

    def lookup(self, file_names: Sequence[str]) -> Tensor:
        """``[T, D]`` float32 CPU embeddings of the frames, in order.

        Raises:
            TrainingError: a frame that cannot be read.
        """
        names = [str(name) for name in file_names]
        found: dict[str, Tensor] = {}
        for name in names:
            if name in self._memo:
                self._memo.move_to_end(name)
                found[name] = self._memo[name]
        todo = [name for name in dict.fromkeys(names) if name not in found]
        if todo:
            encoded = encode_each_alone(self.encoder, [read_rgb_frame(name) for name in todo])
            self.num_encoded += len(todo)
            for name, embedding in zip(todo, encoded, strict=True):
                # A copy, so a remembered row does not keep its whole batch alive.
                found[name] = self._memo[name] = embedding.clone()
            while len(self._memo) > self.max_frames:
                self._memo.popitem(last=False)
        if not names:
            return torch.zeros(0, _encoder_dim(self.encoder))
        return torch.stack([found[name] for name in names])


def _encoder_dim(encoder: ClipFrameEncoder) -> int:
    return int(getattr(encoder.visual, "output_dim", 0))

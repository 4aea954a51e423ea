"""Vocabularies: class names (with synonyms) -> CLIP text embeddings -> the model's text classifier.

A vocabulary comes from a list of names, a text file, a dataset's category list, or a saved
``.vocab`` file. Each class is encoded with the CLIP text tower using a prompt-template ensemble:
every (synonym, template) prompt is encoded and L2-normalised, the class embedding is their mean,
re-normalised. The model consumes the classifier in the layout of the official ``zs_weight``
buffer (``text_classifier_from_embeddings``).

Text file format (``samples/vocab/*.txt``): one class per line; synonyms after commas
(``dog, puppy``: class "dog", prompts for both); blank lines and ``#`` comments are ignored;
underscores become spaces (``traffic_light`` = "traffic light"). Names must be unique
case-insensitively across the whole vocabulary, synonyms included. An inline list
(``"person,dog,car"``) is one class per comma, without synonyms. A dataset JSON contributes its
``categories`` names in ascending id order.

Default prompt templates (``DEFAULT_TEMPLATES``, replaceable by a templates file with one ``{}`` per
line): "a photo of a {}.", "a photo of the {}.", "a photo of one {}.", "a photo of a small {}.",
"a photo of a large {}.", "a close-up photo of a {}.", "a cropped photo of the {}.",
"a blurry photo of a {}.", "a video frame showing a {}.".
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ovformer_core.errors import OutputError, VocabularyError
from ovformer_core.io.atomic import atomic_path
from ovformer_core.io.dataset_json import check_categories
from ovformer_core.io.json_input import brief, is_int, parse_json_text, read_json
from ovformer_core.io.paths import check_input_path, input_path_problem
from ovformer_core.io.precomputed import first_line

#: Default prompt templates, each with one ``{}`` for the class name. A short ensemble in the style of
#: CLIP's ImageNet prompts: plain, size and quality variants, and a video-frame phrasing. More
#: templates cost text-encoding time only (once per vocabulary; results are cached).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a close-up photo of a {}.",
    "a cropped photo of the {}.",
    "a blurry photo of a {}.",
    "a video frame showing a {}.",
)

#: Marker and version stored in a ``.vocab`` file's metadata.
FORMAT_KEY = "ovformer_vocabulary"
FORMAT_VERSION = "1"
#: File suffixes ``load_vocabulary`` treats as files (anything else without a file is an inline list).
VOCAB_SUFFIX = ".vocab"
TEXT_SUFFIX = ".txt"
JSON_SUFFIX = ".json"


class TextEncoder(Protocol):
    """Prompts -> ``[N, D]`` text embeddings (not necessarily normalised)."""

    def __call__(self, prompts: Sequence[str]) -> Tensor: ...


class TextEncoderFactory(Protocol):
    """Names a text encoder without building it, and builds it on demand (loading weights is slow)."""

    @property
    def identity(self) -> str: ...

    def __call__(self) -> TextEncoder: ...


def text_classifier_from_embeddings(embeds: Tensor) -> Tensor:
    """The model's text classifier, in the layout of the official ``zs_weight`` buffer.

    Same operations, in the same order, as the official construction from a ``[C, D]`` ``.npy``:
    transpose, append a zero (background) column, L2-normalise every column (a zero column stays zero).

    Args:
        embeds: ``[C, D]`` class text embeddings.

    Returns:
        ``[D, C + 1]`` float32: column c < C is class c's unit embedding, column C is zero.
    """
    columns = embeds.to(torch.float32).permute(1, 0).contiguous()
    columns = torch.cat([columns, columns.new_zeros((columns.shape[0], 1))], dim=1)
    return F.normalize(columns, p=2, dim=0)


def normalize_name(name: str) -> str:
    """Underscores -> spaces, whitespace collapsed: ``"traffic_light "`` -> ``"traffic light"``."""
    return " ".join(name.replace("_", " ").split())


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Encoded class names.

    Attributes:
        names: C class names (the first synonym of each class).
        synonyms: per class, every name its prompts were built from (``synonyms[c][0] == names[c]``).
        templates: prompt templates, each with one ``{}``.
        clip_model_id: identity of the CLIP weights that encoded it (file name + fingerprint).
        embeddings: ``[C, D]`` float32, rows L2-normalised.
        category_ids: the id results give each class when it came from a dataset JSON (its own ids,
            which need not be 1..C); None: results number the classes 1..C.
    """

    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]
    templates: tuple[str, ...]
    clip_model_id: str
    embeddings: Tensor = field(repr=False)
    category_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        assert self.embeddings.ndim == 2 and self.embeddings.shape[0] == len(self.names) == len(self.synonyms)
        assert all(group and group[0] == name for name, group in zip(self.names, self.synonyms, strict=True))
        assert self.category_ids is None or len(set(self.category_ids)) == len(self.category_ids) == len(self.names)

    @property
    def num_classes(self) -> int:
        """C."""
        return len(self.names)

    @property
    def embed_dim(self) -> int:
        """D (512 for CLIP ViT-B/32)."""
        return int(self.embeddings.shape[1])

    def text_classifier(self) -> Tensor:
        """``[D, C + 1]`` classifier for the model (see ``text_classifier_from_embeddings``)."""
        return text_classifier_from_embeddings(self.embeddings)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a ``.vocab`` file (safetensors: the embeddings plus JSON metadata), atomically."""
        metadata = {
            FORMAT_KEY: FORMAT_VERSION,
            "names": json.dumps(list(self.names)),
            "synonyms": json.dumps([list(group) for group in self.synonyms]),
            "templates": json.dumps(list(self.templates)),
            "clip_model_id": self.clip_model_id,
        }
        if self.category_ids is not None:
            metadata["category_ids"] = json.dumps(list(self.category_ids))
        with atomic_path(path) as tmp:
            save_file(
                {"embeddings": self.embeddings.detach().to("cpu", torch.float32).contiguous()},
                str(tmp),
                metadata,
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a ``.vocab`` file written by ``save``.

        Raises:
            VocabularyError: missing, corrupt, or not an ovformer vocabulary.
        """
        path = check_input_path(path, "vocabulary file", VocabularyError)
        foreign = f"{path} is not an ovformer vocabulary file; create one with `Vocabulary.save()`"
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                if metadata.get(FORMAT_KEY) is None or "embeddings" not in handle.keys():
                    raise VocabularyError(foreign)
                embeddings = handle.get_tensor("embeddings")
        except VocabularyError:
            raise
        except Exception as err:  # corrupt files raise nearly anything (struct.error, UnicodeDecodeError, ...)
            raise VocabularyError(
                f"{path} is corrupt or not a vocabulary file ({first_line(err)}); re-create it with `Vocabulary.save()`"
            ) from None
        if metadata[FORMAT_KEY] != FORMAT_VERSION:
            raise VocabularyError(
                f"{path} has vocabulary format {metadata[FORMAT_KEY]}; this version reads {FORMAT_VERSION}"
            )
        incomplete = f"{path} has incomplete metadata; re-create it with `Vocabulary.save()`"
        try:
            where = f"vocabulary file {path} metadata"
            names = tuple(parse_json_text(metadata["names"], where, VocabularyError))
            synonyms = tuple(tuple(group) for group in parse_json_text(metadata["synonyms"], where, VocabularyError))
            templates = tuple(parse_json_text(metadata["templates"], where, VocabularyError))
            clip_model_id = metadata["clip_model_id"]
            ids = (
                parse_json_text(metadata["category_ids"], where, VocabularyError)
                if "category_ids" in metadata
                else None
            )
        except (KeyError, TypeError):
            raise VocabularyError(incomplete) from None
        if ids is not None and not (
            isinstance(ids, list) and len(ids) == len(names) == len(set(ids)) and all(is_int(i) for i in ids)
        ):
            raise VocabularyError(f"{path} has malformed category ids; re-create it with `Vocabulary.save()`")
        category_ids = None if ids is None else tuple(int(i) for i in ids)
        if not isinstance(clip_model_id, str) or not all(isinstance(t, str) for t in templates):
            raise VocabularyError(incomplete)
        ok = (
            embeddings.ndim == 2
            and embeddings.dtype == torch.float32
            and embeddings.shape[0] == len(names) == len(synonyms) > 0
            and all(isinstance(n, str) for n in names)
            and all(
                group and group[0] == name and all(isinstance(s, str) for s in group)
                for name, group in zip(names, synonyms, strict=True)
            )
            and bool(torch.isfinite(embeddings).all())
        )
        if not ok:
            raise VocabularyError(
                f"{path} is inconsistent (names vs. embeddings); re-create it with `Vocabulary.save()`"
            )
        return cls(names, synonyms, templates, clip_model_id, embeddings, category_ids)


def clip_weights_key(clip_model_id: str) -> str:
    """The content part of a CLIP identity ``<file name>#<fingerprint>[+gelu]`` (see ``TextEncoderFactory``).

    Two identities with the same key name the same weights: a renamed or moved copy keeps its key.
    """
    return clip_model_id.rpartition("#")[2]


def check_vocabulary_clip(vocabulary: Vocabulary, clip_model_id: str, source: str, clip_weights: str) -> None:
    """Refuse a vocabulary encoded by another CLIP text tower than the one in use.

    Embeddings of another CLIP live in another space: the classifier would silently compare frames with
    meaningless text vectors.

    Args:
        vocabulary: the loaded vocabulary.
        clip_model_id: identity of the text tower in use (``TextEncoderFactory.identity``).
        source: names the vocabulary in the message (its file, usually).
        clip_weights: path of the weights in use, for the re-encoding command in the message.

    Raises:
        VocabularyError: the fingerprints differ.
    """
    if clip_weights_key(vocabulary.clip_model_id) != clip_weights_key(clip_model_id):
        raise VocabularyError(
            f"{source} was encoded with other CLIP weights ({vocabulary.clip_model_id}) than the model uses "
            f"({clip_model_id}); re-encode it: "
            f"ovformer vocab-encode {source} -o NEW.vocab --clip-weights {clip_weights}"
        )


def parse_vocabulary_text(text: str, source: str = "vocabulary") -> list[tuple[str, ...]]:
    """Parse the text-file format (see module docstring) into classes.

    Returns:
        One tuple per class: (name, *synonyms), normalised. Validated with ``check_classes``.
    """
    classes = []
    for line in text.splitlines():
        content = line.split("#", 1)[0].strip()
        if content:
            classes.append(tuple(normalize_name(part) for part in content.split(",")))
    check_classes(classes, source)
    return classes


def classes_from_names(names: Sequence[str], source: str = "vocabulary") -> list[tuple[str, ...]]:
    """One class per name (no synonyms), normalised and validated."""
    classes: list[tuple[str, ...]] = [(normalize_name(name),) for name in names]
    check_classes(classes, source)
    return classes


def _dataset_categories(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The checked ``categories`` of a dataset JSON, in ascending id order."""
    data = read_json(path, "dataset file", VocabularyError)
    categories = check_categories(data, f"dataset file {path}", VocabularyError, need_names=True)
    return sorted(categories, key=lambda category: category["id"])


def classes_from_dataset_json(path: str | os.PathLike[str]) -> list[tuple[str, ...]]:
    """Classes of a YouTube-VIS-style dataset JSON, in ascending category-id order.

    Contiguous class index c is the c-th category by id, as the official evaluators map labels.

    Raises:
        VocabularyError: unreadable JSON or no usable ``categories`` list.
    """
    return classes_from_names([category["name"] for category in _dataset_categories(path)], source=str(path))


def check_classes(classes: Sequence[Sequence[str]], source: str = "vocabulary") -> None:
    """Reject an empty vocabulary, empty names, names with control characters (a binary file read as
    text: they would reach the tokenizer as junk classes) and names used twice (case-insensitive).

    Raises:
        VocabularyError: one line naming the offending class.
    """
    if not classes:
        raise VocabularyError(f"{source} has no class names; give at least one (e.g. 'person,dog')")
    seen: dict[str, int] = {}
    for index, group in enumerate(classes):
        for name in group:
            if not name:
                raise VocabularyError(
                    f"{source}: class {index + 1} ({', '.join(group) or 'empty'}) has an empty name; "
                    "remove the stray comma"
                )
            if any(unicodedata.category(char) == "Cc" for char in name):
                raise VocabularyError(
                    f"{source}: class {index + 1} {brief(name)} contains control characters; "
                    "is it a text file of class names?"
                )
            key = name.casefold()
            if key in seen:
                raise VocabularyError(
                    f"{source}: name {brief(name)} appears twice (classes {seen[key] + 1} and {index + 1}); keep one"
                )
            seen[key] = index


def read_templates(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Prompt templates from a file: one per line with exactly one ``{}``; blank lines and ``#`` skipped.

    Raises:
        VocabularyError: unreadable file, no templates, or a line without exactly one ``{}``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise VocabularyError(
            f"cannot read templates file {path} ({type(err).__name__}); pass a UTF-8 text file"
        ) from None
    templates = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    check_templates(templates, str(path))
    return templates


def check_templates(templates: Sequence[str], source: str = "templates") -> None:
    """Every template must contain ``{}`` exactly once (and no other braces)."""
    if not templates:
        raise VocabularyError(f"{source} has no prompt templates; give at least one like 'a photo of a {{}}.'")
    for template in templates:
        if template.count("{}") != 1 or template.count("{") != 1 or template.count("}") != 1:
            raise VocabularyError(
                f"{source}: template {brief(template)} must contain '{{}}' exactly once for the class name"
            )


def encode_classes(
    classes: Sequence[Sequence[str]],
    encoder: TextEncoder,
    clip_model_id: str,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> Vocabulary:
    """Encode classes with a prompt-template ensemble.

    For class c with names s_1..s_k and templates t_1..t_m, the k*m prompts ``t_j.format(s_i)`` are
    encoded and each L2-normalised; their mean is L2-normalised again.

    Args:
        classes: C tuples (name, *synonyms), already normalised and checked.
        encoder: the CLIP text tower.
        clip_model_id: identity of the encoder's weights, stored with the result.
        templates: prompt templates.

    Returns:
        A ``Vocabulary`` with ``[C, D]`` unit embeddings.
    """
    check_classes(classes)
    check_templates(templates)
    prompts = [template.format(name) for group in classes for name in group for template in templates]
    prompt_embeds = F.normalize(encoder(prompts).to(torch.float32), p=2, dim=-1)  # [P, D]
    rows = []
    start = 0
    for group in classes:
        count = len(group) * len(templates)
        rows.append(prompt_embeds[start : start + count].mean(dim=0))
        start += count
    embeddings = F.normalize(torch.stack(rows), p=2, dim=-1).cpu()
    return Vocabulary(
        names=tuple(group[0] for group in classes),
        synonyms=tuple(tuple(group) for group in classes),
        templates=tuple(templates),
        clip_model_id=clip_model_id,
        embeddings=embeddings,
    )


def read_classes(spec: str | os.PathLike[str] | Sequence[str]) -> list[tuple[str, ...]]:
    """Classes from a ``.txt`` file, a dataset ``.json``, a ``.vocab`` file, a list of names, or an
    inline comma list (``"person,dog,car"``).

    Raises:
        VocabularyError: a named file is missing or invalid, or the names are.
    """
    return read_classes_and_ids(spec)[0]


def read_classes_and_ids(
    spec: str | os.PathLike[str] | Sequence[str],
) -> tuple[list[tuple[str, ...]], tuple[int, ...] | None]:
    """``read_classes``, plus a dataset JSON's own category ids in the same order (None for other sources).

    One read of the file: a dataset JSON given as a vocabulary may be a whole annotated split.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return classes_from_names(list(spec)), None
    path = Path(spec)
    problem = input_path_problem(path, "file")
    if problem is None:
        if path.suffix == VOCAB_SUFFIX:
            return [tuple(group) for group in Vocabulary.load(path).synonyms], None
        if path.suffix == JSON_SUFFIX:
            categories = _dataset_categories(path)
            names = [category["name"] for category in categories]
            return classes_from_names(names, source=str(path)), tuple(int(c["id"]) for c in categories)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise VocabularyError(
                f"cannot read vocabulary file {path} ({type(err).__name__}); pass a UTF-8 text file, one class per line"
            ) from None
        return parse_vocabulary_text(text, source=str(path)), None
    # A single comma-free entry with a separator or a vocabulary suffix is a mistyped path, not a class.
    looks_like_path = "," not in str(spec) and ("/" in str(spec) or os.sep in str(spec))
    if path.suffix in (VOCAB_SUFFIX, TEXT_SUFFIX, JSON_SUFFIX) or isinstance(spec, os.PathLike) or looks_like_path:
        raise VocabularyError(f"vocabulary file {path} {problem} (or give class names separated by commas)")
    return classes_from_names(str(spec).split(","), source="inline vocabulary"), None


def vocabulary_cache_key(clip_model_id: str, templates: Sequence[str], classes: Sequence[Sequence[str]]) -> str:
    """sha256 of everything that determines the encoded vocabulary."""
    payload = json.dumps(
        {"clip": clip_model_id, "templates": list(templates), "classes": [list(g) for g in classes]},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_vocabulary(
    spec: str | os.PathLike[str] | Sequence[str],
    text_encoder_factory: TextEncoderFactory | None,
    cache_dir: str | os.PathLike[str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    on_encode: Callable[[int], None] | None = None,
) -> Vocabulary:
    """A ready vocabulary from whatever the user gave.

    A ``.vocab`` file is returned as saved (no CLIP needed). Anything else is read into classes and
    text-encoded, unless ``cache_dir`` already holds the result for the same (weights, templates,
    classes): encoding a 1,196-class vocabulary is paid once.

    Args:
        spec: ``.vocab`` / ``.txt`` / dataset ``.json`` path, a list of names, or ``"person,dog,car"``.
        text_encoder_factory: builds the CLIP text encoder on demand; may be None for ``.vocab`` files.
        cache_dir: folder for cached encodings (``<sha256>.vocab``); None disables caching.
        templates: prompt templates.
        on_encode: called with the class count just before an actual (uncached) encoding.

    Raises:
        VocabularyError: invalid input, or encoding needed without an encoder.
    """
    if isinstance(spec, (str, os.PathLike)) and Path(spec).suffix == VOCAB_SUFFIX:
        return Vocabulary.load(spec)
    # A dataset's classes keep its ids; the cache holds embeddings only, shared by every source of the names.
    classes, ids = read_classes_and_ids(spec)
    check_templates(templates)
    if text_encoder_factory is None:
        raise VocabularyError("this vocabulary must be text-encoded but no CLIP weights were given; pass a .vocab file")
    clip_model_id = text_encoder_factory.identity
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"{vocabulary_cache_key(clip_model_id, templates, classes)}{VOCAB_SUFFIX}"
        if cached.is_file():
            try:
                return replace(Vocabulary.load(cached), category_ids=ids)
            except VocabularyError:
                pass  # a damaged cache entry is simply recomputed and overwritten
    if on_encode is not None:
        on_encode(len(classes))
    vocabulary = encode_classes(classes, text_encoder_factory(), clip_model_id, templates)
    if cached is not None:
        try:
            vocabulary.save(cached)
        except OutputError:
            pass  # an unwritable cache only costs the encoding again next time
    return replace(vocabulary, category_ids=ids)

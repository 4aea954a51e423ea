"""Vocabularies: official classifier layout, parsing rules, prompt ensembles, .vocab files, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ovformer_core.errors import VocabularyError
from ovformer_core.io.precomputed import load_text_classifier_npy
from ovformer_core.model.clip import ClipTextEncoder, ClipTextEncoderFactory
from ovformer_core.vocab import (
    DEFAULT_TEMPLATES,
    Vocabulary,
    classes_from_dataset_json,
    encode_classes,
    load_vocabulary,
    parse_vocabulary_text,
    read_classes,
    read_templates,
    text_classifier_from_embeddings,
)
from tests.clip_fixtures import save_safetensors, tiny_clip
from tests.reference_fixtures import VIDEO_TINY

SAMPLES = Path(__file__).parent.parent / "samples" / "vocab"


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_safetensors(tiny_clip(seed=0), tmp_path_factory.mktemp("clip") / "tiny.safetensors")


class CountingFactory:
    """The real factory, counting how often a text encoder had to be built."""

    def __init__(self, weights: Path) -> None:
        self.inner = ClipTextEncoderFactory(weights)
        self.builds = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    def __call__(self) -> ClipTextEncoder:
        self.builds += 1
        return self.inner()


def test_official_npy_gives_the_checkpoint_zs_weight() -> None:
    zs_weight = torch.load(VIDEO_TINY / "model.pth", weights_only=True)["model"][
        "sem_seg_head.predictor.class_embed.zs_weight"
    ]
    ours = text_classifier_from_embeddings(load_text_classifier_npy(VIDEO_TINY / "text_classifier.npy"))
    assert ours.shape == zs_weight.shape == (512, 13) and ours.dtype == torch.float32
    assert torch.equal(ours, zs_weight)


def test_classifier_layout() -> None:
    embeds = torch.randn(5, 512, generator=torch.Generator().manual_seed(0)) * 3
    classifier = text_classifier_from_embeddings(embeds)
    assert classifier.shape == (512, 6)
    torch.testing.assert_close(classifier[:, :5].norm(dim=0), torch.ones(5))
    assert torch.equal(classifier[:, 5], torch.zeros(512))
    torch.testing.assert_close(classifier[:, 2], F.normalize(embeds[2], dim=0))


def test_text_format() -> None:
    text = "# my classes\n\nperson\ndog, puppy  # both prompt the dog class\n Traffic_Light \n\n"
    assert parse_vocabulary_text(text) == [("person",), ("dog", "puppy"), ("Traffic Light",)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dog\ncat\nDog\n", "'Dog' appears twice"),
        ("dog, puppy\ncat, PUPPY\n", "'PUPPY' appears twice"),
        ("traffic_light\ntraffic  light\n", "appears twice"),
        ("dog\n, cat\n", "empty name"),
        ("dog,\n", "empty name"),
        ("# nothing\n\n", "no class names"),
        ("", "no class names"),
    ],
)
def test_bad_vocabularies_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(VocabularyError, match=message) as info:
        parse_vocabulary_text(text, source="classes.txt")
    assert "\n" not in str(info.value)


def test_dataset_json_in_id_order(tmp_path: Path) -> None:
    dataset = tmp_path / "valid.json"
    categories = [{"id": 3, "name": "earless_seal"}, {"id": 1, "name": "person"}, {"id": 2, "name": "giant_panda"}]
    dataset.write_text(json.dumps({"videos": [], "categories": categories}))
    assert classes_from_dataset_json(dataset) == [("person",), ("giant panda",), ("earless seal",)]
    assert read_classes(dataset) == classes_from_dataset_json(dataset)
    (tmp_path / "bad.json").write_text(json.dumps({"videos": []}))
    with pytest.raises(VocabularyError, match="no 'categories'"):
        read_classes(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(VocabularyError, match="broken.json is not valid JSON"):
        read_classes(tmp_path / "broken.json")


def test_read_classes_specs(tmp_path: Path) -> None:
    assert read_classes("person, dog,car") == [("person",), ("dog",), ("car",)]
    assert read_classes(["person", "hot_dog"]) == [("person",), ("hot dog",)]
    with pytest.raises(VocabularyError, match="does not exist"):
        read_classes(tmp_path / "missing.txt")
    with pytest.raises(VocabularyError, match="does not exist"):
        read_classes("missing.vocab")
    with pytest.raises(VocabularyError, match="does not exist"):
        read_classes(str(tmp_path / "classes.vocab.old"))
    assert read_classes("wiper (for windshield/screen),dog") == [("wiper (for windshield/screen)",), ("dog",)]
    with pytest.raises(VocabularyError, match="appears twice"):
        read_classes("dog,cat,dog")
    with pytest.raises(VocabularyError, match="empty name"):
        read_classes("dog,,cat")
    binary = tmp_path / "classes.txt"
    binary.write_bytes(b"\xff\xfe\x00dog")
    with pytest.raises(VocabularyError, match="UTF-8"):
        read_classes(binary)


def test_templates_file(tmp_path: Path) -> None:
    good = tmp_path / "templates.txt"
    good.write_text("# mine\na photo of a {}.\n\nthe {} in a video\n")
    assert read_templates(good) == ("a photo of a {}.", "the {} in a video")
    for body in ("a photo\n", "{} and {}\n", "# only a comment\n", "a {name}\n"):
        good.write_text(body)
        with pytest.raises(VocabularyError):
            read_templates(good)


def test_ensemble_over_templates_and_synonyms(clip_weights: Path) -> None:
    encoder = ClipTextEncoderFactory(clip_weights)()
    templates = ("a photo of a {}.", "a blurry photo of the {}.")
    classes = [("dog", "puppy"), ("traffic light",)]
    vocabulary = encode_classes(classes, encoder, "tiny", templates)
    expected = []
    for group in classes:
        prompts = [t.format(name) for name in group for t in templates]
        expected.append(F.normalize(F.normalize(encoder(prompts), dim=-1).mean(dim=0), dim=0))
    torch.testing.assert_close(vocabulary.embeddings, torch.stack(expected), rtol=0, atol=1e-6)
    assert vocabulary.names == ("dog", "traffic light")
    assert vocabulary.synonyms == (("dog", "puppy"), ("traffic light",))
    # The synonym matters: without "puppy" the dog embedding differs.
    alone = encode_classes([("dog",), ("traffic light",)], encoder, "tiny", templates)
    assert not torch.allclose(alone.embeddings[0], vocabulary.embeddings[0], atol=1e-4)
    torch.testing.assert_close(alone.embeddings[1], vocabulary.embeddings[1], rtol=0, atol=1e-6)


def test_vocab_file_round_trip_and_corruption(tmp_path: Path, clip_weights: Path) -> None:
    vocabulary = load_vocabulary("person, dog, car", ClipTextEncoderFactory(clip_weights))
    path = tmp_path / "classes.vocab"
    vocabulary.save(path)
    loaded = Vocabulary.load(path)
    assert torch.equal(loaded.embeddings, vocabulary.embeddings)
    assert (loaded.names, loaded.synonyms, loaded.templates, loaded.clip_model_id) == (
        vocabulary.names,
        vocabulary.synonyms,
        vocabulary.templates,
        vocabulary.clip_model_id,
    )
    assert loaded.templates == DEFAULT_TEMPLATES and loaded.text_classifier().shape == (512, 4)
    assert load_vocabulary(path, None).names == ("person", "dog", "car")  # no CLIP needed

    data = path.read_bytes()
    (tmp_path / "truncated.vocab").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.vocab").write_bytes(b"\x00" * 64)
    save_file({"embeddings": torch.zeros(2, 512)}, str(tmp_path / "foreign.vocab"))
    save_file({"weight": torch.zeros(2, 512)}, str(tmp_path / "other.vocab"), {"ovformer_vocabulary": "1"})
    np.save(tmp_path / "array.npy", np.zeros((2, 512), np.float32))
    (tmp_path / "array.npy").rename(tmp_path / "array.vocab")
    for name in ("truncated", "garbage", "foreign", "other", "array", "missing"):
        with pytest.raises(VocabularyError) as info:
            load_vocabulary(tmp_path / f"{name}.vocab", None)
        assert "\n" not in str(info.value) and str(tmp_path / f"{name}.vocab") in str(info.value)


def test_cache_encodes_once_per_weights_templates_and_names(tmp_path: Path, clip_weights: Path) -> None:
    cache = tmp_path / "cache"
    classes_txt = tmp_path / "classes.txt"
    classes_txt.write_text("dog, puppy\ncat\n")
    factory = CountingFactory(clip_weights)
    first = load_vocabulary(classes_txt, factory, cache_dir=cache)
    again = load_vocabulary(classes_txt, factory, cache_dir=cache)
    assert factory.builds == 1 and len(list(cache.glob("*.vocab"))) == 1
    assert torch.equal(first.embeddings, again.embeddings)
    # The same classes typed inline without the synonym are a different vocabulary...
    load_vocabulary("dog,cat", factory, cache_dir=cache)
    assert factory.builds == 2
    # ...and so are other templates.
    load_vocabulary(classes_txt, factory, cache_dir=cache, templates=("a {}",))
    assert factory.builds == 3
    # A damaged cache entry is recomputed, not an error.
    for entry in cache.glob("*.vocab"):
        entry.write_bytes(b"broken")
    repaired = load_vocabulary(classes_txt, factory, cache_dir=cache)
    assert factory.builds == 4 and torch.equal(repaired.embeddings, first.embeddings)
    with pytest.raises(VocabularyError, match="no CLIP weights"):
        load_vocabulary(classes_txt, None, cache_dir=cache)


def test_samples() -> None:
    ytvis = read_classes(SAMPLES / "ytvis2019.txt")
    lvvis = read_classes(SAMPLES / "lvvis.txt")
    everyday = read_classes(SAMPLES / "everyday.txt")
    assert len(ytvis) == 40 and ytvis[0] == ("person",) and ytvis[-1] == ("tennis racket",)
    assert len(lvvis) == 1196 and lvvis[0] == ("accordion",) and lvvis[-1] == ("zucchini",)
    assert ("bat (animal)",) in lvvis
    assert ("dog", "puppy") in everyday and all(len(group) >= 1 for group in everyday)


def test_a_binary_file_given_as_a_text_vocabulary_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "model.txt"
    save_file({"w": torch.zeros(2)}, str(weights))  # decodes as UTF-8, but holds NUL bytes
    with pytest.raises(VocabularyError, match="contains control characters; is it a text file of class names"):
        read_classes(weights)

"""CLIP embedding cache: built with a tiny real CLIP, read back, official feature files, on-the-fly encoding.

Embeddings of the same pixels through the same tower agree to 2e-5 (tests/model/test_clip.py): only
the batch composition differs between a cache build and a direct call.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ovformer_core.errors import TrainingError
from ovformer_core.model.clip import ClipFrameEncoder
from ovformer_core.train.clip_cache import (
    ClipEmbeddingCache,
    OnTheFlyClipEmbeddings,
    build_clip_cache,
    encoder_fingerprint,
    read_rgb_frame,
)
from tests.clip_fixtures import tiny_clip

EMBED_ATOL = 2e-5
#: (H, W) of the synthetic frames: landscape, portrait, small.
FRAME_SIZES = [(60, 80), (90, 50), (40, 40), (64, 96), (50, 70)]


@pytest.fixture(scope="module")
def encoder() -> ClipFrameEncoder:
    return ClipFrameEncoder.from_clip(tiny_clip(0))


@pytest.fixture
def frames(tmp_path: Path) -> list[str]:
    """Five random frames as JPEG/PNG files in two 'video' folders; one is greyscale."""
    rng = np.random.default_rng(0)
    names = []
    for index, (height, width) in enumerate(FRAME_SIZES):
        folder = tmp_path / "JPEGImages" / f"{index // 3:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert("L") if index == 2 else Image.fromarray(pixels)
        path = folder / f"{index % 3:05d}.{'png' if index % 2 else 'jpg'}"
        image.save(path)
        names.append(str(path))
    return names


def _direct(encoder: ClipFrameEncoder, names: list[str]) -> torch.Tensor:
    return encoder([np.asarray(Image.open(name).convert("RGB")) for name in names])


def test_read_rgb_frame_converts_grey(frames: list[str]) -> None:
    grey = read_rgb_frame(frames[2])
    assert grey.shape == (40, 40, 3) and grey.dtype == np.uint8
    assert np.array_equal(grey[..., 0], grey[..., 2])
    with pytest.raises(TrainingError, match="does not exist"):
        read_rgb_frame(Path(frames[0]).parent / "nope.jpg")


def test_cache_round_trip_equals_direct_encoding(tmp_path: Path, frames: list[str], encoder: ClipFrameEncoder) -> None:
    path = tmp_path / "cache.safetensors"
    done: list[int] = []
    built = build_clip_cache(frames + frames[:2], encoder, path, batch_size=2, progress=done.append)
    assert done == [2, 4, 5]  # duplicates encoded once
    assert not list(tmp_path.glob("*.part"))
    direct = _direct(encoder, frames)
    assert direct.shape == (5, 512)
    opened = ClipEmbeddingCache.open(path, fingerprint=encoder_fingerprint(encoder))
    assert len(opened) == 5 and opened.embed_dim == 512
    clip = [frames[3], frames[0], frames[3]]
    for cache in (built, opened):
        looked_up = cache.lookup(clip)
        assert looked_up.shape == (3, 512) and looked_up.dtype == torch.float32
        torch.testing.assert_close(looked_up, direct[[3, 0, 3]], rtol=0, atol=EMBED_ATOL)
    assert torch.equal(opened.lookup(frames), built.lookup(frames))
    assert opened.lookup([]).shape == (0, 512)


def test_an_embedding_depends_on_its_frame_alone(tmp_path: Path, frames: list[str], encoder: ClipFrameEncoder) -> None:
    # A resumed run starts with an empty memo and so looks frames up in other company than the
    # uninterrupted run did; the embeddings must still be bit-identical (exact resume).
    alone = torch.cat([encoder([read_rgb_frame(name)]) for name in frames])
    together = OnTheFlyClipEmbeddings(encoder).lookup(frames)
    assert torch.equal(together, alone)
    resumed = OnTheFlyClipEmbeddings(encoder)
    resumed.lookup(frames[3:])  # other frames remembered first, then a mixed lookup
    assert torch.equal(resumed.lookup(frames), alone)
    cache = build_clip_cache(frames, encoder, tmp_path / "cache.safetensors", batch_size=3)
    assert torch.equal(cache.lookup(frames), alone)


def test_missing_frame_names_it(tmp_path: Path, frames: list[str], encoder: ClipFrameEncoder) -> None:
    cache = build_clip_cache(frames[:2], encoder, tmp_path / "cache.safetensors")
    with pytest.raises(TrainingError, match=r"no frame '.*00002\.jpg'; rebuild the cache") as info:
        cache.lookup([frames[0], frames[2].replace(".png", ".jpg")])
    assert "\n" not in str(info.value)


def test_unreadable_frame_leaves_no_file(tmp_path: Path, frames: list[str], encoder: ClipFrameEncoder) -> None:
    path = tmp_path / "out" / "cache.safetensors"
    Path(frames[1]).write_bytes(b"not an image")
    with pytest.raises(TrainingError, match="cannot read frame"):
        build_clip_cache(frames, encoder, path)
    assert not path.exists() and not list(path.parent.glob("*"))


def test_stale_cache_is_refused(tmp_path: Path, frames: list[str], encoder: ClipFrameEncoder) -> None:
    path = tmp_path / "cache.safetensors"
    build_clip_cache(frames[:1], encoder, path)
    other = ClipFrameEncoder.from_clip(tiny_clip(1))
    assert encoder_fingerprint(other) != encoder_fingerprint(encoder)
    # Precision and device do not change the identity of the weights.
    assert encoder_fingerprint(ClipFrameEncoder.from_clip(tiny_clip(0).half())) == encoder_fingerprint(encoder)
    with pytest.raises(TrainingError, match="other CLIP weights.*rebuild it"):
        ClipEmbeddingCache.open(path, fingerprint=encoder_fingerprint(other))


def test_corrupt_cache_files(tmp_path: Path, frames: list[str], encoder: ClipFrameEncoder) -> None:
    good = tmp_path / "good.safetensors"
    build_clip_cache(frames, encoder, good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 2)}, str(foreign))
    cases = {truncated: "cannot read", garbage: "cannot read", foreign: "not a CLIP embedding cache"}
    for path, message in cases.items():
        with pytest.raises(TrainingError, match=message) as info:
            ClipEmbeddingCache.open(path)
        assert "\n" not in str(info.value) and "rebuild" in str(info.value)
    with pytest.raises(TrainingError, match="does not exist"):
        ClipEmbeddingCache.open(tmp_path / "missing.safetensors")


def _official_features(keys: list[str | int]) -> dict[str | int, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    # As the official script saves them: one [1, 512] encode_image batch per frame, float16 on the GPU.
    return {key: torch.randn(1, 512, generator=generator).half() for key in keys}


def test_official_video_feature_file(tmp_path: Path) -> None:
    official_root = "datasets/LVVIS/train/JPEGImages/"
    frames = ["00000/00000.jpg", "00000/00001.jpg", "00001/00000.jpg"]
    features = _official_features([official_root + name for name in frames])
    path = tmp_path / "lvvis_train_clip_feature.pkl"
    torch.save(features, path)
    cache = ClipEmbeddingCache.open(path, fingerprint="anything")  # no fingerprint to check
    expected = torch.cat([features[official_root + frames[i]] for i in (2, 0)]).float()
    # The exact official key, a dataset-relative name, and the dataset moved to another root.
    assert torch.equal(cache.lookup([official_root + frames[2], official_root + frames[0]]), expected)
    assert torch.equal(cache.lookup(["train/JPEGImages/00001/00000.jpg", "00000/00000.jpg"]), expected)
    moved = "/data/sets/LVVIS/train/JPEGImages/"
    assert torch.equal(cache.lookup([moved + frames[2], moved + frames[0]]), expected)
    # Another split's frames never match, even though their tails look alike.
    with pytest.raises(TrainingError, match="no frame '/data/sets/LVVIS/val/JPEGImages/00000/00000.jpg'"):
        cache.lookup(["/data/sets/LVVIS/val/JPEGImages/00000/00000.jpg"])
    with pytest.raises(TrainingError, match="several entries"):
        cache.lookup(["00000.jpg"])


def test_official_image_feature_file(tmp_path: Path) -> None:
    # LVIS files are keyed by image id; the image is <id zero-padded to 12>.jpg. A plain pickle dump.
    features = _official_features([9, 123456])
    path = tmp_path / "lvis_train_clip_feature.pkl"
    with path.open("wb") as handle:
        pickle.dump(features, handle)
    cache = ClipEmbeddingCache.open(path)
    looked_up = cache.lookup(["/coco/train2017/000000123456.jpg", "/coco/train2017/000000000009.jpg"])
    assert torch.equal(looked_up, torch.cat([features[123456], features[9]]).float())
    with pytest.raises(TrainingError, match="no frame '/coco/train2017/000000000010.jpg'"):
        cache.lookup(["/coco/train2017/000000000010.jpg"])


def test_corrupt_official_file(tmp_path: Path) -> None:
    path = tmp_path / "broken_clip_feature.pkl"
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(TrainingError, match="cannot read CLIP feature file"):
        ClipEmbeddingCache.open(path)


def test_on_the_fly_encodes_once_and_forgets_oldest(frames: list[str], encoder: ClipFrameEncoder) -> None:
    direct = _direct(encoder, frames)
    source = OnTheFlyClipEmbeddings(encoder, max_frames=3)
    first = source.lookup([frames[0], frames[1], frames[0]])
    torch.testing.assert_close(first, direct[[0, 1, 0]], rtol=0, atol=EMBED_ATOL)
    assert source.num_encoded == 2
    source.lookup([frames[1], frames[0]])
    assert source.num_encoded == 2  # remembered
    source.lookup([frames[2], frames[3]])  # frame 1 is now the least recently used
    assert source.num_encoded == 4 and len(source) == 3
    source.lookup([frames[0]])
    assert source.num_encoded == 4
    again = source.lookup([frames[1]])
    assert source.num_encoded == 5
    torch.testing.assert_close(again, direct[[1]], rtol=0, atol=EMBED_ATOL)
    # One lookup larger than the memory still returns every frame.
    torch.testing.assert_close(source.lookup(frames), direct, rtol=0, atol=EMBED_ATOL)
    assert len(source) == 3

"""CLIP frame/text encoders: parity with open_clip's own preprocess + encode_image, weight formats.

Tolerances: preprocessing is bitwise equal to open_clip's PIL transform; embeddings of the same
pixels through the same tower agree to 2e-5 absolute (values ~1; only the batch composition differs,
which changes float summation order); the OpenAI-archive path is bitwise equal to
``open_clip.load_openai_model``.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ovformer_core.checkpoints import read_clip_state_dict
from ovformer_core.errors import CheckpointError
from ovformer_core.model.clip import (
    ClipArchitecture,
    ClipFrameEncoder,
    ClipFrameEncoderConfig,
    ClipTextEncoder,
    ClipTextEncoderFactory,
    build_clip,
    clip_preprocess,
    infer_clip_architecture,
    load_clip,
)
from tests.clip_fixtures import TINY_CLIP, save_openai_archive, save_safetensors, tiny_clip

EMBED_ATOL = 2e-5
#: Odd frame sizes (H, W): landscape, portrait, already 224, 1 px over, tiny.
SIZES = [(37, 101), (270, 480), (224, 224), (225, 300), (101, 37), (480, 270)]


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random but photo-like (smooth) uint8 RGB image: a coarse random grid upsampled bilinearly."""
    coarse = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def vit_b_32() -> tuple[open_clip.model.CLIP, object]:
    """A randomly initialised full-size ViT-B/32 and open_clip's own eval preprocess."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    return model.eval(), preprocess


def test_preprocess_is_bitwise_open_clip(vit_b_32: tuple) -> None:
    _, preprocess = vit_b_32
    rng = np.random.default_rng(0)
    cfg = ClipFrameEncoderConfig()
    for height, width in SIZES:
        frame = smooth_image(rng, height, width)
        ours = clip_preprocess(frame, cfg)
        theirs = preprocess(Image.fromarray(frame))
        assert ours.shape == (3, 224, 224)
        assert torch.equal(ours, theirs), (height, width)


def test_frame_encoder_matches_open_clip_encode_image(vit_b_32: tuple) -> None:
    model, preprocess = vit_b_32
    rng = np.random.default_rng(1)
    frames = [smooth_image(rng, h, w) for h, w in SIZES]
    encoder = ClipFrameEncoder.from_clip(model, ClipFrameEncoderConfig(batch_size=4))
    ours = encoder(frames)
    with torch.inference_mode():
        theirs = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in frames]))
    assert ours.shape == (len(SIZES), 512) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=0, atol=EMBED_ATOL)
    # Not normalised, as the official per-frame features.
    assert not torch.allclose(ours.norm(dim=-1), torch.ones(len(SIZES)), atol=1e-2)


def test_video_array_tensor_and_batch_size_agree() -> None:
    model = tiny_clip()
    rng = np.random.default_rng(2)
    video = np.stack([smooth_image(rng, 70, 100) for _ in range(5)])  # [T, H, W, 3]
    one_batch = ClipFrameEncoder.from_clip(model, ClipFrameEncoderConfig(batch_size=8))(video)
    small_batches = ClipFrameEncoder.from_clip(model, ClipFrameEncoderConfig(batch_size=2))(torch.from_numpy(video))
    assert one_batch.shape == (5, 512)
    torch.testing.assert_close(small_batches, one_batch, rtol=0, atol=EMBED_ATOL)
    # Each frame's embedding depends on its own pixels only.
    single = ClipFrameEncoder.from_clip(model)(video[3:4])
    torch.testing.assert_close(single[0], one_batch[3], rtol=0, atol=EMBED_ATOL)
    with pytest.raises(ValueError, match="uint8"):
        ClipFrameEncoder.from_clip(model)(video.astype(np.float32))


def test_text_encoder_batches_agree() -> None:
    model = tiny_clip()
    prompts = ["a photo of a dog.", "a photo of a cat.", "a blurry photo of a traffic light.", "zebra"]
    full = ClipTextEncoder(model, batch_size=256)(prompts)
    split = ClipTextEncoder(model, batch_size=3)(prompts)
    assert full.shape == (4, 512)
    torch.testing.assert_close(split, full, rtol=0, atol=1e-5)
    tokens = open_clip.get_tokenizer("ViT-B-32")(prompts)
    with torch.inference_mode():
        torch.testing.assert_close(full, model.encode_text(tokens), rtol=0, atol=1e-5)
    assert not torch.allclose(full[0], full[1])


def test_truncated_text_encoding_equals_encode_text_on_vit_b_32(vit_b_32: tuple) -> None:
    model, _ = vit_b_32
    prompts = ["a photo of a dog.", "a close-up photo of a peeler (tool for fruit and vegetables).", "car"]
    ours = ClipTextEncoder(model, batch_size=2)(prompts)
    with torch.inference_mode():
        theirs = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(prompts))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=EMBED_ATOL)


def test_openai_archive_loads_like_open_clip(tmp_path: Path) -> None:
    model = tiny_clip(seed=5)
    archive = save_openai_archive(model, tmp_path / "ViT-tiny.pt")
    ours = load_clip(archive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = open_clip.load_openai_model(str(archive), precision="fp32", device="cpu")
    state = read_clip_state_dict(archive)
    assert "input_resolution" not in state and all(v.dtype == torch.float32 for v in state.values())
    assert torch.equal(state["visual.conv1.weight"], model.visual.conv1.weight.half().float())
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a dog.", "a car"])
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(ours.encode_text(tokens), reference.encode_text(tokens))
        assert torch.equal(ours.encode_image(images), reference.encode_image(images))


def test_state_dict_files_load_exactly(tmp_path: Path) -> None:
    model = tiny_clip(seed=6)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "epoch_1.pt")  # an open_clip training checkpoint
    renamed = save_safetensors(model, tmp_path / "tiny.bin")  # safetensors recognised by content too
    for path in (save_safetensors(model, tmp_path / "tiny.safetensors"), tmp_path / "epoch_1.pt", renamed):
        loaded = load_clip(path)
        for name, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], value), name


def test_vit_b_32_is_the_default_architecture(vit_b_32: tuple) -> None:
    model, _ = vit_b_32
    reference = model.state_dict()
    assert infer_clip_architecture(reference) == ClipArchitecture()
    ours = build_clip(ClipArchitecture()).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.items()}
    assert infer_clip_architecture(tiny_clip().state_dict()) == TINY_CLIP


class _Evil:
    def __reduce__(self) -> tuple:
        return (shutil.rmtree, ("/nonexistent-ovformer-test",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_weight_files_are_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    evil = tmp_path / "evil.pt"
    torch.save({"visual.proj": _Evil()}, evil)
    plain_pickle = tmp_path / "plain.pt"
    plain_pickle.write_bytes(pickle.dumps({"a": 1}))
    state = {k: v.contiguous() for k, v in tiny_clip().state_dict().items()}
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("ln_final")}, str(partial))
    extra = tmp_path / "extra.safetensors"
    save_file({**state, "visual.extra": torch.zeros(1)}, str(extra))
    cases = {
        tmp_path / "missing.pt": "does not exist",
        garbage: "cannot read",
        evil: "refusing to load",
        plain_pickle: "cannot read",
        partial: "missing ln_final.weight",
        extra: "unexpected visual.extra",
    }
    for path, expected in cases.items():
        with pytest.raises(CheckpointError, match=expected) as info:
            load_clip(path)
        assert "\n" not in str(info.value), path


def test_shapes_that_would_build_a_huge_or_broken_model_are_refused_before_building(tmp_path: Path) -> None:
    # Before: a 16 KB file could ask for a 512 GB embedding table or a 160 GB text mask (allocation
    # failure or the OOM killer), and inconsistent shapes ended in IndexError / AssertionError tracebacks.
    state = {k: v.contiguous() for k, v in tiny_clip().state_dict().items()}
    cases = {
        "token_embedding.weight": (torch.zeros(2**31, 0), "token_embedding.weight has shape [2147483648, 0]"),
        "positional_embedding": (torch.zeros(200_000, 1), "text context of 200000 tokens"),
        "text_projection": (torch.zeros(64), "text_projection has shape [64]"),
        "visual.conv1.weight": (torch.zeros(129, 3, 32, 32), "embed_dim must be divisible by num_heads"),
        "visual.positional_embedding": (torch.zeros(51, 64), "patch embedding and image positions disagree"),
        "ln_final.weight": (torch.zeros(65), "other shapes for"),
    }
    for key, (value, needle) in cases.items():
        path = tmp_path / f"{key}.safetensors"
        save_file({**state, key: value}, str(path))
        with pytest.raises(CheckpointError) as info:
            load_clip(path)
        message = str(info.value)
        assert needle in message and str(path) in message and "\n" not in message, key


def test_factory_identity_follows_content(tmp_path: Path) -> None:
    first = save_safetensors(tiny_clip(seed=0), tmp_path / "a.safetensors")
    copy = tmp_path / "copy" / "a.safetensors"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    (tmp_path / "b").mkdir()
    other = save_safetensors(tiny_clip(seed=1), tmp_path / "b" / "a.safetensors")
    assert ClipTextEncoderFactory(first).identity == ClipTextEncoderFactory(copy).identity
    assert ClipTextEncoderFactory(first).identity != ClipTextEncoderFactory(other).identity
    assert ClipTextEncoderFactory(first).identity != ClipTextEncoderFactory(first, quick_gelu=False).identity
    encoder = ClipTextEncoderFactory(first)()
    assert encoder(["a dog"]).shape == (1, 512)
    preloaded = load_clip(first)
    reused = ClipTextEncoderFactory(first, preloaded=preloaded)
    assert reused.identity == ClipTextEncoderFactory(first).identity and reused().model is preloaded
    assert torch.equal(reused()(["a dog"]), encoder(["a dog"]))

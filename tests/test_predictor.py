"""The public predictor: release resolution, the per-window generator, and the official rule per config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ovformer_core import load_model
from ovformer_core.checkpoints import MODEL_RELEASES
from ovformer_core.config import r50_config
from ovformer_core.errors import OVFormerError, WeightsNotFoundError
from ovformer_core.io.results import VideoResult
from ovformer_core.predictor import SegmentProgress, segment_options_for
from tests.cli.conftest import weights  # noqa: F401
from tests.conftest import write_video
from tests.io.timed_videos import cut_copy, write_timed_video


def test_offline_release_says_which_file_to_put_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("swinb-lvvis", home=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "ovformer_swinb_lvvis.pth") in message
    assert MODEL_RELEASES["swinb-lvvis"].weights.url in message and "`weights`" in message
    # The CLIP file is missing too: both are named at once, not one run at a time.
    assert message.startswith("2 weight files are missing: ")
    assert str(tmp_path / "ViT-B-32.pt") in message and "`clip_weights`" in message


def test_unknown_model_and_device():
    with pytest.raises(OVFormerError, match="unknown model 'r101'; choose one of r50-lvvis"):
        load_model("r101")
    with pytest.raises(OVFormerError, match="unknown device"):
        load_model("r50-lvvis", device="tpu9")


def test_official_rule_follows_the_config():
    video = segment_options_for(r50_config(video=True))
    image = segment_options_for(r50_config(num_classes=1203, video=False)).updated(top_k=10)
    assert (video.mode, video.window, video.top_k, video.min_size) == ("semi-online", 5, 50, 360)
    assert (image.mode, image.window, image.top_k) == ("per-frame", 10, 10)
    assert video.updated(mode="offline", min_size=None) == video.updated(mode="offline")  # None keeps a field
    with pytest.raises(OVFormerError, match="^`window` must be at least 1 frame, not 0$"):
        video.updated(window=0)


def test_iter_segment_reports_each_window_then_the_result(tmp_path: Path, weights, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", home=tmp_path)
    video = tmp_path / "clip.mp4"
    write_video(video, num_frames=12, height=40, width=56)
    options = segment_options_for(predictor.cfg).updated(min_size=64, top_k=3)
    items = list(predictor.iter_segment(video, ["cat", "dog"], options=options))
    assert all(isinstance(item, SegmentProgress) for item in items)
    progress, result = items[:-1], items[-1].result
    assert [p.frames_done for p in progress] == [5, 10, 12] and all(p.result is None for p in progress)
    assert (items[-1].frames_done, items[-1].frames_total, items[-1].frames_total_exact) == (12, 12, True)
    assert isinstance(result, VideoResult) and result.num_frames == 12 and len(result.tracks) == 3
    # The file carries its own (tiny Swin video) config: the result names it, not the release asked for.
    assert result.model_id == "ovformer-swin-video:tiny.pt"
    assert all(
        t.query_slot is not None and 0 <= t.query_slot < predictor.cfg.decoder.num_queries for t in result.tracks
    )
    # Offline: the same windows are read, the network runs once on the whole video.
    offline = list(predictor.iter_segment(video, ["cat", "dog"], options=options.updated(mode="offline")))
    assert [p.frames_done for p in offline[:-1]] == [5, 10, 12]
    whole = offline[-1].result
    assert whole is not None and whole.num_frames == 12 and whole.metadata["mode"] == "offline"
    one_clip = predictor.segment(video, ["cat", "dog"], options=options.updated(window=12))
    # (the same network input; CLIP encodes the frames in other batches, so scores agree to float rounding)
    assert [(t.label, t.query_slot) for t in whole.tracks] == [(t.label, t.query_slot) for t in one_clip.tracks]
    assert [t.score for t in whole.tracks] == pytest.approx([t.score for t in one_clip.tracks], abs=1e-5)
    assert [t.track_id for t in result.tracks] == [1, 2, 3]
    assert np.all(np.diff([t.score for t in result.tracks]) <= 0)  # best first
    assert {t.category_name for t in result.tracks} <= {"cat", "dog"}
    assert result.tracks[0].mask(0).shape == (40, 56)


def test_segment_a_cut_phone_video(tmp_path: Path, weights, monkeypatch):  # noqa: F811
    """A portrait phone clip with uneven frame times, cut short: segmented as far as it decodes, upright,
    with its frame times and a report saying it is incomplete."""
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", home=tmp_path)
    times = [round(0.1 * i + (0.3 if i >= 6 else 0.0), 3) for i in range(16)]
    quarter_clockwise = [0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30]
    whole = tmp_path / "whole.mp4"
    write_timed_video(whole, times, height=40, width=56, display_matrix=quarter_clockwise, faststart=True, gop=4)
    cut = cut_copy(whole, tmp_path / "phone.mp4", 0.6)
    options = segment_options_for(predictor.cfg).updated(min_size=64, top_k=2)
    result = predictor.segment(cut, ["cat"], options=options)
    assert (result.width, result.height) == (40, 56)  # display orientation
    assert result.tracks[0].mask(0).shape == (56, 40)
    assert 0 < result.num_frames < len(times)
    assert result.frame_times == pytest.approx(times[: result.num_frames])
    assert result.frame_indices == list(range(result.num_frames))
    assert result.decode is not None and not result.decode.complete and result.decode.truncated
    assert (result.decode.frames_declared, result.decode.rotation) == (len(times), 90)


def test_a_vocabulary_of_other_clip_weights_is_refused(tmp_path: Path, weights, monkeypatch):  # noqa: F811
    import shutil

    from ovformer_core.errors import VocabularyError
    from ovformer_core.model.clip import ClipTextEncoderFactory
    from ovformer_core.vocab import load_vocabulary
    from tests.clip_fixtures import save_safetensors, tiny_clip

    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", home=tmp_path)
    other = load_vocabulary("cat,dog", ClipTextEncoderFactory(save_safetensors(tiny_clip(seed=3), tmp_path / "o.pt")))
    other.save(tmp_path / "other.vocab")
    for spec in (tmp_path / "other.vocab", other):  # a file, or the object itself
        with pytest.raises(VocabularyError) as err:
            predictor.vocabulary(spec)
        message = str(err.value)
        assert "\n" not in message and "was encoded with other CLIP weights (o.pt#" in message
        assert f"--clip-weights {weights['clip']}" in message
    # Renamed weights with the same content: the same text tower, so the same vocabulary space.
    renamed = Path(shutil.copy(weights["clip"], tmp_path / "renamed.safetensors"))
    same = load_vocabulary("cat,dog", ClipTextEncoderFactory(renamed))
    assert same.clip_model_id.startswith("renamed.safetensors#")
    same.save(tmp_path / "same.vocab")
    assert predictor.vocabulary(tmp_path / "same.vocab").names == ("cat", "dog")
    # Encoded here: always this tower.
    assert predictor.vocabulary("cat,dog").clip_model_id == predictor.text_encoder_factory.identity


def test_frames_in_memory_with_or_without_precomputed_embeddings(tmp_path: Path, weights, monkeypatch):  # noqa: F811
    """No file needed: frames in memory, and CLIP embeddings computed elsewhere, give the same result."""
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", home=tmp_path)
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (7, 40, 56, 3), dtype=np.uint8)
    options = segment_options_for(predictor.cfg).updated(min_size=64, top_k=3)
    items = list(predictor.iter_segment_frames(frames, ["cat", "dog"], options=options, fps=10.0, name="mem"))
    assert [item.frames_done for item in items] == [5, 7, 7] and items[-1].result is not None
    result = items[-1].result
    assert (result.video_name, result.num_frames, result.frame_size, result.fps) == ("mem", 7, (40, 56), 10.0)
    assert result.frame_indices == list(range(7)) and result.frame_times == pytest.approx([i / 10 for i in range(7)])
    embeds = torch.cat([predictor.frame_encoder(frames[:5]), predictor.frame_encoder(frames[5:])])
    given = list(predictor.iter_segment_frames(frames, ["cat", "dog"], clip_embeds=embeds, options=options))[-1].result
    assert given is not None
    assert [(t.label, t.score, t.segmentations) for t in given.tracks] == [
        (t.label, t.score, t.segmentations) for t in result.tracks
    ]
    with pytest.raises(
        OVFormerError, match=r"^`clip_embeds` must be \[7, D\], one embedding per frame, not \[6, 512\]$"
    ):
        next(predictor.iter_segment_frames(frames, ["cat"], clip_embeds=embeds[:6]))
    with pytest.raises(OVFormerError, match=r"^`frames` must be uint8 \[T, H, W, 3\] RGB"):
        next(predictor.iter_segment_frames(frames.astype(np.float32), ["cat"]))


@pytest.mark.parametrize(("precision", "expected"), [("fp32", ["clip", "network"] * 2), ("bf16", [])])
def test_fp32_encodes_frames_and_runs_the_network_without_tf32(
    tmp_path: Path,
    weights,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    precision: str,
    expected: list[str],
):
    """On a GPU ``ieee_float32`` switches TF32 off; here (CPU) it is watched: where, and only in fp32."""
    import contextlib

    import ovformer_core.inference.precision as precision_module
    import ovformer_core.predictor as predictor_module

    entered: list[str] = []

    def watched(where: str):  # a stand-in for ieee_float32 that notes where it was entered
        @contextlib.contextmanager
        def ieee_float32(device: torch.device):
            entered.append(where)
            yield

        return ieee_float32

    monkeypatch.setattr(predictor_module, "ieee_float32", watched("clip"))
    monkeypatch.setattr(precision_module, "ieee_float32", watched("network"))
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", home=tmp_path)
    frames = np.random.default_rng(5).integers(0, 256, (7, 40, 56, 3), dtype=np.uint8)
    options = segment_options_for(predictor.cfg).updated(min_size=64, top_k=3, precision=precision)
    list(predictor.iter_segment_frames(frames, ["cat", "dog"], options=options))
    assert entered == expected  # two windows: frames encoded, then the network, each time

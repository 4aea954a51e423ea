"""The public predictor: release resolution, the per-window generator, and the official rule per config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ovformer_core import load_model
from ovformer_core.checkpoints import MODEL_RELEASES
from ovformer_core.config import r50_config
from ovformer_core.errors import OVFormerError, WeightsNotFoundError
from ovformer_core.io.results import VideoResult
from ovformer_core.predictor import WindowDone, segment_options_for
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
    assert MODEL_RELEASES["swinb-lvvis"].weights.url in message and "--weights" in message


def test_unknown_model_and_device():
    with pytest.raises(OVFormerError, match="unknown model 'r101'; choose one of r50-lvvis"):
        load_model("r101")
    with pytest.raises(OVFormerError, match="unknown device"):
        load_model("r50-lvvis", device="tpu9")


def test_official_rule_follows_the_config():
    video = segment_options_for(r50_config(video=True))
    image = segment_options_for(r50_config(num_classes=1203, video=False), top_k=10)
    assert (video.mode, video.clip_length, video.top_k, video.min_size) == ("semi-online", 5, 50, 360)
    assert (image.mode, image.top_k) == ("per-frame", 10)


def test_iter_segment_reports_each_window_then_the_result(tmp_path: Path, weights, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    predictor = load_model("r50-lvvis", weights["model"], weights["clip"], device="cpu", home=tmp_path)
    video = tmp_path / "clip.mp4"
    write_video(video, num_frames=12, height=40, width=56)
    options = segment_options_for(predictor.cfg, min_size=64, top_k=3)
    items = list(predictor.iter_segment(video, ["cat", "dog"], options=options))
    progress, result = items[:-1], items[-1]
    assert [p.frames_done for p in progress] == [5, 10, 12] and all(isinstance(p, WindowDone) for p in progress)
    assert isinstance(result, VideoResult) and result.num_frames == 12 and len(result.tracks) == 3
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
    options = segment_options_for(predictor.cfg, min_size=64, top_k=2)
    result = predictor.segment(cut, ["cat"], options=options)
    assert (result.width, result.height) == (40, 56)  # display orientation
    assert result.tracks[0].mask(0).shape == (56, 40)
    assert 0 < result.num_frames < len(times)
    assert result.frame_times == pytest.approx(times[: result.num_frames])
    assert result.frame_indices == list(range(result.num_frames))
    assert result.decode is not None and not result.decode.complete and result.decode.truncated
    assert (result.decode.frames_declared, result.decode.rotation) == (len(times), 90)

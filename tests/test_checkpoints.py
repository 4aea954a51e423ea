"""Checkpoint loading: official key layouts of all four full configs, our format, and every wrong file."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from ovformer_core.checkpoints import (
    OFFICIAL_TEXT_CLASSIFIER_KEY,
    load_weights,
    official_to_ours,
    read_checkpoint,
    save_checkpoint,
)
from ovformer_core.config import ModelConfig, r50_config, swinb_config
from ovformer_core.errors import CheckpointError
from ovformer_core.model.build import build_model
from tests.reference_fixtures import VIDEO_TINY, read_manifest, tiny_config

FULL_CONFIGS = {
    "video_ovformer_R50": lambda: r50_config(num_classes=1196, video=True),
    "video_ovformer_SwinB": lambda: swinb_config(num_classes=1196, video=True),
    "ovformer_R50_lvis": lambda: r50_config(num_classes=1203, video=False),
    "ovformer_SwinB_lvis": lambda: swinb_config(num_classes=1203, video=False),
}


@pytest.mark.parametrize("name", sorted(FULL_CONFIGS))
def test_full_config_has_exactly_the_official_keys_and_shapes(name):
    cfg = FULL_CONFIGS[name]()
    ours = build_model(cfg).state_dict()
    official = read_manifest(name)
    mapped = {}
    dropped = []
    for key, (shape, dtype) in official.items():
        new = official_to_ours(key)
        if new is None:
            dropped.append(key)
        else:
            assert new not in mapped, f"two official keys map to {new}"
            mapped[new] = (shape, dtype)
    missing = sorted(set(ours) - set(mapped))
    unexpected = sorted(set(mapped) - set(ours))
    assert missing == [] and unexpected == []
    for key, tensor in ours.items():
        shape, dtype = mapped[key]
        assert list(tensor.shape) == shape, key
        assert str(tensor.dtype).removeprefix("torch.") == dtype, key
    # only documented non-weight entries are dropped
    for key in dropped:
        assert (
            key == OFFICIAL_TEXT_CLASSIFIER_KEY or key.startswith("criterion.") or key.endswith("num_batches_tracked")
        )
    assert official[OFFICIAL_TEXT_CLASSIFIER_KEY][0] == [512, cfg.num_classes + 1]


def test_tiny_checkpoint_loads_and_carries_its_text_classifier():
    cfg = tiny_config()
    model = build_model(cfg)
    loaded = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    assert loaded.source == "official"
    assert loaded.text_classifier is not None and loaded.text_classifier.shape == (512, 13)
    assert torch.all(loaded.text_classifier[:, -1] == 0)


def test_our_format_round_trip(tmp_path: Path):
    cfg = tiny_config()
    model = build_model(cfg)
    loaded = load_weights(model, cfg, VIDEO_TINY / "model.pth")
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, cfg, loaded.text_classifier, class_names=[f"c{i}" for i in range(12)])
    again = read_checkpoint(path)
    assert again.source == "ovformer" and again.config == cfg and again.class_names[3] == "c3"
    other = build_model(ModelConfig.from_dict(again.config.to_dict()))
    load_weights(other, again.config, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key])


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_swin_weights_into_resnet_model_name_the_backbone():
    cfg = r50_config(num_classes=12)
    with pytest.raises(CheckpointError) as err:
        load_weights(build_model(cfg), cfg, VIDEO_TINY / "model.pth")
    message = one_line(err)
    assert "Swin backbone weights but the model is ResNet-50" in message
    assert "backbone.layers.0.blocks.0" in message and "`model`='swinb-lvvis'" in message


def test_wrong_class_count_names_the_classifier_key():
    cfg = tiny_config()
    cfg = ModelConfig(**{**cfg.__dict__, "num_classes": 1196})
    with pytest.raises(CheckpointError) as err:
        load_weights(build_model(cfg), cfg, VIDEO_TINY / "model.pth")
    message = one_line(err)
    assert "trained with 12 classes" in message and OFFICIAL_TEXT_CLASSIFIER_KEY in message and "1196" in message


def test_shape_mismatch_lists_the_keys(tmp_path: Path):
    cfg = tiny_config()
    bigger = ModelConfig(
        **{**cfg.__dict__, "decoder": type(cfg.decoder)(**{**cfg.decoder.__dict__, "num_queries": 30})}
    )
    with pytest.raises(CheckpointError) as err:
        load_weights(build_model(bigger), bigger, VIDEO_TINY / "model.pth")
    message = one_line(err)
    assert "shape mismatch" in message and "decoder.query_feat.weight [20, 256] vs [30, 256]" in message


def test_missing_keys_are_listed(tmp_path: Path):
    state = torch.load(VIDEO_TINY / "model.pth", weights_only=True)["model"]
    del state["sem_seg_head.predictor.mask_embed.layers.0.weight"]
    path = tmp_path / "partial.pth"
    torch.save({"model": state}, path)
    cfg = tiny_config()
    with pytest.raises(CheckpointError) as err:
        load_weights(build_model(cfg), cfg, path)
    assert "1 missing (decoder.mask_head.layers.0.weight)" in one_line(err)


def test_truncated_file(tmp_path: Path):
    data = (VIDEO_TINY / "model.pth").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = one_line(err)
    assert "truncated or not a PyTorch file" in message and "re-download" in message


def test_a_saved_error_page(tmp_path: Path):
    """What a download cached before web pages were refused: torch would call '<' an unknown opcode."""
    path = tmp_path / "ovformer_r50_lvvis.pth"
    path.write_bytes(b"\n <!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = one_line(err)
    assert (
        f"cannot read checkpoint {path}: it is a web page (a failed download?)" in message and "re-download" in message
    )


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "nope.pth")
    assert "does not exist" in one_line(err)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickle_is_refused(tmp_path: Path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "refusing to load" in one_line(err)


def test_not_a_checkpoint(tmp_path: Path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "not an OVFormer checkpoint" in one_line(err)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        read_checkpoint(plain)

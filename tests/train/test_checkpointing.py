"""Initial weights (whole model, release name, ImageNet backbone), RNG states and the checkpoint files of a run."""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from ovformer_core.checkpoints import MODEL_RELEASES, load_weights, save_checkpoint
from ovformer_core.config import BackboneConfig, ModelConfig
from ovformer_core.errors import CheckpointError, TrainingError, WeightsNotFoundError
from ovformer_core.model.backbone import build_backbone
from ovformer_core.model.build import build_model
from ovformer_core.train.checkpointing import (
    LAST_CHECKPOINT,
    checkpoint_name,
    latest_checkpoint,
    load_backbone_weights,
    load_init_weights,
    read_train_state,
    record_checkpoint,
    restore_train_state,
    rng_states,
    save_train_checkpoint,
    set_rng_states,
)
from tests.reference_fixtures import VIDEO_TINY, tiny_config

OFFICIAL_TINY = VIDEO_TINY / "model.pth"


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def reference_weights() -> dict[str, Tensor]:
    """The official tiny checkpoint loaded by the inference path (``load_weights``)."""
    cfg = tiny_config(video=True)
    torch.manual_seed(0)
    model = build_model(cfg)
    load_weights(model, cfg, OFFICIAL_TINY)
    return model.state_dict()


def _tiny_model(num_classes: int, seed: int = 1, **changes: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(tiny_config(video=True), num_classes=num_classes, **changes))


def _assert_equal_weights(model: nn.Module, expected: dict[str, Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(expected)
    different = [k for k in got if not torch.equal(got[k], expected[k])]
    assert not different, different[:5]


def test_init_weights_ignore_the_text_classifier_of_the_file(reference_weights: dict[str, Tensor]) -> None:
    # The fixture was trained with 12 classes; an LV-VIS-style run with 3 classes starts from it.
    model = _tiny_model(num_classes=3)
    assert any(not torch.equal(v, reference_weights[k]) for k, v in model.state_dict().items())
    assert load_init_weights(model, str(OFFICIAL_TINY)) == OFFICIAL_TINY
    _assert_equal_weights(model, reference_weights)


def test_init_weights_from_an_ovformer_checkpoint(tmp_path: Path, reference_weights: dict[str, Tensor]) -> None:
    source = _tiny_model(num_classes=12)
    source.load_state_dict(reference_weights)
    path = tmp_path / "ours.pth"
    save_checkpoint(path, source, tiny_config(video=True), torch.zeros(512, 13), [f"c{i}" for i in range(12)])
    model = _tiny_model(num_classes=5, seed=2)
    load_init_weights(model, str(path))
    _assert_equal_weights(model, reference_weights)


def test_init_weights_of_another_backbone_list_the_keys() -> None:
    model = _tiny_model(num_classes=3, backbone=BackboneConfig(kind="resnet50"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_init_weights(model, str(OFFICIAL_TINY))
    message = _one_line(err)
    assert str(OFFICIAL_TINY) in message and "model.backbone" in message
    assert "missing backbone.base." in message and "unexpected backbone.layers." in message
    assert "more" in message  # long key lists are cut, with a count
    _assert_equal_weights(model, before)  # nothing was loaded


def test_init_weights_from_a_release_name_use_the_cache(tmp_path: Path, reference_weights: dict[str, Tensor]) -> None:
    home = tmp_path / "home"  # $OVFORMER_HOME of the autouse fixture; downloads are off
    home.mkdir(exist_ok=True)
    release = MODEL_RELEASES["r50-lvis"]
    cached = home / release.weights.filename
    assert cached.name == "ovformer_r50_lvis.pth"
    shutil.copyfile(OFFICIAL_TINY, cached)
    model = _tiny_model(num_classes=3)
    assert load_init_weights(model, "r50-lvis") == cached
    _assert_equal_weights(model, reference_weights)
    # An explicit cache folder wins over the environment.
    other = tmp_path / "other_home"
    other.mkdir()
    shutil.copyfile(OFFICIAL_TINY, other / release.weights.filename)
    assert load_init_weights(_tiny_model(num_classes=3), "r50-lvis", home=other) == other / release.weights.filename


def test_uncached_release_offline_says_where_to_put_it(tmp_path: Path) -> None:
    model = _tiny_model(num_classes=3)
    with pytest.raises(WeightsNotFoundError) as err:
        load_init_weights(model, "swinb-lvis")
    message = _one_line(err)
    assert str(tmp_path / "home" / MODEL_RELEASES["swinb-lvis"].weights.filename) in message
    assert "run.init_weights" in message


def test_init_weights_from_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_init_weights(_tiny_model(num_classes=3), str(tmp_path / "nope.pth"))
    assert "nope.pth" in _one_line(err)


@pytest.fixture(scope="module")
def r50_model() -> nn.Module:
    """A whole model with the ResNet-50 backbone and tiny heads."""
    torch.manual_seed(0)
    cfg: ModelConfig = dataclasses.replace(tiny_config(video=True), backbone=BackboneConfig(kind="resnet50"))
    return build_model(cfg)


@pytest.fixture(scope="module")
def timm_state() -> dict[str, Tensor]:
    """A timm ResNet-50 state dict (other weights than ``r50_model``), with the classifier head timm saves."""
    torch.manual_seed(123)
    other = build_backbone(BackboneConfig(kind="resnet50"))
    generator = torch.Generator().manual_seed(7)
    state = {k: torch.randn(v.shape, generator=generator) for k, v in other.base.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, 2048, generator=generator)
    state["fc.bias"] = torch.zeros(1000)
    state["bn1.num_batches_tracked"] = torch.tensor(5)
    return state


def _backbone_state(model: nn.Module) -> dict[str, Tensor]:
    return model.backbone.base.state_dict()  # type: ignore[union-attr]


def _check_loaded_exactly(model: nn.Module, state: dict[str, Tensor]) -> None:
    own = _backbone_state(model)
    assert own, "the backbone has no weights"
    different = [k for k, v in own.items() if not torch.equal(v, state[k])]
    assert not different, different[:5]


@pytest.mark.parametrize("layout", ["safetensors", "pth_state_dict", "pth_model", "pth_plain"])
def test_backbone_weights_load_exactly(tmp_path: Path, r50_model: nn.Module, timm_state: dict[str, Tensor],
                                       layout: str) -> None:  # fmt: skip
    if layout == "safetensors":
        path = tmp_path / "resnet50.safetensors"
        save_file(timm_state, str(path))
    else:
        path = tmp_path / "resnet50.pth"
        wrapped = {"pth_state_dict": {"state_dict": timm_state}, "pth_model": {"model": timm_state}}
        torch.save(wrapped.get(layout, timm_state), path)
    with torch.no_grad():  # the fixture is shared by the layouts: start each from other weights
        for value in _backbone_state(r50_model).values():
            value.zero_()
    heads_before = {k: v.clone() for k, v in r50_model.state_dict().items() if not k.startswith("backbone.")}
    count = load_backbone_weights(r50_model, path)
    assert count == len(_backbone_state(r50_model))  # fc.* and num_batches_tracked are not counted
    _check_loaded_exactly(r50_model, timm_state)
    # Only the backbone changes.
    heads_after = {k: v for k, v in r50_model.state_dict().items() if not k.startswith("backbone.")}
    assert all(torch.equal(heads_before[k], heads_after[k]) for k in heads_before)


def test_backbone_weights_with_missing_keys_list_them(tmp_path: Path, r50_model: nn.Module,
                                                      timm_state: dict[str, Tensor]) -> None:  # fmt: skip
    state = {k: v for k, v in timm_state.items() if not k.startswith("layer4.2.")}
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(r50_model, path)
    message = _one_line(err)
    assert "missing layer4.2." in message and str(path) in message


def test_backbone_weights_with_other_shapes_list_them(tmp_path: Path, r50_model: nn.Module,
                                                      timm_state: dict[str, Tensor]) -> None:  # fmt: skip
    state = dict(timm_state, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    path = tmp_path / "resnet18ish.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(r50_model, path)
    assert "other shapes for conv1.weight" in _one_line(err)


def test_backbone_weights_of_swin_do_not_fit_resnet(tmp_path: Path, r50_model: nn.Module) -> None:
    swin = build_model(tiny_config(video=True)).backbone
    path = tmp_path / "swin.safetensors"
    save_file({k: v.contiguous() for k, v in swin.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(r50_model, path)
    message = _one_line(err)
    assert "missing bn1.bias" in message and "more" in message


def test_backbone_weights_into_a_swin_model(tmp_path: Path) -> None:
    # Swin has no ``base``: the names are the backbone's own (Microsoft layout); the buffers of the
    # relative position index may be absent from a release file.
    source = _tiny_model(num_classes=3, seed=3).backbone
    state = {k: v.contiguous() for k, v in source.state_dict().items() if not k.endswith("relative_position_index")}
    state["head.weight"] = torch.zeros(10, 256)
    path = tmp_path / "swin.safetensors"
    save_file(state, str(path))
    model = _tiny_model(num_classes=3, seed=4)
    load_backbone_weights(model, path)
    own = model.backbone.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items())


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        (b"not a safetensors file", "cannot read backbone weights"),
        ({"state_dict": {"conv1.weight": torch.zeros(1), "step": 3}}, "not a state dict of tensors"),
    ],
)
def test_unreadable_backbone_weights(tmp_path: Path, r50_model: nn.Module, content: object, needle: str) -> None:
    if isinstance(content, dict):
        path = tmp_path / "bad.pth"
        torch.save(content, path)
    else:
        path = tmp_path / "bad.safetensors"
        if content is not None:
            path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(r50_model, path)
    message = _one_line(err)
    assert needle in message and str(path) in message


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(4)
    torch.manual_seed(4)
    path = tmp_path / "rng.pth"
    torch.save(rng_states(), path)
    expected = (torch.rand(5), random.random(), random.gauss(0, 1))
    torch.rand(100)
    random.random()
    set_rng_states(torch.load(path, weights_only=True))
    got = (torch.rand(5), random.random(), random.gauss(0, 1))
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_rng_states_of_more_gpus_than_the_resume_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run saved on 4 GPUs resumes on 2: the states of the GPUs present are restored, no error."""
    states = rng_states() | {"cuda": [torch.full((8,), i, dtype=torch.uint8) for i in range(4)]}
    restored: list[tuple[int, torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((device, state)))
    set_rng_states(states)
    assert [(device, int(state[0])) for device, state in restored] == [(0, 0), (1, 1)]


def _touch(folder: Path, iteration: int) -> Path:
    path = folder / checkpoint_name(iteration)
    path.write_bytes(b"checkpoint %d" % iteration)
    return path


def test_checkpoint_names_sort_by_iteration() -> None:
    assert checkpoint_name(1000) == "checkpoint_0001000.pth"
    names = [checkpoint_name(i) for i in (5, 40, 300, 2000, 442500)]
    assert sorted(names) == names


def test_record_keeps_the_newest_periodic_checkpoints(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    final = tmp_path / "model_final.pth"
    final.write_bytes(b"final")
    for iteration in (2, 4, 6, 8, 10):
        path = _touch(tmp_path, iteration)
        record_checkpoint(tmp_path, path, keep=3)
        assert latest_checkpoint(tmp_path) == path
        assert (tmp_path / LAST_CHECKPOINT).read_text().strip() == path.name
    kept = sorted(p.name for p in tmp_path.glob("checkpoint_*.pth"))
    assert kept == [checkpoint_name(i) for i in (6, 8, 10)]
    assert final.is_file()  # not a periodic checkpoint


def test_record_with_keep_one(tmp_path: Path) -> None:
    for iteration in (1, 2):
        record_checkpoint(tmp_path, _touch(tmp_path, iteration), keep=1)
    assert [p.name for p in tmp_path.glob("checkpoint_*.pth")] == [checkpoint_name(2)]
    assert latest_checkpoint(tmp_path) == tmp_path / checkpoint_name(2)


def test_pointer_to_a_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    (tmp_path / LAST_CHECKPOINT).write_text(checkpoint_name(7) + "\n")
    with pytest.raises(TrainingError) as err:
        latest_checkpoint(tmp_path)
    message = _one_line(err)
    assert checkpoint_name(7) in message and LAST_CHECKPOINT in message


@pytest.mark.parametrize("name", [b"../outside.pth", b"/etc/passwd", b"sub/../../x.pth", b"..", b"", b"\xff\xfe"])
def test_pointer_outside_the_run_folder_is_refused(tmp_path: Path, name: bytes) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "outside.pth").write_bytes(b"")  # a file the pointer could reach if it were followed
    (run / LAST_CHECKPOINT).write_bytes(name + b"\n")
    with pytest.raises(TrainingError) as err:
        latest_checkpoint(run)
    assert "does not name a checkpoint in" in _one_line(err)


def test_pointer_to_a_folder_or_a_link_loop_says_so(tmp_path: Path) -> None:
    (tmp_path / checkpoint_name(3)).mkdir()
    (tmp_path / checkpoint_name(4)).symlink_to(tmp_path / checkpoint_name(4))
    for iteration, needle in ((3, "which is a folder, not a file"), (4, "which is a symbolic link loop")):
        (tmp_path / LAST_CHECKPOINT).write_text(checkpoint_name(iteration) + "\n")
        with pytest.raises(TrainingError) as err:
            latest_checkpoint(tmp_path)
        assert needle in _one_line(err)


def test_damaged_training_state_is_one_line(tmp_path: Path) -> None:
    cfg = tiny_config(video=True)
    model = _tiny_model(num_classes=cfg.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    good = {
        "iteration": 6,
        "rng": rng_states(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
    }
    cases = {
        "no-rng": ({k: v for k, v in good.items() if k != "rng"}, "no 'rng' in its training state"),
        "bad-rng": ({**good, "rng": {"python": [3, [1, 2], None], "torch": torch.zeros(3)}}, "does not fit this run"),
        "bad-optimizer": ({**good, "optimizer": {"state": {}, "param_groups": []}}, "does not fit this run"),
        "bad-iteration": ({**good, "iteration": "6"}, "iteration '6'"),
    }
    for case, (state, needle) in cases.items():
        path = tmp_path / f"{case}.pth"
        save_train_checkpoint(path, model, cfg, state, torch.zeros(512, 13), ["a"] * 12)
        with pytest.raises(CheckpointError) as err:
            restore_train_state(path, model, optimizer, scheduler, scaler)
        assert needle in _one_line(err), case
    assert restore_train_state(_saved(tmp_path, model, cfg, good), model, optimizer, scheduler, scaler) == 6


def test_resume_with_loss_scaling_from_a_run_without_it(tmp_path: Path) -> None:
    """A CPU / bf16 / amp-off run saved an empty scaler state; an fp16 run (a GPU's) resumes from it."""
    cfg = tiny_config(video=True)
    model = _tiny_model(num_classes=cfg.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    saved = {
        "iteration": 6,
        "rng": rng_states(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
    }
    assert saved["scaler"] == {}
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    assert restore_train_state(_saved(tmp_path, model, cfg, saved), model, optimizer, scheduler, scaler) == 6
    assert scaler.get_scale() == 1024.0  # its own starting scale


def _saved(tmp_path: Path, model: nn.Module, cfg: ModelConfig, state: dict) -> Path:
    path = tmp_path / checkpoint_name(6)
    save_train_checkpoint(path, model, cfg, state, torch.zeros(512, 13), ["a"] * 12)
    return path


def test_train_state_round_trip_and_model_only_checkpoints(tmp_path: Path) -> None:
    cfg = tiny_config(video=True)
    model = _tiny_model(num_classes=cfg.num_classes)
    state = {"iteration": 6, "rng": rng_states(), "optimizer": {"lr": torch.tensor(0.5)}}
    resumable = tmp_path / checkpoint_name(6)
    save_train_checkpoint(resumable, model, cfg, state, torch.zeros(512, 13), ["a"] * 12)
    weights, got = read_train_state(resumable)
    assert got["iteration"] == 6 and torch.equal(got["optimizer"]["lr"], torch.tensor(0.5))
    assert set(weights) == set(model.state_dict())
    # A model-only checkpoint (e.g. model_final.pth or a release) cannot be resumed.
    model_only = tmp_path / "model_final.pth"
    save_checkpoint(model_only, model, cfg)
    with pytest.raises(CheckpointError) as err:
        read_train_state(model_only)
    message = _one_line(err)
    assert "holds no training state" in message and "run.init_weights" in message
    with pytest.raises(CheckpointError) as err:
        read_train_state(OFFICIAL_TINY)
    assert "holds no training state" in _one_line(err)

"""Training configs: the official recipes, overrides, and one-line errors for bad config files.

The expected numbers are those of the official configs/lvis/Base-COCO-InstanceSegmentation.yaml,
configs/lvis/ovformer_*_bs8.yaml, configs/lvvis/Base-LVVIS-VideoInstanceSegmentation.yaml and
configs/lvvis/video_ovformer_*_bs8.yaml.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ovformer_core.errors import OVFormerError, TrainingError
from ovformer_core.train.config import (
    RECIPES,
    TrainConfig,
    check_train_config,
    config_from_overrides,
    load_train_config,
    recipe,
)

IMAGE_RECIPES = ("r50-lvis", "swinb-lvis")
VIDEO_RECIPES = ("r50-lvvis", "swinb-lvvis")


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_has_the_shared_solver_values(name: str) -> None:
    cfg = recipe(name)
    assert cfg.run.batch_size == 8  # SOLVER.IMS_PER_BATCH
    assert cfg.run.amp is True  # SOLVER.AMP.ENABLED
    assert cfg.optim.lr == 1e-4  # SOLVER.BASE_LR
    assert cfg.optim.weight_decay == 0.05  # SOLVER.WEIGHT_DECAY
    assert cfg.optim.backbone_multiplier == 0.1  # SOLVER.BACKBONE_MULTIPLIER
    assert cfg.optim.clip_grad_norm == 0.01  # CLIP_GRADIENTS.CLIP_VALUE (full_model, L2)
    assert cfg.optim.warmup_iters == 10 and cfg.optim.warmup_factor == 1.0
    assert cfg.optim.gamma == 0.1
    assert cfg.loss.object_weight == 2.0 and cfg.loss.class_weight == 2.0
    assert cfg.loss.mask_weight == 5.0 and cfg.loss.dice_weight == 5.0
    assert cfg.loss.num_points == 12544  # TRAIN_NUM_POINTS
    assert cfg.model.pixel_mean == pytest.approx((123.675, 116.280, 103.530))
    assert cfg.model.pixel_std == pytest.approx((58.395, 57.120, 57.375))
    assert cfg.model.decoder.num_queries == 100 and cfg.model.decoder.num_layers == 9  # DEC_LAYERS 10 - 1


@pytest.mark.parametrize("name", IMAGE_RECIPES)
def test_image_recipes_are_the_lvis_recipe(name: str) -> None:
    cfg = recipe(name)
    assert cfg.optim.max_iter == 442500
    assert cfg.optim.steps == (398250, 420375)
    assert cfg.run.checkpoint_period == 20000 and cfg.run.eval_period == 20000
    assert cfg.model.num_classes == 1203
    assert cfg.model.decoder.temporal_position is False  # image OVFormer: 2-D position encoding
    assert cfg.data.num_frames == 1
    assert cfg.data.repeat_threshold == 0.001  # RepeatFactorTrainingSampler, REPEAT_THRESHOLD
    assert cfg.data.filter_empty is True
    assert cfg.data.num_workers == 8
    lsj = cfg.data.image_augment
    assert (lsj.image_size, lsj.min_scale, lsj.max_scale) == (1024, 0.1, 2.0)
    assert cfg.run.init_weights == ""  # the LVIS recipe starts from ImageNet backbone weights


@pytest.mark.parametrize("name", VIDEO_RECIPES)
def test_video_recipes_are_the_lvvis_recipe(name: str) -> None:
    cfg = recipe(name)
    assert cfg.optim.max_iter == 2000
    assert cfg.optim.steps == (1000,)
    assert cfg.run.checkpoint_period == 1000 and cfg.run.eval_period == 0
    assert cfg.model.num_classes == 1196
    assert cfg.model.decoder.temporal_position is True
    assert cfg.data.num_frames == 2 and cfg.data.frame_range == 20  # SAMPLING_FRAME_NUM / _RANGE
    assert cfg.data.repeat_threshold == 0.0  # the default TrainingSampler
    assert cfg.data.filter_empty is False
    assert cfg.data.num_workers == 4
    assert cfg.data.video_augment.min_sizes == (360, 480)  # MIN_SIZE_TRAIN, choice_by_clip
    assert cfg.data.video_augment.max_size == 1333


@pytest.mark.parametrize(
    ("name", "kind", "init_weights", "min_size_test"),
    [
        ("r50-lvis", "resnet50", "", 360),
        ("swinb-lvis", "swin", "", 480),
        ("r50-lvvis", "resnet50", "r50-lvis", 360),
        ("swinb-lvvis", "swin", "swinb-lvis", 480),
    ],
)
def test_backbone_and_initial_weights_of_each_recipe(name: str, kind: str, init_weights: str, min_size_test: int):
    cfg = recipe(name)
    assert cfg.model.backbone.kind == kind
    assert cfg.run.init_weights == init_weights  # MODEL.WEIGHTS of video_ovformer_*_bs8.yaml
    assert cfg.model.inference.min_size_test == min_size_test
    if kind == "swin":
        swin = cfg.model.backbone.swin
        assert (swin.embed_dim, swin.depths, swin.num_heads, swin.window_size) == (
            128,
            (2, 2, 18, 2),
            (4, 8, 16, 32),
            12,
        )
        assert swin.drop_path_rate == 0.3


def test_unknown_recipe_is_one_line_listing_the_recipes() -> None:
    with pytest.raises(TrainingError) as err:
        recipe("r101-lvvis")
    message = _one_line(err)
    assert "r101-lvvis" in message and all(name in message for name in RECIPES)


def test_recipes_are_independent_objects() -> None:
    # A frozen config is shared safely, but each call must still describe the same recipe.
    assert recipe("r50-lvvis") == recipe("r50-lvvis")
    assert recipe("r50-lvvis") != recipe("swinb-lvvis")


@pytest.mark.parametrize("name", RECIPES)
def test_to_dict_from_dict_round_trip(name: str) -> None:
    cfg = recipe(name)
    data = json.loads(json.dumps(cfg.to_dict()))  # through JSON: tuples become lists
    assert TrainConfig.from_dict(data) == cfg
    assert config_from_overrides({"recipe": name, **data}) == cfg


def test_overrides_merge_nested_values_and_keep_the_rest() -> None:
    cfg = config_from_overrides(
        {
            "recipe": "swinb-lvvis",
            "model": {"backbone": {"swin": {"window_size": 7}}, "num_classes": 3},
            "optim": {"max_iter": 10, "steps": [5]},
            "data": {"train_json": "a.json", "video_augment": {"min_sizes": [64]}},
            "run": {"output_dir": "runs/x"},
        }
    )
    base = recipe("swinb-lvvis")
    assert cfg.model.backbone.swin.window_size == 7
    assert cfg.model.backbone.swin.depths == base.model.backbone.swin.depths  # sibling kept
    assert cfg.model.backbone.kind == "swin" and cfg.model.num_classes == 3
    assert cfg.optim.max_iter == 10 and cfg.optim.steps == (5,)
    assert cfg.optim.lr == base.optim.lr
    assert cfg.data.train_json == "a.json" and cfg.data.video_augment.min_sizes == (64,)
    assert cfg.data.video_augment.max_size == base.data.video_augment.max_size
    assert cfg.data.frame_range == 20
    assert cfg.run.output_dir == "runs/x" and cfg.run.init_weights == "swinb-lvis"
    assert dataclasses.replace(cfg, model=base.model, optim=base.optim, data=base.data, run=base.run) == base


def test_default_recipe_is_r50_lvvis() -> None:
    assert config_from_overrides({}) == recipe("r50-lvvis")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"optim": {"learning_rate": 1e-3}}, "learning_rate"),
        ({"run": {"batchsize": 4}}, "batchsize"),
        ({"model": {"backbone": {"swin": {"window": 7}}}}, "window"),
        ({"trainer": {}}, "trainer"),
    ],
)
def test_unknown_keys_are_rejected_by_name(overrides: dict, key: str) -> None:
    with pytest.raises(OVFormerError) as err:
        config_from_overrides({"recipe": "r50-lvvis", **overrides})
    assert key in _one_line(err)


@pytest.mark.parametrize("value", [["r50-lvvis"], 3, None])
def test_recipe_must_be_a_name(value: object) -> None:
    with pytest.raises(TrainingError) as err:
        config_from_overrides({"recipe": value})
    assert "recipe" in _one_line(err)


def test_bad_values_are_one_line_training_errors() -> None:
    with pytest.raises(TrainingError) as err:
        config_from_overrides({"optim": {"lr": 0}})
    assert "learning rate" in _one_line(err)
    with pytest.raises(TrainingError) as err:
        config_from_overrides({"data": {"video_augment": {"min_sizes": []}}})
    assert "min_sizes" in _one_line(err)


def _valid(**sections: dict) -> TrainConfig:
    overrides: dict = {"data": {"train_json": "train.json", "train_root": "frames"}}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return config_from_overrides(overrides)


def test_check_accepts_a_complete_config() -> None:
    check_train_config(_valid())
    check_train_config(_valid(run={"batch_size": 8, "micro_batch_size": 4}))
    check_train_config(_valid(data={"val_json": "val.json", "val_root": "val"}))


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"run": {"batch_size": 8, "micro_batch_size": 3}}, "run.micro_batch_size"),
        ({"run": {"batch_size": 0}}, "run.batch_size"),
        ({"run": {"checkpoint_period": 0}}, "run.checkpoint_period"),
        ({"data": {"num_frames": 0}}, "data.num_frames"),
        ({"data": {"train_json": ""}}, "data.train_json"),
        ({"data": {"train_root": ""}}, "data.train_root"),
        ({"data": {"val_json": "val.json"}}, "data.val_root"),
        ({"data": {"val_root": "val"}}, "data.val_json"),
    ],
)
def test_check_names_the_field_to_fix(sections: dict, needle: str) -> None:
    cfg = _valid(**sections)
    with pytest.raises(TrainingError) as err:
        check_train_config(cfg)
    assert needle in _one_line(err)


def test_load_reads_and_checks_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(
        json.dumps({"recipe": "r50-lvis", "data": {"train_json": "t.json", "train_root": "r"}, "run": {"seed": 7}})
    )
    cfg = load_train_config(path)
    assert cfg.run.seed == 7 and cfg.data.train_json == "t.json"
    assert cfg.model.num_classes == 1203 and cfg.optim.max_iter == 442500  # the named recipe's defaults


def test_load_missing_file_points_at_print_config(tmp_path: Path) -> None:
    with pytest.raises(TrainingError) as err:
        load_train_config(tmp_path / "nope.json")
    message = _one_line(err)
    # The library names the function; the CLI shows `ovformer train --print-config` (tests/cli/test_train_cmd.py).
    assert "nope.json" in message and "`recipe()`" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"recipe": "r50-lvvis",', "not valid JSON"),
        ("", "is empty"),
        ("[1, 2]", "JSON object"),
        ('"r50-lvvis"', "JSON object"),
    ],
)
def test_load_rejects_malformed_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(TrainingError) as err:
        load_train_config(path)
    message = _one_line(err)
    assert needle in message and str(path) in message


def test_load_rejects_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TrainingError) as err:
        load_train_config(path)
    assert "not UTF-8" in _one_line(err)


def test_load_rejects_unknown_keys_and_unchecked_values(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"data": {"train_json": "t.json", "train_root": "r", "frames": 3}}))
    with pytest.raises(OVFormerError) as err:
        load_train_config(path)
    assert "frames" in _one_line(err)
    path.write_text(json.dumps({"data": {"train_json": "t.json"}}))  # parses, but check_train_config fails
    with pytest.raises(TrainingError) as err:
        load_train_config(path)
    assert "data.train_root" in _one_line(err)


def test_whole_numbers_are_accepted_for_float_fields() -> None:
    cfg = config_from_overrides({"optim": {"lr": 1, "clip_grad_norm": 0}, "data": {"repeat_threshold": 0}})
    assert cfg.optim.lr == 1 and cfg.optim.clip_grad_norm == 0 and cfg.data.repeat_threshold == 0


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"optim": {"max_iter": 1.5}}, "max_iter"),  # today: accepted, and the run does 2 iterations
        ({"run": {"output_dir": 2024}}, "output_dir"),  # today: TypeError traceback when the run starts
        ({"run": {"seed": "abc"}}, "seed"),  # today: ValueError traceback when the run starts
        ({"run": {"batch_size": "8"}}, "batch_size"),  # today: TypeError traceback in check_train_config
    ],
)
def test_values_of_the_wrong_type_are_rejected_by_name(overrides: dict, key: str) -> None:
    base = {"data": {"train_json": "t.json", "train_root": "r"}}
    merged = {**base, **{k: {**base.get(k, {}), **v} for k, v in overrides.items()}}
    with pytest.raises(OVFormerError) as err:
        check_train_config(config_from_overrides(merged))
    assert key in _one_line(err)

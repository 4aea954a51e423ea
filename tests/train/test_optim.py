"""Optimiser groups on the real (tiny) model, the warm-up multi-step schedule, gradient clipping."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from ovformer_core.errors import TrainingError
from ovformer_core.model.build import build_model
from ovformer_core.train.optim import (
    OptimConfig,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    lr_factor,
    lvis_image_recipe,
    lvvis_video_recipe,
    param_groups,
)
from tests.reference_fixtures import tiny_config


@pytest.fixture(scope="module")
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_config())


def _hyper_params(groups: list[dict]) -> dict[str, tuple[float, float]]:
    """Parameter name -> (lr, weight decay), checking each appears once."""
    table: dict[str, tuple[float, float]] = {}
    for group in groups:
        assert len(group["params"]) == len(group["param_names"])
        for name in group["param_names"]:
            assert name not in table
            table[name] = (group["lr"], group["weight_decay"])
    return table


def test_param_groups_on_tiny_model(tiny_model: nn.Module) -> None:
    cfg = OptimConfig()
    groups = param_groups(tiny_model, cfg)
    table = _hyper_params(groups)
    trainable = {name for name, p in tiny_model.named_parameters() if p.requires_grad}
    assert set(table) == trainable
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    assert len({id(p) for g in groups for p in g["params"]}) == len(trainable)

    backbone_lr, lr, decay = 1e-4 * 0.1, 1e-4, 0.05
    expected = {
        # backbone: lr x 0.1; its LayerNorms and Swin position tables without decay
        "backbone.patch_embed.proj.weight": (backbone_lr, decay),
        "backbone.patch_embed.norm.weight": (backbone_lr, 0.0),
        "backbone.layers.0.blocks.0.attn.relative_position_bias_table": (backbone_lr, 0.0),
        "backbone.layers.3.blocks.0.mlp.fc2.bias": (backbone_lr, decay),
        "backbone.norm3.bias": (backbone_lr, 0.0),
        # pixel decoder: level_embed is a plain nn.Parameter (as officially) and keeps its decay
        "pixel_decoder.level_embed": (lr, decay),
        "pixel_decoder.input_proj.0.1.weight": (lr, 0.0),  # GroupNorm
        "pixel_decoder.lateral_convs.0.norm.bias": (lr, 0.0),  # GroupNorm inside conv+norm
        "pixel_decoder.lateral_convs.0.weight": (lr, decay),
        # decoder: nn.Embedding tables without decay
        "decoder.query_feat.weight": (lr, 0.0),
        "decoder.query_pos.weight": (lr, 0.0),
        "decoder.level_embed.weight": (lr, 0.0),
        "decoder.layers.0.ffn.norm.weight": (lr, 0.0),
        "decoder.layers.0.ffn.linear1.weight": (lr, decay),
        "decoder.layers.0.cross_attn.attn.in_proj_weight": (lr, decay),
        "decoder.classifier.proj.2.weight": (lr, decay),
    }
    for name, values in expected.items():
        assert table[name] == pytest.approx(values), name
    # The rule, checked on every parameter.
    modules = dict(tiny_model.named_modules())
    norms = (nn.LayerNorm, nn.GroupNorm)
    for name, (group_lr, group_decay) in table.items():
        module_name, _, param_name = name.rpartition(".")
        module = modules[module_name]
        no_decay = isinstance(module, norms + (nn.Embedding,)) or param_name == "relative_position_bias_table"
        assert group_lr == pytest.approx(backbone_lr if name.startswith("backbone.") else lr), name
        assert group_decay == (0.0 if no_decay else decay), name


def test_param_groups_skip_frozen_and_shared() -> None:
    shared = nn.Linear(4, 4)
    model = nn.ModuleDict(
        {"backbone": nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), "head": shared, "tied": shared}
    )
    model["backbone"][0].weight.requires_grad_(False)
    table = _hyper_params(param_groups(model, OptimConfig(lr=1.0)))
    assert table == {
        "backbone.0.bias": (0.1, 0.05),
        "backbone.1.weight": (0.1, 0.0),
        "backbone.1.bias": (0.1, 0.0),
        "head.weight": (1.0, 0.05),
        "head.bias": (1.0, 0.05),
    }


def test_build_optimizer(tiny_model: nn.Module) -> None:
    optimizer = build_optimizer(tiny_model, OptimConfig())
    assert isinstance(optimizer, torch.optim.AdamW)
    settings = sorted((round(g["lr"], 12), g["weight_decay"]) for g in optimizer.param_groups)
    assert settings == [(1e-5, 0.0), (1e-5, 0.05), (1e-4, 0.0), (1e-4, 0.05)]
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(TrainingError, match="no trainable"):
        build_optimizer(frozen, OptimConfig())


def _two_group_optimizer(cfg: OptimConfig) -> torch.optim.Optimizer:
    model = nn.ModuleDict({"backbone": nn.Linear(2, 2), "head": nn.Linear(2, 2)})
    return build_optimizer(model, cfg)


def _lrs(cfg: OptimConfig, iterations: int) -> list[list[float]]:
    optimizer = _two_group_optimizer(cfg)
    scheduler = build_scheduler(optimizer, cfg)
    seen = []
    for _ in range(iterations):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_schedule_with_warmup_and_steps() -> None:
    cfg = OptimConfig(lr=1.0, max_iter=12, steps=(5, 8), warmup_iters=4, warmup_factor=0.2)
    expected = [
        0.2,  # iteration 0: warmup_factor
        0.2 * 0.75 + 0.25,
        0.2 * 0.5 + 0.5,
        0.2 * 0.25 + 0.75,
        1.0,  # warm-up over
        0.1,  # first step at 5
        0.1,
        0.1,
        0.01,  # second step at 8
        0.01,
    ]
    lrs = _lrs(cfg, len(expected))
    for iteration, (backbone_lr, head_lr) in enumerate(lrs):
        assert head_lr == pytest.approx(expected[iteration]), iteration
        assert backbone_lr == pytest.approx(0.1 * expected[iteration]), iteration
        assert lr_factor(iteration, cfg) == pytest.approx(expected[iteration])


def test_official_schedules() -> None:
    video = lvvis_video_recipe()
    assert (video.max_iter, video.steps, video.lr, video.weight_decay) == (2000, (1000,), 1e-4, 0.05)
    assert [lr_factor(i, video) for i in (0, 5, 9, 10, 999)] == [1.0] * 5  # warmup_factor 1: no warm-up
    assert lr_factor(1000, video) == pytest.approx(0.1)
    assert lr_factor(1999, video) == pytest.approx(0.1)
    image = lvis_image_recipe()
    assert (image.max_iter, image.steps) == (442500, (398250, 420375))
    assert lr_factor(398249, image) == 1.0
    assert lr_factor(398250, image) == pytest.approx(0.1)
    assert lr_factor(420374, image) == pytest.approx(0.1)
    assert lr_factor(420375, image) == pytest.approx(0.01)


def test_scheduler_state_reloads_safely() -> None:
    cfg = OptimConfig(lr=1.0, max_iter=10, steps=(3,), warmup_iters=2, warmup_factor=0.5)
    optimizer = _two_group_optimizer(cfg)
    scheduler = build_scheduler(optimizer, cfg)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed_optimizer = _two_group_optimizer(cfg)
    resumed = build_scheduler(resumed_optimizer, cfg)
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    assert [g["lr"] for g in resumed_optimizer.param_groups] == pytest.approx([0.01, 0.1])


def test_config_rejects_bad_values() -> None:
    with pytest.raises(TrainingError, match="increasing"):
        OptimConfig(steps=(10, 5))
    with pytest.raises(TrainingError, match="learning rate"):
        OptimConfig(lr=0.0)


def _model_with_grads(scale: float) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Linear(4, 3))
    for param in model.parameters():
        param.grad = torch.randn_like(param) * scale
    model[0].bias.grad = None  # parameters without gradients are ignored
    return model


def _total_norm(model: nn.Module) -> float:
    grads = [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
    return float(torch.cat(grads).norm())


def test_clip_gradients_scales_total_norm() -> None:
    model = _model_with_grads(1.0)
    before = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    norm_before = _total_norm(model)
    returned = clip_gradients(model, 0.01)
    assert float(returned) == pytest.approx(norm_before, rel=1e-6)
    assert _total_norm(model) == pytest.approx(0.01, rel=1e-4)
    after = [p.grad for p in model.parameters() if p.grad is not None]
    for old, new in zip(before, after, strict=True):
        torch.testing.assert_close(new, old * (0.01 / norm_before), rtol=1e-4, atol=1e-9)


def test_clip_gradients_leaves_small_or_disabled() -> None:
    small = _model_with_grads(1e-6)
    norm = _total_norm(small)
    assert norm < 0.01
    clip_gradients(small, 0.01)
    assert _total_norm(small) == pytest.approx(norm, rel=1e-6)
    large = _model_with_grads(1.0)
    norm = _total_norm(large)
    assert float(clip_gradients(large, 0.0)) == pytest.approx(norm, rel=1e-6)
    assert _total_norm(large) == pytest.approx(norm, rel=1e-6)

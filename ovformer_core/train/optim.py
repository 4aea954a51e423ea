"""Optimiser, learning-rate schedule and gradient clipping of the official recipes.

Facts from the official ``train_net_video.py`` (``build_optimizer``, Mask2Former's) and the SOLVER
sections of ``configs/lvis/Base-COCO-InstanceSegmentation.yaml`` and
``configs/lvvis/Base-LVVIS-VideoInstanceSegmentation.yaml``:

- AdamW (torch defaults for betas/eps), base lr 1e-4, weight decay 0.05.
- Parameters of modules whose name contains ``backbone`` train at lr x 0.1.
- No weight decay for the parameters of normalisation layers and ``nn.Embedding`` s, nor for Swin's
  ``relative_position_bias_table`` / ``absolute_pos_embed``.
- Full-model gradient clipping: L2 norm of all gradients clipped to 0.01.
- detectron2 ``WarmupMultiStepLR``: linear warm-up over 10 iterations from ``warmup_factor`` (1.0 in
  both recipes, so in practice no warm-up), then x0.1 at each of ``steps``; stepped per iteration.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ovformer_core.errors import TrainingError

#: Module types whose parameters get ``weight_decay_norm`` (detectron2/Mask2Former's list;
#: NaiveSyncBatchNorm and FrozenBatchNorm-free models need nothing more).
NORM_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
#: Parameter names (the parameter's own name, not its module path) that get no weight decay:
#: Swin's position tables (Mask2Former build_optimizer).
NO_DECAY_PARAM_NAMES = ("relative_position_bias_table", "absolute_pos_embed")
#: Substring of a module path that marks the backbone (Mask2Former build_optimizer).
BACKBONE_MODULE_KEY = "backbone"

#: Images/clips per iteration summed over GPUs in both official recipes (SOLVER.IMS_PER_BATCH).
OFFICIAL_IMS_PER_BATCH = 8
#: Both official recipes train with automatic mixed precision (SOLVER.AMP.ENABLED).
OFFICIAL_AMP = True


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule. Defaults: the LV-VIS video recipe (Base-LVVIS-VideoInstanceSegmentation.yaml)."""

    lr: float = 1e-4  # SOLVER.BASE_LR
    weight_decay: float = 0.05  # SOLVER.WEIGHT_DECAY
    weight_decay_norm: float = 0.0  # SOLVER.WEIGHT_DECAY_NORM (Mask2Former default)
    weight_decay_embed: float = 0.0  # SOLVER.WEIGHT_DECAY_EMBED (Mask2Former default)
    backbone_multiplier: float = 0.1  # SOLVER.BACKBONE_MULTIPLIER
    clip_grad_norm: float = 0.01  # SOLVER.CLIP_GRADIENTS: full_model, CLIP_VALUE 0.01, NORM_TYPE 2.0; <= 0 disables
    max_iter: int = 2000  # SOLVER.MAX_ITER (LV-VIS)
    steps: tuple[int, ...] = (1000,)  # SOLVER.STEPS (LV-VIS)
    gamma: float = 0.1  # SOLVER.GAMMA (detectron2 default)
    warmup_iters: int = 10  # SOLVER.WARMUP_ITERS
    warmup_factor: float = 1.0  # SOLVER.WARMUP_FACTOR

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise TrainingError(f"learning rate must be > 0, got {self.lr}; the official value is 1e-4")
        if self.max_iter <= 0:
            raise TrainingError(f"max_iter must be >= 1, got {self.max_iter}")
        if list(self.steps) != sorted(self.steps) or any(step <= 0 for step in self.steps):
            raise TrainingError(f"lr steps must be positive and increasing, got {list(self.steps)}")
        if self.warmup_iters < 0:
            raise TrainingError(f"warmup_iters must be >= 0, got {self.warmup_iters}")
        if min(self.weight_decay, self.weight_decay_norm, self.weight_decay_embed, self.backbone_multiplier) < 0:
            raise TrainingError("weight decays and the backbone lr multiplier must be >= 0")


def lvvis_video_recipe() -> OptimConfig:
    """The LV-VIS video recipe (Base-LVVIS-VideoInstanceSegmentation.yaml): 2000 iterations, x0.1 at 1000."""
    return OptimConfig(max_iter=2000, steps=(1000,))


def lvis_image_recipe() -> OptimConfig:
    """The LVIS image recipe (lvis/Base-COCO-InstanceSegmentation.yaml): 442500 iterations, x0.1 at 398250, 420375."""
    return OptimConfig(max_iter=442500, steps=(398250, 420375))


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Split the trainable parameters into AdamW groups by learning rate and weight decay.

    Each trainable parameter appears exactly once (shared parameters are counted at their first
    module); frozen ones (``requires_grad=False``) are left out. Parameters with equal
    hyper-parameters share a group (the official code makes one group per parameter: same
    update, many more optimiser kernels). Groups come in order of first appearance, so the order
    is the same on every run and an optimiser state dict reloads onto the same model.

    Returns:
        ``[{"params": [...], "param_names": [...], "lr": float, "weight_decay": float}, ...]``.
    """
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr = cfg.lr * cfg.backbone_multiplier if BACKBONE_MODULE_KEY in module_name else cfg.lr
            weight_decay = cfg.weight_decay
            # Same precedence as the official code: later rules win.
            if any(key in param_name for key in NO_DECAY_PARAM_NAMES):
                weight_decay = 0.0
            if isinstance(module, NORM_MODULE_TYPES):
                weight_decay = cfg.weight_decay_norm
            if isinstance(module, nn.Embedding):
                weight_decay = cfg.weight_decay_embed
            group = groups.setdefault(
                (lr, weight_decay), {"params": [], "param_names": [], "lr": lr, "weight_decay": weight_decay}
            )
            group["params"].append(param)
            group["param_names"].append(f"{module_name}.{param_name}" if module_name else param_name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups(model, cfg)``.

    Raises:
        TrainingError: the model has no trainable parameter.
    """
    groups = param_groups(model, cfg)
    if not groups:
        raise TrainingError("the model has no trainable parameters; unfreeze at least one module")
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(iteration: int, cfg: OptimConfig) -> float:
    """Multiplier of every group's base lr at ``iteration`` (detectron2 WarmupMultiStepLR, linear warm-up).

    ``gamma ** (number of steps <= iteration)``, times ``warmup_factor * (1 - a) + a`` with
    ``a = iteration / warmup_iters`` while ``iteration < warmup_iters``.
    """
    decay = cfg.gamma ** bisect.bisect_right(cfg.steps, iteration)
    if iteration >= cfg.warmup_iters:
        return decay
    alpha = iteration / cfg.warmup_iters
    return decay * (cfg.warmup_factor * (1.0 - alpha) + alpha)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule: after ``scheduler.step()`` has run k times, lr = base lr x ``lr_factor(k)``.

    Call ``scheduler.step()`` once after every ``optimizer.step()``. The scheduler's state dict holds
    only the iteration count (the schedule itself comes from ``cfg``), so it saves and reloads with
    ``torch.load(weights_only=True)``.
    """
    # A partial, not a config-holding object: LambdaLR would put such an object's fields in its state dict.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, cfg=cfg))


def clip_gradients(model: nn.Module | Iterable[Tensor], max_norm: float) -> Tensor:
    """Clip the L2 norm of all gradients together to ``max_norm`` (the official "full_model" clipping).

    With mixed precision, unscale the gradients first (``GradScaler.unscale_(optimizer)``).

    Args:
        model: the model, or its parameters; parameters without a gradient are ignored.
        max_norm: the largest allowed total norm (0.01 officially); <= 0 measures without clipping.

    Returns:
        The total gradient norm before clipping, a 0-d tensor on the gradients' device.
    """
    params = model.parameters() if isinstance(model, nn.Module) else model
    with_grad = [param for param in params if param.grad is not None]
    if not with_grad:
        return torch.zeros(())
    limit = max_norm if max_norm > 0 else float("inf")
    return torch.nn.utils.clip_grad_norm_(with_grad, limit, norm_type=2.0)

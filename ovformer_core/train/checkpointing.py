"""Training checkpoints (model + everything needed to continue exactly) and initial weights.

A training checkpoint is an ordinary ovformer model checkpoint (``ovformer segment --weights`` reads
it) with one more entry, ``train_state``: the iteration, optimiser, scheduler and gradient-scaler
states, the RNG states and the training config. Everything in it loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ovformer_core.checkpoints import (
    MAX_KEYS_IN_MESSAGE,
    MODEL_RELEASES,
    read_checkpoint,
    save_checkpoint,
)
from ovformer_core.config import ModelConfig
from ovformer_core.errors import CheckpointError, TrainingError, first_line
from ovformer_core.io.atomic import write_text_atomic
from ovformer_core.io.tensor_files import path_problem, read_state_dict, read_tensor_file
from ovformer_core.weights import resolve

#: File in the output folder naming the newest complete checkpoint.
LAST_CHECKPOINT = "last_checkpoint"
FINAL_MODEL = "model_final.pth"
TRAIN_STATE_KEY = "train_state"
#: Longest ``last_checkpoint`` pointer read (it holds one file name).
MAX_POINTER_BYTES = 4096
_EARLIER = "resume from an earlier checkpoint (edit last_checkpoint) or start a new run"


def checkpoint_name(iteration: int) -> str:
    """``checkpoint_0001000.pth`` for iteration 1000 (sorts by iteration)."""
    return f"checkpoint_{iteration:07d}.pth"


def save_train_checkpoint(
    path: Path,
    model: nn.Module,
    model_cfg: ModelConfig,
    train_state: dict[str, Any],
    text_classifier: Tensor,
    class_names: list[str],
) -> None:
    """Write a resumable checkpoint atomically (see the module docstring)."""
    save_checkpoint(path, model, model_cfg, text_classifier, class_names, extra={TRAIN_STATE_KEY: train_state})


def rng_states() -> dict[str, Any]:
    """Python and torch RNG states (tensors and plain numbers, so ``weights_only`` loads them)."""
    version, state, gauss = random.getstate()
    states: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of ``rng_states``."""
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        # One state per GPU the saving process saw; a resume may see fewer (set_rng_state_all would fail).
        for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)


def read_train_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Model weights and the training state of a checkpoint written by ``save_train_checkpoint``.

    Raises:
        CheckpointError: unreadable, or a model-only checkpoint (nothing to resume).
    """
    data = read_tensor_file(path, "checkpoint", _EARLIER)
    if not isinstance(data, dict) or TRAIN_STATE_KEY not in data or "model" not in data:
        raise CheckpointError(
            f"{path} holds no training state (it is a model-only checkpoint); "
            "start a new run with run.init_weights pointing at it instead of resuming"
        )
    weights, state = data["model"], data[TRAIN_STATE_KEY]
    if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
        raise CheckpointError(f"{path} is damaged (its model entry is not a dict of tensors); {_EARLIER}")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is damaged (its training state is not a dict); {_EARLIER}")
    return weights, state


def restore_train_state(
    path: Path, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler, scaler: torch.amp.GradScaler
) -> int:
    """Load a training checkpoint into the run's objects; returns the iteration to continue from.

    Raises:
        CheckpointError: unreadable, model-only, or a state that does not fit this run (one line).
    """
    weights, state = read_train_state(path)
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # a run without fp16 loss scaling (CPU, bf16, amp off) saved an empty state
            scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        iteration = state["iteration"]
    except KeyError as err:
        raise CheckpointError(f"{path} is damaged (no {err} in its training state); {_EARLIER}") from None
    except (TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        raise CheckpointError(f"{path} does not fit this run ({first_line(err)}); {_EARLIER}") from None
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
        raise CheckpointError(f"{path} is damaged (iteration {iteration!r}); {_EARLIER}")
    return iteration


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint named in ``output_dir/last_checkpoint``, or None when there is none.

    Raises:
        TrainingError: the pointer is not a plain file name inside ``output_dir`` or names no file.
    """
    pointer = output_dir / LAST_CHECKPOINT
    if not pointer.is_file():
        return None
    with pointer.open("rb") as handle:
        raw = handle.read(MAX_POINTER_BYTES + 1)
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = ""
    # A plain name only: the pointer must not lead the run to read a file outside its folder.
    if len(raw) > MAX_POINTER_BYTES or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise TrainingError(f"{pointer} does not name a checkpoint in {output_dir}; delete it to start over")
    path = output_dir / name
    problem = path_problem(path)
    if problem is not None:
        raise TrainingError(f"{pointer} names {path.name}, which {problem}; delete {pointer} to start over")
    return path


def record_checkpoint(output_dir: Path, path: Path, keep: int) -> None:
    """Point ``last_checkpoint`` at ``path`` and delete all but the newest ``keep`` periodic checkpoints."""
    write_text_atomic(output_dir / LAST_CHECKPOINT, path.name + "\n")
    periodic = sorted(output_dir.glob("checkpoint_*.pth"))
    for old in periodic[: max(len(periodic) - keep, 0)]:
        if old != path:
            old.unlink(missing_ok=True)


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
    more = len(keys) - MAX_KEYS_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def load_init_weights(model: nn.Module, spec: str, home: str | os.PathLike[str] | None = None) -> Path:
    """Start from a whole-model checkpoint: a path (official or ovformer format) or a release name.

    The text classifier in the file (its training vocabulary) is not used, so an LVIS model can start
    an LV-VIS run (MODEL.WEIGHTS of the official video recipes).

    Raises:
        CheckpointError: unreadable, or keys/shapes that do not fit (listed).
    """
    if spec in MODEL_RELEASES:
        path = resolve(MODEL_RELEASES[spec].weights, home=home, parameter="run.init_weights")
    else:
        path = Path(spec)
    checkpoint = read_checkpoint(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(checkpoint.state_dict))
    unexpected = sorted(set(checkpoint.state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(checkpoint.state_dict) if own[k].shape != checkpoint.state_dict[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected {_describe(unexpected)}")
        if wrong:
            parts.append(f"other shapes for {_describe(wrong)}")
        raise CheckpointError(
            f"initial weights {path} do not fit the configured model ({'; '.join(parts)}); "
            "check model.backbone in the config"
        )
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return path


def load_backbone_weights(model: nn.Module, path: str | os.PathLike[str]) -> int:
    """Load ImageNet backbone weights (timm ResNet-50 or Microsoft Swin names) into ``model.backbone``.

    Classifier heads and other entries the backbone lacks are ignored; every backbone parameter must
    be present with its shape.

    Returns:
        The number of tensors loaded.

    Raises:
        CheckpointError: unreadable file, or missing / mis-shaped backbone entries (listed).
    """
    path = Path(path)
    state = read_state_dict(path, "backbone weights", "check run.backbone_weights or re-download them")
    backbone: nn.Module = model.backbone  # type: ignore[assignment]
    target: nn.Module = getattr(backbone, "base", backbone)
    own = target.state_dict()
    wanted = {k: v for k, v in state.items() if k in own}
    missing = sorted(k for k in own if k not in wanted and not k.endswith("relative_position_index"))
    wrong = sorted(k for k, v in wanted.items() if v.shape != own[k].shape)
    if missing or wrong:
        detail = f"missing {_describe(missing)}" if missing else f"other shapes for {_describe(wrong)}"
        raise CheckpointError(
            f"backbone weights {path} do not fit model.backbone ({detail}); use weights of the configured backbone"
        )
    target.load_state_dict(wanted, strict=False)
    return len(wanted)

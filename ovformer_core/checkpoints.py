"""Checkpoint loading and saving. The only module that knows the official (detectron2, OpenAI CLIP) key names.

Every file is read by ``io.tensor_files`` (weights only; TorchScript archives never run).

Official checkpoints are ``{"model": state_dict}`` files written by detectron2. Our module tree
differs from the official one only by a handful of prefixes (``KEY_RENAMES``); inside those the
leaf names are the same. Entries that are not network weights are handled as follows:

- ``sem_seg_head.predictor.class_embed.zs_weight`` (``[512, C + 1]``): the text classifier of the
  training vocabulary. Our network takes the text classifier as an input, so it is returned next to
  the weights (``LoadedCheckpoint.text_classifier``) instead of being loaded into a module.
- ``criterion.*``: loss-only buffers; ignored.
- ``backbone.**.num_batches_tracked``: frozen-BN counters written by newer detectron2; ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ovformer_core.config import LVIS_NUM_CLASSES, LVVIS_NUM_CLASSES, ModelConfig, r50_config, swinb_config
from ovformer_core.errors import CheckpointError
from ovformer_core.io.atomic import atomic_path
from ovformer_core.io.tensor_files import read_state_dict, read_tensor_file
from ovformer_core.weights import WeightFile

OFFICIAL_TEXT_CLASSIFIER_KEY = "sem_seg_head.predictor.class_embed.zs_weight"
#: State-dict entries of OpenAI's CLIP archives that are settings, not weights (clip/model.py build_model).
OPENAI_CLIP_NON_WEIGHTS = ("input_resolution", "context_length", "vocab_size")
#: Marker and version of our own checkpoint format.
FORMAT_KEY = "ovformer_checkpoint"
FORMAT_VERSION = 1
#: At most this many key names are quoted in an error line.
MAX_KEYS_IN_MESSAGE = 4

_Rename = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def _rule(pattern: str, replacement: str | Callable[[re.Match[str]], str]) -> _Rename:
    return re.compile(pattern), replacement


#: Official prefix -> our prefix, first match wins.
KEY_RENAMES: tuple[_Rename, ...] = (
    _rule(r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.", "pixel_decoder.encoder_layers."),
    _rule(r"^sem_seg_head\.pixel_decoder\.transformer\.level_embed$", "pixel_decoder.level_embed"),
    _rule(r"^sem_seg_head\.pixel_decoder\.adapter_(\d+)\.", lambda m: f"pixel_decoder.lateral_convs.{int(m[1]) - 1}."),
    _rule(r"^sem_seg_head\.pixel_decoder\.layer_(\d+)\.", lambda m: f"pixel_decoder.output_convs.{int(m[1]) - 1}."),
    _rule(r"^sem_seg_head\.pixel_decoder\.", "pixel_decoder."),
    _rule(
        r"^sem_seg_head\.predictor\.transformer_cross_attention_layers\.(\d+)\.multihead_attn\.",
        r"decoder.layers.\1.cross_attn.attn.",
    ),
    _rule(r"^sem_seg_head\.predictor\.transformer_cross_attention_layers\.(\d+)\.", r"decoder.layers.\1.cross_attn."),
    _rule(
        r"^sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.",
        r"decoder.layers.\1.self_attn.attn.",
    ),
    _rule(r"^sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\.", r"decoder.layers.\1.self_attn."),
    _rule(r"^sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\.", r"decoder.layers.\1.ffn."),
    _rule(r"^sem_seg_head\.predictor\.decoder_norm\.", "decoder.query_norm."),
    _rule(r"^sem_seg_head\.predictor\.query_embed\.", "decoder.query_pos."),
    _rule(r"^sem_seg_head\.predictor\.class_embed\.linear\.", "decoder.classifier.proj."),
    _rule(
        r"^sem_seg_head\.predictor\.class_embed\.cross_attention\.multihead_attn\.",
        "decoder.classifier.cross_attn.attn.",
    ),
    _rule(r"^sem_seg_head\.predictor\.class_embed\.cross_attention\.", "decoder.classifier.cross_attn."),
    _rule(r"^sem_seg_head\.predictor\.object_embed\.", "decoder.object_head."),
    _rule(r"^sem_seg_head\.predictor\.mask_embed\.", "decoder.mask_head."),
    _rule(r"^sem_seg_head\.predictor\.", "decoder."),  # query_feat, level_embed, input_proj
    _rule(r"^backbone\.", "backbone."),
)


#: State-dict suffix that official ResNet checkpoints may carry under ``backbone.`` and that we drop.
#: detectron2's FrozenBatchNorm2d gained a persistent ``num_batches_tracked`` int64 scalar in May 2023
#: (53 in an R50 checkpoint); older checkpoints lack it. It never affects a frozen BN, so our frozen BN
#: (torchvision's, via timm) has no such entry and silently discards it when loading.
DROPPED_BACKBONE_KEY_SUFFIX = "num_batches_tracked"


def is_dropped_backbone_key(name: str) -> bool:
    """True for a backbone state-dict entry that is ignored on load (a frozen BN's batch counter).

    Args:
        name: Key relative to the backbone (``base.bn1.num_batches_tracked``) or with the official
            ``backbone.`` prefix; either form works.
    """
    return name.endswith("." + DROPPED_BACKBONE_KEY_SUFFIX)


def official_to_ours(name: str) -> str | None:
    """Our state-dict name for an official one; None for entries that are not network weights."""
    if name == OFFICIAL_TEXT_CLASSIFIER_KEY or name.startswith("criterion."):
        return None
    if name.startswith("backbone.") and is_dropped_backbone_key(name):
        return None
    for pattern, replacement in KEY_RENAMES:
        if pattern.match(name):
            return pattern.sub(replacement, name, count=1)
    return None if name in ("pixel_mean", "pixel_std") else name


@dataclass
class LoadedCheckpoint:
    """Weights in our layout plus what else the file carried.

    Attributes:
        state_dict: our module names -> tensors.
        text_classifier: ``[512, C + 1]`` of the training vocabulary, if the file has one.
        config: the model config stored in our format; None for official files.
        class_names: names of the text classifier's classes, if stored.
        source: "official" or "ovformer".
    """

    state_dict: dict[str, Tensor]
    text_classifier: Tensor | None
    config: ModelConfig | None
    class_names: list[str] | None
    source: str


def read_checkpoint_file(path: Path) -> Any:
    """The raw object in a checkpoint file, read safely (``io.tensor_files``); one-line errors."""
    return read_tensor_file(path, "checkpoint", "re-download it or pass a file saved by ovformer")


def read_clip_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """CLIP weights in OpenAI's layout from any tensor file, widened to float32.

    Accepts OpenAI's TorchScript ``ViT-B-32.pt`` (read as tensors only, never run), a state dict in
    safetensors or ``torch.save`` format, and an open_clip training checkpoint
    (``{"state_dict": {"module.…": …}}``, unwrapped). OpenAI's settings entries
    (``OPENAI_CLIP_NON_WEIGHTS``) are dropped.

    Returns:
        OpenAI-layout names -> float32 tensors (OpenAI archives store float16; integer entries kept).

    Raises:
        CheckpointError: missing, corrupt or hostile file, or not a dict of tensors.
    """
    hint = "use OpenAI's ViT-B-32.pt or a CLIP state dict in safetensors format"
    state = read_state_dict(path, "CLIP weights", hint)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return {
        key: value.float() if value.is_floating_point() else value
        for key, value in state.items()
        if key not in OPENAI_CLIP_NON_WEIGHTS
    }


def read_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Read an official detectron2 ``.pth`` or an ovformer checkpoint with ``weights_only=True``."""
    path = Path(path)
    data = read_checkpoint_file(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not an OVFormer checkpoint (a {type(data).__name__}, not a dict of weights)")
    if data.get(FORMAT_KEY) is not None:
        if data[FORMAT_KEY] != FORMAT_VERSION:
            raise CheckpointError(f"{path} has ovformer format {data[FORMAT_KEY]}; this version reads {FORMAT_VERSION}")
        try:
            config = ModelConfig.from_dict(data["config"])
            state = data["model"]
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{path} is an incomplete ovformer checkpoint (missing {err}); re-save it") from None
        return LoadedCheckpoint(
            state_dict=dict(state),
            text_classifier=data.get("text_classifier"),
            config=config,
            class_names=data.get("class_names"),
            source="ovformer",
        )
    state = data.get("model")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} is not an OVFormer checkpoint (no 'model' dict of tensors); "
            "pass an official OVFormer .pth or a checkpoint saved by ovformer"
        )
    ours: dict[str, Tensor] = {}
    for name, value in state.items():
        new_name = official_to_ours(name)
        if new_name is not None:
            ours[new_name] = value
    return LoadedCheckpoint(
        state_dict=ours,
        text_classifier=state.get(OFFICIAL_TEXT_CLASSIFIER_KEY),
        config=None,
        class_names=None,
        source="official",
    )


def _quote(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > MAX_KEYS_IN_MESSAGE else "")


def _backbone_kind(keys: set[str]) -> str | None:
    if any(k.startswith("backbone.base.") for k in keys):
        return "resnet50"
    if any(k.startswith("backbone.patch_embed.") for k in keys):
        return "swin"
    return None


def check_fits(checkpoint: LoadedCheckpoint, model: nn.Module, cfg: ModelConfig, path: str | os.PathLike[str]) -> None:
    """Raise a one-line ``CheckpointError`` naming the offending keys if the weights do not fit."""
    expected = model.state_dict()
    got = checkpoint.state_dict
    kind = _backbone_kind(set(got))
    if kind is not None and kind != cfg.backbone.kind:
        names = {"resnet50": "ResNet-50", "swin": "Swin"}
        offending = sorted(k for k in got if k.startswith("backbone."))
        suggestion = "swinb-lvvis" if kind == "swin" else "r50-lvvis"
        raise CheckpointError(
            f"{path} holds {names[kind]} backbone weights but the model is {names[cfg.backbone.kind]} "
            f"(keys {_quote(offending)}); choose the matching model (e.g. `model`='{suggestion}')"
        )
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_quote(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_quote(unexpected)})")
        raise CheckpointError(f"{path} does not fit the model: {'; '.join(parts)}; check `model` / the config")
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(got[k].shape)]
    if wrong:
        details = ", ".join(
            f"{k} {list(got[k].shape)} vs {list(expected[k].shape)}" for k in wrong[:MAX_KEYS_IN_MESSAGE]
        )
        raise CheckpointError(
            f"{path} does not fit the model: {len(wrong)} shape mismatches (checkpoint vs model: {details}); "
            "check `model` / the config"
        )
    classifier = checkpoint.text_classifier
    if classifier is not None and classifier.shape != (cfg.classifier.clip_dim, cfg.num_classes + 1):
        raise CheckpointError(
            f"{path} was trained with {classifier.shape[-1] - 1} classes ({OFFICIAL_TEXT_CLASSIFIER_KEY} "
            f"{list(classifier.shape)}) but the config expects {cfg.num_classes}; "
            f"use the config of that checkpoint (LV-VIS: {LVVIS_NUM_CLASSES}, LVIS: {LVIS_NUM_CLASSES})"
        )


def load_weights(model: nn.Module, cfg: ModelConfig, path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Read ``path``, check it fits ``model`` and load it strictly. Returns what was read."""
    checkpoint = read_checkpoint(path)
    check_fits(checkpoint, model, cfg, path)
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return checkpoint


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    cfg: ModelConfig,
    text_classifier: Tensor | None = None,
    class_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write our checkpoint format atomically (loadable with ``weights_only=True``).

    ``extra`` adds entries (tensors, numbers, strings, lists, dicts), e.g. a training state; readers of
    the model ignore them.
    """
    payload: dict[str, Any] = {
        FORMAT_KEY: FORMAT_VERSION,
        "config": cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if text_classifier is not None:
        payload["text_classifier"] = text_classifier.detach().cpu()
    if class_names is not None:
        payload["class_names"] = list(class_names)
    if extra:
        payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass(frozen=True)
class ModelRelease:
    """An officially released OVFormer checkpoint.

    Attributes:
        name: the ``--model`` value.
        config: the official config it was trained with.
        weights: where to get it. The official files have no published checksum: a download is
            verified by loading it against the expected keys and shapes (``check_fits``).
        description: one line for ``--help`` and messages.
    """

    name: str
    config: ModelConfig
    weights: WeightFile
    description: str


def _google_drive(file_id: str, name: str, filename: str) -> WeightFile:
    url = f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"
    return WeightFile(name=name, filename=filename, url=url)


#: The four checkpoints of the official README (Google Drive file ids from its tables).
MODEL_RELEASES: dict[str, ModelRelease] = {
    "r50-lvvis": ModelRelease(
        "r50-lvvis",
        r50_config(num_classes=LVVIS_NUM_CLASSES, video=True),
        _google_drive("1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S", "OVFormer R-50 (LV-VIS)", "ovformer_r50_lvvis.pth"),
        "ResNet-50, video-trained on LV-VIS (21.9 mAP LV-VIS val); semi-online clips of 5 frames",
    ),
    "swinb-lvvis": ModelRelease(
        "swinb-lvvis",
        swinb_config(num_classes=LVVIS_NUM_CLASSES, video=True),
        _google_drive("107BNsu9eTr5e70B4oj28jgHKBjYTWNWp", "OVFormer Swin-B (LV-VIS)", "ovformer_swinb_lvvis.pth"),
        "Swin-B, video-trained on LV-VIS (24.7 mAP LV-VIS val); semi-online clips of 5 frames",
    ),
    "r50-lvis": ModelRelease(
        "r50-lvis",
        r50_config(num_classes=LVIS_NUM_CLASSES, video=False),
        _google_drive("1-tMcjp8xIYr9E5r5JYOESGajXtMAs33y", "OVFormer R-50 (LVIS)", "ovformer_r50_lvis.pth"),
        "ResNet-50, image-trained on LVIS (34.8 mAP YTVIS19 zero-shot); per-frame with memory association",
    ),
    "swinb-lvis": ModelRelease(
        "swinb-lvis",
        swinb_config(num_classes=LVIS_NUM_CLASSES, video=False),
        _google_drive("102qxZlu05yXILfghhrwjxv-tL3MlcYu7", "OVFormer Swin-B (LVIS)", "ovformer_swinb_lvis.pth"),
        "Swin-B, image-trained on LVIS (44.3 mAP YTVIS19 zero-shot); per-frame with memory association",
    ),
}

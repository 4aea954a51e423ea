"""Tiny random CLIP models and weight files in the real formats (no download, fast on CPU).

The tiny model has the OpenAI ViT layout of ViT-B/32 (patch 32, 224 px, 77 tokens, the full BPE
vocabulary, 512-d embeddings) but one 64-wide block per tower, so it loads in milliseconds and runs
through exactly the code paths of the real weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from open_clip.model import CLIP
from safetensors.torch import save_file
from torch import nn

from ovformer_core.model.clip import ClipArchitecture, build_clip

TINY_CLIP = ClipArchitecture(vision_width=64, vision_layers=1, text_width=64, text_layers=1)


def tiny_clip(seed: int = 0) -> CLIP:
    """A randomly initialised tiny CLIP (float32, eval)."""
    torch.manual_seed(seed)
    return build_clip(TINY_CLIP)


def save_safetensors(model: CLIP, path: Path) -> Path:
    """The model's state dict as safetensors (an open_clip-layout weight file)."""
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


class _Holder(nn.Module):
    """A module that only holds tensors, so TorchScript can script it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_openai_archive(model: CLIP, path: Path) -> Path:
    """A TorchScript archive with the state-dict layout of OpenAI's ``ViT-B-32.pt``.

    Like the real file: float16 weights, and the ``input_resolution`` / ``context_length`` /
    ``vocab_size`` settings stored next to them.
    """
    entries = dict(model.state_dict())
    entries["input_resolution"] = torch.tensor(TINY_CLIP.image_size)
    entries["context_length"] = torch.tensor(TINY_CLIP.context_length)
    entries["vocab_size"] = torch.tensor(TINY_CLIP.vocab_size)
    root = _Holder()
    for name, value in entries.items():
        *parents, leaf = name.split(".")
        module: nn.Module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, _Holder())
            module = getattr(module, part)
        module.register_buffer(leaf, value.half() if value.is_floating_point() else value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the OpenAI file uses it
        torch.jit.save(torch.jit.script(root), str(path))
    return path

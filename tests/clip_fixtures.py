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


def _openai_holder(model: CLIP) -> _Holder:
    """A module tree holding the model's tensors as OpenAI's archive does (float16 + settings)."""
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
    return root


def _save_script(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the OpenAI file uses it
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def save_openai_archive(model: CLIP, path: Path) -> Path:
    """A TorchScript archive with the state-dict layout of OpenAI's ``ViT-B-32.pt``.

    Like the real file: float16 weights, and the ``input_resolution`` / ``context_length`` /
    ``vocab_size`` settings stored next to them.
    """
    return _save_script(_openai_holder(model), path)


class _TuplePayload(nn.Module):
    """Runs code when ``torch.jit.load`` unpickles it: its compiled ``__setstate__`` writes ``marker``.

    It holds no tensors, so the archive's ``state_dict()`` stays exactly the CLIP weights and a loader
    that ran the archive would go on without a word.
    """

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        torch.save(torch.zeros(1), state[0])  # aten::save: TorchScript's way to write a file


class _DictPayload(nn.Module):
    """Like ``_TuplePayload`` but its state is an attribute-like dict (the layout of a plain module)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> dict[str, str]:
        return {"marker": self.marker}

    @torch.jit.export
    def __setstate__(self, state: dict[str, str]) -> None:
        self.marker = state["marker"]
        self.training = False
        torch.save(torch.zeros(1), self.marker)


def save_trojan_archive(model: CLIP, path: Path, marker: Path, dict_state: bool = False) -> Path:
    """An OpenAI-layout CLIP archive (``save_openai_archive``) plus a payload that writes ``marker`` on load.

    ``torch.jit.load`` of it creates ``marker`` and returns a module whose ``state_dict()`` is exactly
    the CLIP weights. ``dict_state`` picks a payload whose pickled state is a dict, like a module's.
    """
    root = _openai_holder(model)
    root.add_module("payload", (_DictPayload if dict_state else _TuplePayload)(str(marker)))
    return _save_script(root, path)

"""CLIP (open_clip) frame and text encoders, and the loader for their weights.

OVFormer's classifier attends to one CLIP ViT-B/32 image embedding per frame (``encode_image``
output, NOT normalised) and scores queries against CLIP text embeddings. The official embeddings
were computed by OpenAI's ``clip`` package: PIL image -> Resize(224, bicubic) of the shortest side
-> CenterCrop(224) -> [0, 1] -> Normalize(CLIP mean/std) -> ``encode_image``. ``ClipFrameEncoder``
reproduces that preprocessing with PIL itself (not a tensor resize), so its embeddings equal
open_clip's/OpenAI's ``preprocess`` + ``encode_image`` on the same pixels.

Weights: the OpenAI TorchScript archive ``ViT-B-32.pt`` or a state dict in the same layout
(open_clip's ``CLIP`` uses OpenAI's names) as safetensors or a ``torch.save`` file, read by
``checkpoints.read_clip_state_dict`` (tensors only: the archive's code never runs). The architecture
is read off the tensor shapes, so any OpenAI-layout ViT CLIP loads (tests use a tiny one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from PIL import Image
from torch import Tensor, nn

from ovformer_core.checkpoints import read_clip_state_dict
from ovformer_core.errors import CheckpointError, first_line
from ovformer_core.weights import WeightFile, fingerprint

#: OpenAI CLIP image normalisation (clip/clip.py ``_transform``; open_clip OPENAI_DATASET_MEAN/STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: The OpenAI ViT-B/32 release; the URL's folder is the file's sha256 (open_clip/pretrained.py).
OPENAI_VIT_B_32 = WeightFile(
    name="OpenAI CLIP ViT-B/32",
    filename="ViT-B-32.pt",
    url="https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
)

#: OpenAI's head size: heads = width // 64 in both towers (clip/model.py build_model).
_HEAD_WIDTH = 64
#: Longest text context read from a weight file (OpenAI's CLIPs: 77); bounds the [L, L] causal mask.
MAX_CONTEXT_LENGTH = 1024


@dataclass(frozen=True)
class ClipArchitecture:
    """Shape of an OpenAI-style ViT CLIP. Defaults: ViT-B/32 (open_clip model_configs/ViT-B-32.json)."""

    embed_dim: int = 512
    image_size: int = 224
    patch_size: int = 32
    vision_width: int = 768
    vision_layers: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    quick_gelu: bool = True  # OpenAI's models were trained with QuickGELU; LAION ViT-B-32 uses GELU


@dataclass(frozen=True)
class ClipFrameEncoderConfig:
    """Frame preprocessing and batching. Defaults: OpenAI CLIP's ``preprocess`` for ViT-B/32."""

    image_size: int = 224  # Resize(224) shortest side + CenterCrop(224)
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    batch_size: int = 32  # frames per encode_image call; memory vs. speed only


def build_clip(arch: ClipArchitecture) -> CLIP:
    """A randomly initialised open_clip ``CLIP`` of the given shape, float32, eval mode."""
    vision = CLIPVisionCfg(
        layers=arch.vision_layers,
        width=arch.vision_width,
        head_width=_HEAD_WIDTH,
        patch_size=arch.patch_size,
        image_size=arch.image_size,
    )
    text = CLIPTextCfg(
        context_length=arch.context_length,
        vocab_size=arch.vocab_size,
        width=arch.text_width,
        heads=max(1, arch.text_width // _HEAD_WIDTH),
        layers=arch.text_layers,
    )
    return CLIP(arch.embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=arch.quick_gelu).eval()


def infer_clip_architecture(state_dict: dict[str, Tensor], quick_gelu: bool = True) -> ClipArchitecture:
    """Read a ViT CLIP's shape from its OpenAI-layout state dict.

    Every size is read off a non-empty tensor of the file, so the model built from the result is no
    bigger than the weights that fill it (plus the ``[L, L]`` text mask, L <= ``MAX_CONTEXT_LENGTH``).

    Raises:
        CheckpointError: the state dict is not an OpenAI-layout ViT CLIP (names the missing or
            misshapen entries).
    """
    expected_dims = {
        "visual.conv1.weight": 4,  # [width, 3, patch, patch]
        "visual.positional_embedding": 2,  # [grid * grid + 1, width]
        "text_projection": 2,  # [text width, embed dim]
        "positional_embedding": 2,  # [context length, text width]
        "token_embedding.weight": 2,  # [vocab size, text width]
        "ln_final.weight": 1,  # [text width]
    }
    advice = "pass OpenAI's ViT-B-32.pt or an open_clip ViT-B-32 state dict"
    missing = [key for key in expected_dims if key not in state_dict]
    if missing:
        raise CheckpointError(f"not a CLIP ViT state dict (missing {', '.join(missing[:4])}); {advice}")
    for key, dims in expected_dims.items():
        shape = tuple(state_dict[key].shape)
        if len(shape) != dims or 0 in shape:
            raise CheckpointError(f"not a CLIP ViT state dict ({key} has shape {list(shape)}); {advice}")
    conv = state_dict["visual.conv1.weight"]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    context_length = state_dict["positional_embedding"].shape[0]
    if (
        conv.shape[1] != 3
        or conv.shape[2] != conv.shape[3]
        or grid < 1
        or grid * grid + 1 != len(state_dict["visual.positional_embedding"])
    ):
        raise CheckpointError(f"not a CLIP ViT state dict (patch embedding and image positions disagree); {advice}")
    if context_length > MAX_CONTEXT_LENGTH:
        raise CheckpointError(
            f"not a CLIP ViT state dict (text context of {context_length} tokens, at most {MAX_CONTEXT_LENGTH}); "
            f"{advice}"
        )

    def count_blocks(prefix: str) -> int:
        return len({key[len(prefix) :].split(".")[0] for key in state_dict if key.startswith(prefix)})

    return ClipArchitecture(
        embed_dim=state_dict["text_projection"].shape[1],
        image_size=conv.shape[-1] * grid,
        patch_size=conv.shape[-1],
        vision_width=conv.shape[0],
        vision_layers=count_blocks("visual.transformer.resblocks."),
        context_length=context_length,
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        text_width=state_dict["ln_final.weight"].shape[0],
        text_layers=count_blocks("transformer.resblocks."),
        quick_gelu=quick_gelu,
    )


def load_clip(path: str | os.PathLike[str], quick_gelu: bool = True) -> CLIP:
    """Build an open_clip ``CLIP`` of the file's shape and load its weights (float32, eval, CPU).

    The architecture is checked against the file on the ``meta`` device first (no memory), so a file
    whose shapes contradict each other is refused before anything is allocated.

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not fit (listed).
    """
    state = read_clip_state_dict(path)
    try:
        arch = infer_clip_architecture(state, quick_gelu=quick_gelu)
        with torch.device("meta"):
            expected = build_clip(arch).state_dict()
    except CheckpointError as err:
        raise CheckpointError(f"CLIP weights {path}: {err}") from None
    except (AssertionError, ValueError, RuntimeError) as err:  # e.g. a width no head count divides
        raise CheckpointError(f"CLIP weights {path} do not describe a ViT CLIP ({first_line(err)})") from None
    parts = []
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing:
        parts.append(f"missing {', '.join(missing[:4])}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected[:4])}")
    wrong = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if wrong:
        parts.append(f"other shapes for {', '.join(f'{k} {list(state[k].shape)}' for k in wrong[:4])}")
    if parts:
        raise CheckpointError(f"CLIP weights {path} do not fit a ViT CLIP ({'; '.join(parts)})")
    model = build_clip(arch)
    model.load_state_dict(state, strict=True)
    return model.eval()


def clip_preprocess(frame: np.ndarray, cfg: ClipFrameEncoderConfig) -> Tensor:
    """One RGB frame -> CLIP input, exactly as OpenAI's PIL ``preprocess``.

    The shortest side is resized to ``image_size`` with PIL bicubic (the long side truncated to an
    int, as torchvision's ``Resize`` does), the centre ``image_size`` square is cropped (offsets
    rounded as torchvision's ``CenterCrop``), pixels are divided by 255 and normalised.

    Args:
        frame: ``[H, W, 3]`` uint8 RGB.
        cfg: sizes and normalisation.

    Returns:
        ``[3, S, S]`` float32 with S = ``cfg.image_size``.
    """
    height, width = frame.shape[:2]
    size = cfg.image_size
    image = Image.fromarray(np.ascontiguousarray(frame))
    short, long = (height, width) if height <= width else (width, height)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if height <= width else (new_long, size)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
    # Same float ops in the same order as ToTensor (x / 255) then Normalize ((x - mean) / std).
    return pixels.float().div(255).sub(mean).div(std)


Frames = np.ndarray | Tensor | Sequence[np.ndarray]


class ClipFrameEncoder(nn.Module):
    """uint8 frames -> one CLIP image embedding per frame (not normalised)."""

    def __init__(self, visual: nn.Module, cfg: ClipFrameEncoderConfig | None = None) -> None:
        """Wrap a CLIP image tower.

        Args:
            visual: open_clip ``CLIP.visual`` (``[B, 3, S, S]`` -> ``[B, D]``).
            cfg: preprocessing and batching.
        """
        super().__init__()
        self.visual = visual
        self.cfg = cfg or ClipFrameEncoderConfig()

    @classmethod
    def from_clip(cls, model: CLIP, cfg: ClipFrameEncoderConfig | None = None) -> ClipFrameEncoder:
        """Use the image tower of an open_clip ``CLIP``; its input size comes from the model."""
        cfg = cfg or ClipFrameEncoderConfig()
        size = model.visual.image_size
        image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        return cls(model.visual, ClipFrameEncoderConfig(image_size, cfg.mean, cfg.std, cfg.batch_size))

    @torch.inference_mode()
    def forward(self, frames: Frames) -> Tensor:
        """Encode frames in batches of ``cfg.batch_size`` on the module's device and dtype.

        Args:
            frames: ``[T, H, W, 3]`` uint8 RGB (numpy or tensor, any device), or a sequence of
                ``[H_i, W_i, 3]`` uint8 arrays of different sizes.

        Returns:
            ``[T, D]`` float32 on the module's device.
        """
        images = _as_frame_list(frames)
        param = next(self.visual.parameters())
        outputs = []
        for start in range(0, len(images), self.cfg.batch_size):
            batch = torch.stack([clip_preprocess(f, self.cfg) for f in images[start : start + self.cfg.batch_size]])
            outputs.append(self.visual(batch.to(device=param.device, dtype=param.dtype)).float())
        if not outputs:
            return torch.zeros(0, _output_dim(self.visual), device=param.device)
        return torch.cat(outputs)


def _output_dim(visual: nn.Module) -> int:
    return int(getattr(visual, "output_dim", 0))


def _as_frame_list(frames: Frames) -> list[np.ndarray]:
    if isinstance(frames, Tensor):
        frames = frames.detach().cpu().numpy()
    images = list(frames)
    for image in images:
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            what = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"CLIP frames must be uint8 [H, W, 3] RGB, got {what}")
    return images


class ClipTextEncoder(nn.Module):
    """Prompts -> CLIP text embeddings (``encode_text`` output, not normalised).

    Prompts are short (a class name in a template is ~10 of CLIP's 77 token slots). CLIP's text
    tower is causal and pools the end-of-text token, so slots after it cannot change the result:
    each batch runs only up to its longest prompt, with prompts sorted by length. Same function as
    ``CLIP.encode_text``, several times faster.
    """

    def __init__(self, model: CLIP, batch_size: int = 256) -> None:
        """Wrap an open_clip ``CLIP``; its BPE tokenizer ships inside open_clip (no download).

        Args:
            model: the CLIP whose text tower encodes (OpenAI style: causal mask, end-of-text pooling).
            batch_size: prompts per forward call; memory vs. speed only.
        """
        super().__init__()
        if model.attn_mask is None or model.text_pool_type != "argmax":
            raise ValueError("ClipTextEncoder needs an OpenAI-style CLIP text tower (causal, end-of-text pooling)")
        self.model = model
        self.batch_size = batch_size
        self.tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)

    @torch.inference_mode()
    def forward(self, prompts: Sequence[str]) -> Tensor:
        """Encode prompts.

        Args:
            prompts: N strings.

        Returns:
            ``[N, D]`` float32 on CPU.
        """
        embed_dim = self.model.text_projection.shape[1]
        if not prompts:
            return torch.zeros(0, embed_dim)
        tokens = self.tokenizer(list(prompts))  # [N, 77]; end-of-text has the highest token id
        eot = tokens.argmax(dim=-1)
        order = torch.argsort(eot, stable=True)
        out = torch.empty(len(prompts), embed_dim)
        for start in range(0, len(prompts), self.batch_size):
            rows = order[start : start + self.batch_size]
            length = int(eot[rows].max()) + 1
            out[rows] = self._encode(tokens[rows, :length], eot[rows]).float().cpu()
        return out

    def _encode(self, tokens: Tensor, eot: Tensor) -> Tensor:
        """``CLIP.encode_text`` on ``[B, L]`` tokens cut after the last end-of-text; returns ``[B, D]``."""
        model = self.model
        param = next(model.parameters())
        tokens, eot = tokens.to(param.device), eot.to(param.device)
        length = tokens.shape[1]
        x = model.token_embedding(tokens).to(param.dtype) + model.positional_embedding[:length].to(param.dtype)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = model.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ model.text_projection


@dataclass(frozen=True)
class ClipTextEncoderFactory:
    """Builds a ``ClipTextEncoder`` from a weight file only when one is needed.

    ``identity`` names the weights without loading them (file name + content fingerprint), so
    encoded vocabularies can be cached per model.
    """

    weights: Path
    device: str = "cpu"
    quick_gelu: bool = True
    #: The same weights already loaded (e.g. for the frame encoder): reused instead of read again.
    preloaded: CLIP | None = field(default=None, compare=False, repr=False)

    @property
    def identity(self) -> str:
        """``<file name>#<fingerprint>[+gelu]``: changes when the weights' content changes."""
        activation = "" if self.quick_gelu else "+gelu"
        return f"{self.weights.name}#{fingerprint(self.weights)}{activation}"

    def __call__(self) -> ClipTextEncoder:
        """Load the weights (unless preloaded) and return the text encoder on ``device``."""
        model = self.preloaded if self.preloaded is not None else load_clip(self.weights, quick_gelu=self.quick_gelu)
        return ClipTextEncoder(model.to(self.device))


@dataclass(frozen=True)
class ClipEncoders:
    """The two towers of one CLIP file: image tower for frames, text tower (built on demand) for names."""

    frames: ClipFrameEncoder
    text: ClipTextEncoderFactory


def load_clip_encoders(path: str | os.PathLike[str], device: torch.device | str) -> ClipEncoders:
    """Load a CLIP file once and share it between the frame encoder and the text-encoder factory.

    Raises:
        CheckpointError: unreadable file, or keys that do not fit (listed).
    """
    clip = load_clip(path).eval()
    frames = ClipFrameEncoder.from_clip(clip).to(device).eval()
    return ClipEncoders(frames, ClipTextEncoderFactory(Path(path), device=str(device), preloaded=clip))

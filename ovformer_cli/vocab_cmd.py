"""``ovformer vocab-encode``: text-encode a vocabulary once, save it as a ``.vocab`` file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ovformer_cli.console import ThreadsOption, stderr, stdout, user_errors
from ovformer_core.errors import OVFormerError


class Device(str, Enum):
    """Where the CLIP text tower runs."""

    cpu = "cpu"
    cuda = "cuda"


@user_errors
def vocab_encode(
    vocabulary: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="Class names: a .txt file (one class per line, synonyms after commas, # comments), "
            "a dataset .json with 'categories', an existing .vocab file (re-encoded), or an inline list "
            "like 'person,dog,car'.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .vocab file to write.")],
    clip_weights: Annotated[
        Path | None,
        typer.Option(
            "--clip-weights",
            help="CLIP ViT-B/32 weights (OpenAI ViT-B-32.pt or an open_clip state dict); "
            "default: the cached download in $OVFORMER_HOME.",
        ),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option("--templates", help="Prompt templates file: one per line, each with one '{}' for the name."),
    ] = None,
    device: Annotated[Device, typer.Option("--device", help="Run the text encoder on this device.")] = Device.cpu,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Encode class names with CLIP's text tower into a reusable .vocab file."""
    # Heavy imports (torch, open_clip) only when the command runs, so `ovformer --help` stays fast.
    from dataclasses import replace

    import torch

    from ovformer_core.cpu_threads import set_threads
    from ovformer_core.model.clip import OPENAI_VIT_B_32, ClipTextEncoderFactory
    from ovformer_core.vocab import (
        DEFAULT_TEMPLATES,
        VOCAB_SUFFIX,
        encode_classes,
        read_classes_and_ids,
        read_templates,
    )
    from ovformer_core.weights import resolve

    set_threads(threads)
    if output.suffix != VOCAB_SUFFIX:
        raise OVFormerError(f"output {output} must end in {VOCAB_SUFFIX}; e.g. -o classes{VOCAB_SUFFIX}")
    if device is Device.cuda and not torch.cuda.is_available():
        raise OVFormerError("--device cuda was given but no CUDA GPU is available; use --device cpu")
    classes, ids = read_classes_and_ids(vocabulary)  # a dataset JSON's classes keep its ids in the file
    prompt_templates = read_templates(templates) if templates is not None else DEFAULT_TEMPLATES
    weights = resolve(OPENAI_VIT_B_32, explicit_path=clip_weights, progress=not quiet, parameter="clip_weights")
    factory = ClipTextEncoderFactory(weights, device=device.value)
    encoder = factory()  # load the weights first: a bad file fails before any progress output
    if not quiet:
        stderr.print(
            f"encoding {len(classes)} classes x {len(prompt_templates)} templates "
            f"with {weights.name} on {device.value}",
            highlight=False,
        )
    encoded = encode_classes(classes, encoder, factory.identity, prompt_templates)
    encoded = encoded if ids is None else replace(encoded, category_ids=ids)
    encoded.save(output)
    if not quiet:
        stdout.print(f"wrote {output} ({encoded.num_classes} classes, {encoded.embed_dim}-d)", highlight=False)

"""``ovformer train``: run an official recipe or a custom config, on CPU, one GPU or many (torchrun)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ovformer_cli.console import ThreadsOption, stderr, stdout, user_errors
from ovformer_core.errors import TrainingError
from ovformer_core.io.json_input import parse_json_text

#: Exit status when SIGTERM stopped the run after writing a checkpoint (resume with --resume).
EXIT_INTERRUPTED = 3


def _recipe_value(data: dict[str, Any], keys: list[str]) -> Any:
    """The value the config's recipe has at ``keys`` (None when there is none)."""
    from ovformer_core.train.config import recipe

    name = data.get("recipe", "r50-lvvis")
    node: Any = recipe(name).to_dict() if isinstance(name, str) else {}
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b.c=VALUE``: VALUE is JSON (numbers, true, lists), except for text fields, where
    it is taken as written (so ``run.output_dir=2024`` is the folder ``2024``)."""
    for text in overrides:
        if "=" not in text:
            raise TrainingError(f"--set {text!r} is not KEY=VALUE (e.g. --set run.output_dir=runs/a)")
        key, raw = text.split("=", 1)
        keys = key.strip().split(".")
        if isinstance(_recipe_value(data, keys), str):
            value: Any = raw
        else:
            try:
                value = parse_json_text(raw, f"--set {key}", TrainingError)
            except TrainingError:
                value = raw  # a bare word (or NaN, 1e999...); the config check names the field if it must be a number
        node = data
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TrainingError(f"--set {text!r}: {part} is not a config section")
        node[keys[-1]] = value
    return data


@user_errors
def train(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="JSON training config (start from --print-config).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest checkpoint in run.output_dir.")
    ] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one value, e.g. --set run.output_dir=runs/b --set optim.max_iter=500."),
    ] = None,
    print_config: Annotated[
        str | None,
        typer.Option("--print-config", help="Print a recipe (r50-lvis, swinb-lvis, r50-lvvis, swinb-lvvis) as JSON."),
    ] = None,
    build_clip_cache: Annotated[
        Path | None,
        typer.Option("--build-clip-cache", help="Encode every training frame with CLIP into this file and exit."),
    ] = None,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the final line.")] = False,
) -> None:
    """Train OVFormer (image level on LVIS, video level on LV-VIS, or your own annotations).

    Under torchrun every process runs this command: torchrun --nproc_per_node 8 -m ovformer_cli train -c run.json
    """
    from ovformer_core.cpu_threads import set_threads
    from ovformer_core.train.config import check_train_config, config_from_overrides, read_config_json, recipe

    set_threads(threads)

    if print_config is not None:
        stdout.print_json(json.dumps({"recipe": print_config, **recipe(print_config).to_dict()}))
        return
    if config is None:
        raise TrainingError(
            "give a training config with --config (start from `ovformer train --print-config r50-lvvis`)"
        )
    data = read_config_json(config)
    cfg = config_from_overrides(_apply_overrides(data, overrides or []))
    check_train_config(cfg)

    if build_clip_cache is not None:
        from ovformer_core.train.engine import build_training_clip_cache

        count = build_training_clip_cache(cfg, build_clip_cache)
        stdout.print(f"wrote CLIP embeddings of {count} frames to {build_clip_cache}", highlight=False)
        return

    from ovformer_core.train.engine import train as run_training

    def show(line: dict[str, Any]) -> None:
        if quiet:
            return
        parts = [f"iter {line['iteration']}"]
        for name, value in line.items():
            if name != "iteration":
                parts.append(f"{name} {value:.4g}")
        stderr.print("  ".join(parts), highlight=False)

    outcome = run_training(cfg, resume=resume, on_log=show)
    if int(os.environ.get("RANK", 0)) != 0:
        return  # under torchrun, rank 0 reports for everyone
    if outcome.status == "interrupted":
        stdout.print(
            f"stopped by SIGTERM after iteration {outcome.iteration}; checkpoint {outcome.checkpoint}; "
            "continue with --resume",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    line = f"finished {outcome.iteration} iterations; model {outcome.final_model}"
    if outcome.eval_stats is not None:
        line += f"; AP {outcome.eval_stats['AP']:.4f}"
    stdout.print(line, highlight=False)

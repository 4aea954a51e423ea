"""``ovformer view``: look at, correct and re-run results in the browser."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ovformer_cli.console import as_flags, stderr, user_errors
from ovformer_core.errors import OVFormerError

#: Port tried first (``--port 0`` picks any free one).
DEFAULT_PORT = 8765


@user_errors
def view(
    target: Annotated[
        Path, typer.Argument(help="A results folder (OUT_DIR of 'ovformer segment') or one RESULT.json.")
    ],
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; anything but loopback requires the printed token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).", min=0, max=65535)] = DEFAULT_PORT,
    videos: Annotated[
        list[Path] | None,
        typer.Option("--videos", help="Another folder whose videos may be shown (read only; repeatable)."),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model for runs: r50-lvvis | swinb-lvvis | r50-lvis | swinb-lvis")
    ] = "r50-lvvis",
    weights: Annotated[Path | None, typer.Option("--weights", help="Model weights file for runs.")] = None,
    clip_weights: Annotated[Path | None, typer.Option("--clip-weights", help="CLIP ViT-B/32 weights file.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cuda, cpu, cuda:N (default: cuda if any).")] = None,
    min_size: Annotated[
        int | None, typer.Option("--min-size", help="Shortest side fed to the network in runs.", min=32)
    ] = None,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="Largest upload accepted.", min=1)] = 2048,
    offline: Annotated[bool, typer.Option("--offline", help="Never download weights.")] = False,
) -> None:
    """Serve a local web page to look at results, correct them (saved as NAME.reviewed.json) and run new ones."""
    try:
        from ovformer_core.io.paths import check_input_path
        from ovformer_core.view.access import new_token
        from ovformer_core.view.app import ViewerSettings
        from ovformer_core.view.results_index import is_result_file
        from ovformer_core.view.server import serve
    except ModuleNotFoundError as err:
        raise OVFormerError(
            f"ovformer view needs {err.name}, which is not installed; pip install 'ovformer[view]'"
        ) from None

    check_input_path(target, "results", kind="any", advice="give a results folder or a result .json")
    only: tuple[Path, ...] | None = None
    folder = target
    if target.is_file():
        if not is_result_file(target):
            raise OVFormerError(f"{target} is not an ovformer result file; give a results folder or a NAME.json")
        folder, only = target.parent, (target,)
    for extra in videos or []:
        if not extra.is_dir():
            raise OVFormerError(f"--videos {extra} is not a folder; give the folder holding the source videos")
    for flag, path in (("--weights", weights), ("--clip-weights", clip_weights)):
        if path is not None:
            check_input_path(path, flag)
    settings = ViewerSettings(
        folder=folder,
        token=new_token(),
        only=only,
        video_roots=tuple(videos or ()),
        host=host,
        model=model,
        weights=weights,
        clip_weights=clip_weights,
        device=device,
        allow_download=not offline,
        min_size=min_size,
        max_upload_bytes=max_upload_mb * 1024**2,
        messages=as_flags,
    )

    def announce(url: str) -> None:
        typer.echo(url)
        sys.stdout.flush()
        stderr.print(f"serving {folder.resolve()}; Ctrl-C stops", highlight=False)

    try:
        serve(settings, port, announce)
    except KeyboardInterrupt:
        stderr.print("stopped", highlight=False)

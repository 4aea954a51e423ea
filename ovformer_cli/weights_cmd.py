"""``ovformer weights list | download``: what the cache holds, and fetching every file for offline use."""

from __future__ import annotations

from typing import Annotated

import typer

from ovformer_cli.console import stdout, user_errors
from ovformer_cli.exit_status import EXIT_STATUS_HELP
from ovformer_cli.lazy_commands import command_group

weights_app = command_group(
    "The weight files in the cache ($OVFORMER_HOME, default ~/.cache/ovformer): list them, download them.",
    EXIT_STATUS_HELP,
)


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


@weights_app.command("list", epilog=EXIT_STATUS_HELP)
@user_errors
def list_weights() -> None:
    """Every weight file the models use: cached (with its size) or missing, with its download address."""
    from ovformer_core.predictor import weight_files
    from ovformer_core.weights import cache_status

    for entry in cache_status(weight_files()):
        state = "missing" if entry.size is None else f"cached, {_size(entry.size)}"
        checksum = "sha256 published" if entry.weight.sha256 else "no published sha256"
        stdout.print(f"{entry.weight.name}: {entry.path} ({state}; {checksum})", highlight=False, markup=False)
        if entry.size is None:
            stdout.print(f"  from {entry.weight.url}", highlight=False, markup=False)


@weights_app.command("download", epilog=EXIT_STATUS_HELP)
@user_errors
def download_weights(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; print only errors.")] = False,
) -> None:
    """Download every missing weight file into the cache (verified by sha256 where published), for offline use."""
    from ovformer_core.predictor import weight_files
    from ovformer_core.weights import download_missing

    for entry, digest in download_missing(weight_files(), progress=not quiet):
        if quiet:
            continue
        if digest is None:
            stdout.print(f"cached {entry.path}", highlight=False, markup=False)
        else:
            check = "checksum verified" if entry.weight.sha256 else "no published checksum"
            stdout.print(f"wrote {entry.path} (sha256 {digest}, {check})", highlight=False, markup=False)

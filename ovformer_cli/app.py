"""The Typer application: parses arguments, calls ``ovformer_core``, prints with rich.

Each command lives in its own module, imported only when that command runs or prints its help
(``lazy_commands``): ``ovformer --help`` imports Typer and this file, not rich, pydantic or the library.
"""

from __future__ import annotations

import typer

from ovformer_cli.exit_status import EXIT_STATUS_HELP
from ovformer_cli.lazy_commands import LazyCommand, LazyGroup
from ovformer_core import __version__
from ovformer_core.cpu_threads import prefer_passive_wait

#: Every command, in the order ``ovformer --help`` lists them, with the first paragraph of its help.
COMMANDS = {
    "segment": LazyCommand(
        "ovformer_cli.segment_cmd",
        "segment",
        "Find, segment, track and name every object of the given categories in each input.",
        EXIT_STATUS_HELP,
    ),
    "export": LazyCommand(
        "ovformer_cli.export_cmd",
        "export",
        "Convert saved results into other formats without running the model.",
        EXIT_STATUS_HELP,
    ),
    "import": LazyCommand(
        "ovformer_cli.import_cmd",
        "import_annotations",
        "Read tracks corrected in an annotation tool back into a dataset for `evaluate --gt` and `train`.",
        EXIT_STATUS_HELP,
    ),
    "vocab-encode": LazyCommand(
        "ovformer_cli.vocab_cmd",
        "vocab_encode",
        "Encode class names with CLIP's text tower into a reusable .vocab file.",
        EXIT_STATUS_HELP,
    ),
    "evaluate": LazyCommand(
        "ovformer_cli.evaluate_cmd",
        "evaluate",
        "Compute AP/AR exactly as the official YouTube-VIS, OVIS, LV-VIS or BURST evaluator does.",
        EXIT_STATUS_HELP,
    ),
    "train": LazyCommand(
        "ovformer_cli.train_cmd",
        "train",
        "Train OVFormer (image level on LVIS, video level on LV-VIS, or your own annotations).",
        EXIT_STATUS_HELP,
    ),
    "view": LazyCommand(
        "ovformer_cli.view_cmd",
        "view",
        "Serve a local web page to look at results, correct them (saved as NAME.reviewed.json) and run new ones.",
        EXIT_STATUS_HELP,
    ),
    "dataset": LazyCommand(
        "ovformer_cli.dataset_cmd",
        "dataset_app",
        "Prepare dataset files: drop rare/novel categories, category info, split results by partition.",
    ),
    "weights": LazyCommand(
        "ovformer_cli.weights_cmd",
        "weights_app",
        "The weight files in the cache ($OVFORMER_HOME, default ~/.cache/ovformer): list them, download them.",
    ),
}


class OVFormerCommands(LazyGroup):
    """The top-level group: ``COMMANDS``, imported on first use."""

    lazy_commands = COMMANDS


app = typer.Typer(
    name="ovformer",
    cls=OVFormerCommands,
    help="Open-vocabulary video instance segmentation (OVFormer): segment, track and name objects of any category.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's own help layout: flags print as flags (Typer's rich panels show "--json <bool>").
    rich_markup_mode=None,
    epilog=EXIT_STATUS_HELP,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ovformer {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Open-vocabulary video instance segmentation (OVFormer)."""


def main() -> None:
    """Console entry point."""
    prefer_passive_wait()  # before any command imports torch: libgomp reads it once, when it loads
    app()


if __name__ == "__main__":
    main()

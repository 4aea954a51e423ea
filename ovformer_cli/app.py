"""The Typer application: parses arguments, calls ``ovformer_core``, prints with rich."""

from __future__ import annotations

import typer

from ovformer_cli.console import EXIT_STATUS_HELP
from ovformer_cli.dataset_cmd import dataset_app
from ovformer_cli.evaluate_cmd import evaluate
from ovformer_cli.export_cmd import export
from ovformer_cli.import_cmd import import_annotations
from ovformer_cli.segment_cmd import segment
from ovformer_cli.train_cmd import train
from ovformer_cli.view_cmd import view
from ovformer_cli.vocab_cmd import vocab_encode
from ovformer_cli.weights_cmd import weights_app
from ovformer_core import __version__
from ovformer_core.cpu_threads import prefer_passive_wait

app = typer.Typer(
    name="ovformer",
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


app.command("segment", epilog=EXIT_STATUS_HELP)(segment)
app.command("export", epilog=EXIT_STATUS_HELP)(export)
app.command("import", epilog=EXIT_STATUS_HELP)(import_annotations)
app.command("vocab-encode", epilog=EXIT_STATUS_HELP)(vocab_encode)
app.command("evaluate", epilog=EXIT_STATUS_HELP)(evaluate)
app.add_typer(dataset_app, name="dataset")
app.add_typer(weights_app, name="weights")
app.command("train", epilog=EXIT_STATUS_HELP)(train)
app.command("view", epilog=EXIT_STATUS_HELP)(view)


def main() -> None:
    """Console entry point."""
    prefer_passive_wait()  # before any command imports torch: libgomp reads it once, when it loads
    app()


if __name__ == "__main__":
    main()

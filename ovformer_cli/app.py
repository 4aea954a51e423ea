"""The Typer application: parses arguments, calls ``ovformer_core``, prints with rich."""

from __future__ import annotations

import typer

from ovformer_cli.dataset_cmd import dataset_app
from ovformer_cli.evaluate_cmd import evaluate
from ovformer_cli.import_cmd import import_annotations
from ovformer_cli.segment_cmd import export, segment
from ovformer_cli.train_cmd import train
from ovformer_cli.view_cmd import view
from ovformer_cli.vocab_cmd import vocab_encode
from ovformer_core import __version__
from ovformer_core.cpu_threads import prefer_passive_wait

app = typer.Typer(
    name="ovformer",
    help="Open-vocabulary video instance segmentation (OVFormer): segment, track and name objects of any category.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


app.command("segment")(segment)
app.command("export")(export)
app.command("import")(import_annotations)
app.command("vocab-encode")(vocab_encode)
app.command("evaluate")(evaluate)
app.add_typer(dataset_app, name="dataset")
app.command("train")(train)
app.command("view")(view)


def main() -> None:
    """Console entry point."""
    prefer_passive_wait()  # before any command imports torch: libgomp reads it once, when it loads
    app()


if __name__ == "__main__":
    main()

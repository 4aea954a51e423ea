"""The ``ovformer`` command line: a thin Typer layer over ``ovformer_core``."""

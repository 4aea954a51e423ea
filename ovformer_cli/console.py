"""Shared console plumbing: one-line errors, quiet mode, stderr/stdout consoles."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from ovformer_core.errors import OVFormerError

P = ParamSpec("P")
R = TypeVar("R")

#: Exit status for a user mistake (bad input, missing file); 1 is left to "some batch items failed".
EXIT_USER_ERROR = 2

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    stderr.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(EXIT_USER_ERROR)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an ``OVFormerError`` (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OVFormerError as err:
            raise fail(str(err)) from None
        except KeyboardInterrupt:
            raise fail("interrupted") from None

    return wrapper

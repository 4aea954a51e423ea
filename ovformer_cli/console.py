"""Shared console plumbing: one-line errors, signals, stderr/stdout consoles (exit statuses: ``exit_status``)."""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import warnings
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ovformer_cli.exit_status import EXIT_FAILED, EXIT_SIGNAL_BASE, EXIT_USER_ERROR
from ovformer_core.errors import OVFormerError, out_of_memory

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

P = ParamSpec("P")
R = TypeVar("R")

#: Signals that stop a command: outputs in progress are removed, one line is printed.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HOST_OUT_OF_MEMORY = (
    "ran out of memory (the machine's, or a limit such as `ulimit -v`); close other programs, "
    "raise the limit, or give smaller inputs"
)
GPU_OUT_OF_MEMORY = "ran out of GPU memory; close other programs using the GPU, give smaller inputs, or run on the CPU"

#: ``--threads``, shared by the commands that run the network on the CPU (see ``ovformer_core.cpu_threads``).
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="CPU threads for the network (default: OMP_NUM_THREADS when set, else the physical cores).",
        min=1,
    ),
]

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) raised as an exception, so every cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: A library parameter named in a message, with an optional value (see ``ovformer_core.errors``).
_PARAMETER = re.compile(r"`([a-z][a-z_]*)`(?:='([^']*)')?")
#: A library function named in a message as what to call: ```name()```.
_FUNCTION = re.compile(r"`([A-Za-z_][\w.]*)\(\)`")

#: The command that does what a library function named in a message does.
COMMANDS = {
    "Vocabulary.save": "ovformer vocab-encode",
    "write_result_json": "ovformer segment",
    "recipe": "ovformer train --print-config r50-lvvis",
    "build_training_clip_cache": "ovformer train --build-clip-cache",
}


def as_flags(message: str) -> str:
    """A library message in the CLI's words: ```min_size``` -> ``--min-size``, ```device`='cpu'`` -> ``--device cpu``,
    ```write_result_json()``` -> ```ovformer segment``` (``COMMANDS``).

    Every command's flags are its library parameters with dashes for underscores.
    """

    def flag(match: re.Match[str]) -> str:
        name = "--" + match[1].replace("_", "-")
        return name if match[2] is None else f"{name} {match[2]}"

    def command(match: re.Match[str]) -> str:
        return f"`{COMMANDS[match[1]]}`" if match[1] in COMMANDS else match[0]

    return _PARAMETER.sub(flag, _FUNCTION.sub(command, message))


def progress_bar(*columns: ProgressColumn, quiet: bool) -> Progress:
    """A transient progress display on stderr, drawn only on a terminal: a log gets no bar and no blank line."""
    from rich.progress import Progress  # not imported by --help

    return Progress(*columns, console=stderr, disable=quiet or not stderr.is_terminal, transient=True)


def fail(message: str, status: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print ``error: message`` (library parameters shown as flags) on stderr and return the exit to raise."""
    # The message is plain text: brackets in it (``ovformer[view]``, ``[0, 1]``) are not rich markup.
    stderr.print(f"[bold red]error:[/] {escape(as_flags(message))}", markup=True, highlight=False)
    return typer.Exit(status)


class StopSignals:
    """Turns SIGINT, SIGTERM and SIGHUP into ``Interrupted`` while a command runs, and remembers them.

    Every output is written atomically and removed on any exception, so a batch scheduler's SIGTERM
    leaves no ``.part`` file, exactly like Ctrl-C. The signal is also remembered (``received``): an
    exception raised inside C code can reach Python as another type (numpy turns it into a
    ``TypeError`` in its ``__array__`` fallback), and the command must still end as interrupted.
    Handlers can only be set from the main thread; elsewhere the signals keep their own handling.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        try:
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._raise)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        # Later signals must not interrupt the cleanup of the first one.
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise Interrupted(signum)


#: Packages whose warnings are not for a CLI user (deprecations, pickle-protocol notes, ...).
QUIET_PACKAGES = ("torch", "timm", "open_clip", "av", "numpy", "pycocotools", "tensorboard")


@contextlib.contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Silence the warnings of the libraries underneath; ovformer's own warnings still show."""
    with warnings.catch_warnings():
        for package in QUIET_PACKAGES:
            warnings.filterwarnings("ignore", module=rf"{package}(\.|$)")
        yield


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run a command with one-line errors and clean stops.

    An ``OVFormerError`` becomes ``error: <its line>`` and exit 2; running out of memory (a
    ``MemoryError`` from Python or numpy, torch's allocators' ``RuntimeError``) one line and exit 1;
    Ctrl-C, SIGTERM and SIGHUP become ``error: interrupted (SIG...)`` and exit 128 + the signal number.
    In every case the atomic writers have removed whatever was unfinished.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        stop = StopSignals()
        try:
            with stop, quiet_library_warnings():
                try:
                    return func(*args, **kwargs)
                except Exception as err:
                    if stop.received is not None and not isinstance(err, typer.Exit):
                        raise Interrupted(stop.received) from None
                    raise
        except OVFormerError as err:
            raise fail(str(err)) from None
        except MemoryError:
            raise fail(HOST_OUT_OF_MEMORY, EXIT_FAILED) from None
        except RuntimeError as err:
            kind = out_of_memory(err)
            if kind is None:
                raise
            raise fail(HOST_OUT_OF_MEMORY if kind == "host" else GPU_OUT_OF_MEMORY, EXIT_FAILED) from None
        except KeyboardInterrupt as err:
            signum: int = err.signum if isinstance(err, Interrupted) else signal.SIGINT.value
            name = signal.Signals(signum).name
            raise fail(f"interrupted ({name}); unfinished outputs were removed", EXIT_SIGNAL_BASE + signum) from None

    return wrapper

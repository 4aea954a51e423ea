"""Commands imported when they run or print their own help: ``ovformer --help`` imports none of them.

The group knows each command by a ``LazyCommand``: the module and attribute to import, and its summary
(the first paragraph of its help, which is what ``ovformer --help`` shows; ``tests/cli/test_lazy_commands.py``
checks it against the command itself). Listing the commands imports no command module, so none of
what they import (rich tables and progress bars, the library, pydantic through Typer's parameter
types); ``ovformer segment ...`` imports ``ovformer_cli.segment_cmd`` and no other command.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

# Click's Context, HelpFormatter and Command are annotated ``Any``: Typer 0.2x vendors click, so the module
# that defines them differs between the Typer versions this project accepts.


@dataclass(frozen=True)
class LazyCommand:
    """A command known by its summary until it is imported.

    Attributes:
        module: The module that defines it, e.g. ``"ovformer_cli.segment_cmd"``.
        attribute: A command function, or a ``typer.Typer`` holding sub-commands (a nested group).
        summary: The first paragraph of its help, as the group's ``--help`` lists it.
        epilog: Text after a command function's help (a ``typer.Typer`` brings its own).
    """

    module: str
    attribute: str
    summary: str
    epilog: str | None = None

    def load(self, name: str) -> Any:
        """Import the module and build the click command, as ``typer.Typer.command``/``add_typer`` would."""
        target = getattr(importlib.import_module(self.module), self.attribute)
        if isinstance(target, typer.Typer):
            return typer.main.get_command(target)
        # One command on its own Typer: the public way to turn a function into a click command.
        # rich_markup_mode=None as the main app: click's layout, flags print as flags.
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(name, epilog=self.epilog)(target)
        return typer.main.get_command(single)

    def stand_in(self, name: str) -> Any:
        """A command with only the summary as its help: what listing the group needs, nothing imported."""
        return TyperCommand(name, help=self.summary)


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands by name: the names are known at once, each command is built on first access.

    Iterating (``keys()``, ``in``, ``len``) imports nothing; ``[name]`` and ``get(name)`` import that
    command's module alone.
    """

    def __init__(self, loaded: Mapping[str, Any], lazy: Mapping[str, LazyCommand]) -> None:
        self._loaded: dict[str, Any] = dict(loaded)
        self._lazy = {name: spec for name, spec in lazy.items() if name not in self._loaded}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            spec = self._lazy[name]  # KeyError for an unknown command, as a dict
            self._loaded[name] = spec.load(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._loaded and name not in self._lazy:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy  # Mapping's own would build the command

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._lazy, *self._loaded]))

    def __len__(self) -> int:
        return len(self._lazy.keys() | self._loaded.keys())

    def peek(self, name: str) -> Any:
        """The command if it was built already, else a stand-in carrying its summary (nothing imported)."""
        return self._loaded[name] if name in self._loaded else self._lazy[name].stand_in(name)


class LazyGroup(TyperGroup):
    """A Typer group whose commands (``lazy_commands``, set by a subclass) are imported on first use.

    Everything else is Typer's: running, ``--help`` of a command, "No such command ... Did you mean ...?".
    """

    lazy_commands: ClassVar[Mapping[str, LazyCommand]] = {}

    def __init__(self, *args: Any, **attrs: Any) -> None:
        super().__init__(*args, **attrs)
        self.commands = LazyCommands(self.commands, self.lazy_commands)

    def get_help_option(self, ctx: Any) -> Any:
        """The group's ``--help`` flag, defaulting to False as a flag does.

        Typer 0.29 leaves its default None, and a None value goes through Typer's pydantic conversion:
        ``ovformer segment --help`` (the group's own ``--help`` absent) would import pydantic (0.1-0.2 s)
        for nothing. Each command's options still go through that conversion when the command runs.
        """
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option

    def list_commands(self, ctx: Any) -> list[str]:
        """The names, in the order given, without importing any command."""
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Click's "Commands:" listing (same rows, same shortening), from the summaries."""
        commands = self.commands
        assert isinstance(commands, LazyCommands)  # set in __init__
        listed = [(name, commands.peek(name)) for name in self.list_commands(ctx)]
        listed = [(name, command) for name, command in listed if not command.hidden]
        if not listed:
            return
        # Click's own width rule: the summaries get what the longest name leaves, less 6 columns.
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in listed])


def command_group(help_text: str, epilog: str | None = None) -> typer.Typer:
    """A nested command group (``ovformer dataset ...``), set up as the main app is.

    Flags print as flags (no rich markup); no completion options of its own (it is built on its own
    when first used); ``LazyGroup`` for the group's ``--help`` flag (see ``LazyGroup.get_help_option``).
    """
    return typer.Typer(
        help=help_text, no_args_is_help=True, rich_markup_mode=None, add_completion=False, cls=LazyGroup, epilog=epilog
    )

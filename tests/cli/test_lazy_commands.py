"""Commands imported on first use: the listing, the names and the errors are those of the loaded commands."""

from __future__ import annotations

import pytest
import typer
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from ovformer_cli.app import COMMANDS, app
from ovformer_cli.lazy_commands import LazyCommand, LazyCommands, LazyGroup

runner = CliRunner()


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n")[0].split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_summary_is_the_first_paragraph_of_the_command_help(name: str) -> None:
    command = COMMANDS[name].load(name)
    assert command.help is not None
    assert COMMANDS[name].summary == _first_paragraph(command.help)


def _listing(group: TyperGroup, width: int, lazy: bool) -> str:
    ctx = typer.Context(group, info_name="ovformer", terminal_width=width, max_content_width=width)
    formatter = ctx.make_formatter()
    if lazy:
        group.format_commands(ctx, formatter)
    else:  # Typer's own listing, which builds every command to ask it for its short help
        TyperGroup.format_commands(group, ctx, formatter)
    return formatter.getvalue()


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_listing_is_typers_own_at_any_width(width: int) -> None:
    lazy = typer.main.get_command(app)
    eager = typer.main.get_command(app)
    assert isinstance(lazy, LazyGroup) and isinstance(eager, LazyGroup)
    listed = _listing(lazy, width, lazy=True)
    assert list(lazy.commands) == list(COMMANDS) and "segment" in listed
    assert listed == _listing(eager, width, lazy=False)


def test_a_mistyped_command_gets_one_line_and_a_suggestion() -> None:
    done = runner.invoke(app, ["segmnt"])
    assert done.exit_code == 2
    assert "No such command 'segmnt'. Did you mean 'segment'?" in done.output


@pytest.mark.parametrize("group", ["dataset", "weights"])
def test_nested_groups_offer_no_completion_options(group: str) -> None:
    done = runner.invoke(app, [group, "--help"])
    assert done.exit_code == 0 and "Commands:" in done.output
    assert "--install-completion" not in done.output


def test_lazy_commands_build_a_command_on_first_access_only() -> None:
    specs = {
        "vocab-encode": COMMANDS["vocab-encode"],
        "missing": LazyCommand("ovformer_cli.no_such_module", "command", "Never imported."),
    }
    commands = LazyCommands({}, specs)
    assert list(commands) == ["vocab-encode", "missing"] and len(commands) == 2 and "missing" in commands
    assert commands.peek("missing").help == "Never imported."  # listed without importing its module
    assert commands["vocab-encode"].name == "vocab-encode"
    with pytest.raises(ModuleNotFoundError):
        commands["missing"]
    with pytest.raises(KeyError):
        commands["unknown"]
    del commands["missing"]
    assert list(commands) == ["vocab-encode"] and commands.get("missing") is None

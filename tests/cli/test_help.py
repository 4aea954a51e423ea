"""``--help`` as a new user reads it: flags as flags, defaults, exit statuses, no surprising short options."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ovformer_cli.app import app

runner = CliRunner()


def help_text(*command: str) -> str:
    done = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    return done.output


@pytest.mark.parametrize("command", [[], ["segment"], ["export"], ["evaluate"], ["train"], ["import"]])
def test_help_lists_the_exit_statuses_and_prints_flags_as_flags(command: list[str]) -> None:
    text = help_text(*command)
    assert "<bool>" not in text
    assert "Exit status: 0 done; 1 segment: some inputs failed" in text and "128+N" in text


def option_blocks(text: str) -> dict[str, str]:
    """Each option's help, its wrapped lines joined, by its long name."""
    blocks: dict[str, str] = {}
    name = ""
    for line in text.split("Options:")[1].splitlines():
        words = line.split()
        if line.startswith("  -"):
            name = next(word for word in words if word.startswith("--")).rstrip(",")
            blocks[name] = " ".join(words)
        elif name and words and not line.startswith("  Exit status"):
            blocks[name] += " " + " ".join(words)
    return blocks


def test_segment_help_shows_every_default() -> None:
    blocks = option_blocks(help_text("segment"))
    assert blocks["--skip-existing"].startswith("--skip-existing Skip")  # a flag: no value placeholder
    for flag in ("--window", "--top-k", "--min-size", "--mode", "--device", "--threshold", "--model"):
        assert "[default:" in blocks[flag], blocks[flag]


def test_v_is_not_the_vocabulary() -> None:
    assert "-v," not in help_text("segment") and "-v," not in help_text("import")
    done = runner.invoke(app, ["segment", "clip.mp4", "-v", "cat"])
    assert done.exit_code == 2 and "No such option: -v" in done.output

"""The help (cli/parser.py): per command, once for everything, and the one exit-code table in the help and the docs."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from fal_kontext.cli import EXIT_CODES, main
from fal_kontext.cli import parser as cli_parser
from fal_kontext.cli.parser import EXAMPLES

ROOT = Path(__file__).resolve().parents[3]


OWN_OPTIONS = {
    "edit": "--aspect-ratio",
    "generate": "--aspect-ratio",
    "submit": "--webhook-url",
    "status": "--logs",
    "wait": "--cancel",
    "result": "--out",
    "batch": "--max-cost",
}


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("command", "own"), [(name, OWN_OPTIONS.get(name, "")) for name in EXAMPLES])
def test_a_command_s_help_shows_its_options_and_one_example(
    command: str, own: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help([command], capsys)
    example = text.split("example:\n", 1)[1].split("\n\n", 1)[0]
    assert example == f"  {EXAMPLES[command]}" and f"fal-kontext {command} " in example  # one, of this command
    assert own in text
    # the global options are named once, not described again (their help is the top-level help's)
    for elsewhere in ("exit codes:", "environment:", "queue base URL", "retries of failed calls", "FAL_KEY"):
        assert elsewhere not in text, elsewhere
    assert "fal-kontext --help" in text  # where they are


def test_the_top_level_help_has_the_global_options_environment_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help([], capsys)
    for everything in ("--base-url", "--absent-after", "--retries", "environment:", "FAL_KEY", "exit codes:"):
        assert everything in text, everything
    for row in EXIT_CODES:
        assert f"  {row.code:<4}{row.meaning}" in text


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for word in ("edit", "submit", "wait", "completion", "mock", "exit codes:", "FAL_KONTEXT_LOG_LEVEL"):
        assert word in text


def test_help_has_examples_and_exit_codes() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        main(["--help"])
    assert exited.value.code == 0
    text = out.getvalue()
    assert "examples:" in text and "exit codes:" in text and "FAL_KEY" in text


def test_the_help_example_reaches_its_second_command() -> None:
    for line in cli_parser.EPILOG.splitlines():
        assert not re.search(r"mock\b.*&&", line), line  # `mock` serves until stopped: && never continues


def test_one_exit_code_table_in_the_help_and_the_docs() -> None:
    rows = [(row.code, row.meaning) for row in EXIT_CODES]
    assert len({code for code, _ in rows}) == len(rows)
    for code, meaning in rows:
        assert f"  {code:<4}{meaning}" in cli_parser.EPILOG
    docs = (ROOT / "docs" / "client.md").read_text()
    table = re.findall(r"^\| (\d+) \| (.+?) \|$", docs, re.MULTILINE)
    assert [(int(code), meaning) for code, meaning in table] == rows

"""Launching mock and proxy (cli/server_launch.py) where the mock extra is missing."""

from __future__ import annotations

import sys

import pytest

from fal_kontext.cli import main
from fal_kontext.cli.exit_codes import EXIT_USAGE


def test_mock_without_the_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The emulator's package cannot be imported, as without the extra; set on the package, not its command module,
    # so that it holds even when an earlier test imported the emulator (the package then has `command` already).
    monkeypatch.setitem(sys.modules, "fal_kontext_emulator", None)
    assert main(["mock", "--port", "0"]) == EXIT_USAGE
    assert "pip install 'fal-kontext[mock]'" in capsys.readouterr().err

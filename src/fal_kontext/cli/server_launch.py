"""Launching ``fal-kontext mock`` and ``fal-kontext proxy``: their own parsers and runners, imported only when one
of them runs (both need the ``mock`` extra), so no other command, ``--help`` included, imports the emulator."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .parser import CommandParser, UsageError

__all__ = ["SERVER_COMMANDS", "run_server_command"]

# The commands whose options their own parser reads (``build_parser`` passes the rest of the line through).
SERVER_COMMANDS = ("mock", "proxy")


def _emulator_guide() -> str:
    """Where the emulator's guide is: the wheel ships docs/ as ``fal_kontext/docs`` (pyproject.toml)."""
    guide = Path(__file__).parents[1] / "docs" / "emulator.md"
    return str(guide) if guide.is_file() else "docs/emulator.md in the fal-kontext source"


def run_server_command(name: str, rest: list[str], usage_error: Callable[[str], int]) -> int:
    """``fal-kontext mock ...`` or ``fal-kontext proxy ...``: their own parser and runner, imported only now (both
    need the ``mock`` extra: Starlette, uvicorn); their usage errors in the command's one style (``usage_error``)."""
    what = {
        "mock": f"Serve a local emulator of fal.ai's queue API for FLUX.1 Kontext (guide: {_emulator_guide()}).",
        "proxy": "Forward your application's traffic to fal or an aggregator, checking every exchange against the "
        "spec and fal's queue rules (a loopback validating proxy).",
    }
    parser = CommandParser(prog=f"fal-kontext {name}", description=what[name])
    run: Callable[[argparse.Namespace], int]
    try:
        if name == "mock":
            from fal_kontext_emulator import command_line as command

            command.add_arguments(parser)

            def run(options: argparse.Namespace) -> int:
                return command.run_mock_command(options, usage_error=lambda text: usage_error(f"mock: {text}"))
        else:
            from fal_kontext_emulator import validating_proxy as proxy

            proxy.add_arguments(parser)
            run = proxy.run_proxy_command
    except ModuleNotFoundError as err:
        return usage_error(
            f"the {name} command needs the mock extra (missing module {err.name!r}): pip install 'fal-kontext[mock]'"
        )
    try:
        options = parser.parse_args(rest)
    except UsageError as err:
        return usage_error(str(err))
    return int(run(options))

"""`python -m fal_kontext_emulator`: the same as `fal-kontext mock`."""

from __future__ import annotations

import argparse
import sys

from fal_kontext_emulator.command_line import add_arguments, run_mock_command


def main() -> int:
    """Parse the options and serve the emulator."""
    parser = argparse.ArgumentParser(
        prog="python -m fal_kontext_emulator", description="Serve a local emulator of fal.ai's queue API."
    )
    add_arguments(parser)
    return run_mock_command(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())

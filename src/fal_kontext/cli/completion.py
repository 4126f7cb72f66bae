"""Shell completion (argcomplete, the ``completion`` extra): ``fal-kontext completion SHELL`` prints the shell code,
and a run the shell starts for completions is answered from the parser."""

from __future__ import annotations

import argparse
import os
import sys

from .exit_codes import EXIT_OK, EXIT_USAGE

__all__ = ["COMPLETION_HELP", "COMPLETION_MISSING", "answer_completion", "print_completion"]

COMPLETION_HELP = """\
Print the shell code that completes fal-kontext's commands and flags (argcomplete). For bash:
  eval "$(fal-kontext completion bash)"      # in ~/.bashrc"""

COMPLETION_MISSING = (
    "fal-kontext: error: shell completion needs the completion extra (missing module 'argcomplete'): "
    "pip install 'fal-kontext[completion]'"
)


def print_completion(shell: str) -> int:
    """``completion SHELL``: print the shell code; returns the exit code (usage error without argcomplete)."""
    try:
        import argcomplete
    except ModuleNotFoundError:
        print(COMPLETION_MISSING, file=sys.stderr)
        return EXIT_USAGE
    print(argcomplete.shellcode(["fal-kontext"], shell=shell), end="")  # type: ignore[attr-defined]
    return EXIT_OK


def answer_completion(parser: argparse.ArgumentParser) -> None:
    """When the shell asks for completions (``_ARGCOMPLETE`` is set), answer from ``parser`` and exit; else return."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ModuleNotFoundError:  # uninstalled since the shell code was made: never run the command itself
        print(COMPLETION_MISSING, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    argcomplete.autocomplete(parser)

"""The ``fal-kontext`` command: edit images, and follow requests by id, on fal or an aggregator.

On a terminal it shows progress (queue position, logs, elapsed time) and writes the images; piped, it prints one
JSON object per line on stdout (statuses, then the result or the error). The input flags are read from the spec's
input schemas, the model and endpoint choices from its endpoints. The key is read from the environment only, never
from the command line, and never printed.

One job per module:

- ``entry_point``: ``main``, from the command line to the exit code;
- ``parser``: the commands and their options, the help, usage errors; ``input_flags``: the flags read from the spec;
- ``queue_commands``: ``edit``/``generate``/``run``, ``submit``, ``status``, ``wait``, ``result``, ``cancel``;
  ``batch_command``: ``batch`` (on ``fal_kontext.batch``);
- ``output``: JSON lines and the progress line; ``messages``: errors in the command line's words;
  ``exit_codes``: the one table and the outcome each error is;
- ``logs``: ``-v``/``-vv`` and ``FAL_KONTEXT_LOG_LEVEL``; ``headers``: ``--headers``; ``completion``: shell completion;
- ``server_launch``: ``mock`` and ``proxy``, which import the emulator only when they run.
"""

from .entry_point import main
from .exit_codes import EXIT_CODES, ExitCode, exit_code_for
from .output import Progress, Ticker
from .parser import build_parser

__all__ = ["EXIT_CODES", "ExitCode", "Progress", "Ticker", "build_parser", "exit_code_for", "main"]

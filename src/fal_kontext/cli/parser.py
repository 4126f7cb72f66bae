"""The parser of ``fal-kontext``: its commands, their options (the input flags from the spec), the help's examples,
environment and exit codes, and usage errors raised as ``UsageError`` rather than printed by argparse."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from fal_kontext import DEFAULT_MAX_IMAGE_BYTES, __version__
from fal_kontext.batch import DEFAULT_CONCURRENCY
from fal_kontext.config import ENV_AUTH, ENV_BASE_URL, ENV_TOKEN
from fal_kontext.spec import endpoint_specs, parameter_schema

from .batch_command import batch_command
from .completion import COMPLETION_HELP
from .exit_codes import exit_code_lines
from .input_flags import add_input_flags, add_model_options, input_flags
from .logs import ENV_LOG_LEVEL
from .queue_commands import (
    cancel_command,
    edit_command,
    result_command,
    status_command,
    submit_command,
    wait_command,
)

__all__ = ["COMMAND_EPILOG", "EPILOG", "EXAMPLES", "CommandParser", "UsageError", "build_parser"]

EPILOG = f"""\
examples:
  fal-kontext edit "Put a donut next to the flour" kitchen.jpg --out out/
  fal-kontext edit "Put the duck on the t-shirt" woman.png duck.png --model max --aspect-ratio 3:4
  id=$(fal-kontext submit "Make it night" https://example.com/street.jpg)   # prints the request id
  fal-kontext wait "$id" --out out/
  fal-kontext status "$id" --logs
  fal-kontext edit "..." in.png | jq .                                   # piped: JSON lines
  fal-kontext batch jobs.jsonl --out out/                                # many edits, resumable
  fal-kontext mock --port 8000 &                                         # the local emulator, in the background
  FAL_KEY=test-key fal-kontext --base-url http://127.0.0.1:8000 edit "..." in.png

environment:
  FAL_KEY (or FAL_KEY_ID + FAL_KEY_SECRET)   the fal key, sent as "Authorization: Key ..."
  {ENV_TOKEN}                          an aggregator's token (with --auth bearer)
  {ENV_BASE_URL}, {ENV_AUTH}     defaults of --base-url and --auth
  {ENV_LOG_LEVEL}                      log level of fal_kontext's own messages (debug, info, warning, ...)

exit codes:
{exit_code_lines()}
"""


# One example per command, at the end of its --help (the top-level help has the tour).
EXAMPLES = {
    "edit": 'fal-kontext edit "Put a donut next to the flour" kitchen.jpg --out out/',
    "generate": 'fal-kontext generate "A lighthouse at dusk" --model max --out out/',
    "submit": 'id=$(fal-kontext submit "Make it night" https://example.com/street.jpg)   # prints the request id',
    "status": 'fal-kontext status "$id" --logs',
    "wait": 'fal-kontext wait "$id" --out out/',
    "result": 'fal-kontext result "$id" --out out/',
    "cancel": 'fal-kontext cancel "$id"',
    "batch": "fal-kontext batch jobs.jsonl --out out/ --max-cost 5",
    "run": 'fal-kontext run fal-ai/flux-pro/kontext/max "Make it night" street.jpg --seed 7 --out out/',
}
COMMAND_EPILOG = (
    "The global options (--base-url, --auth, --json, -v, --headers, --retries, --absent-after) go before or after\n"
    "the command. Those, the environment variables and the exit codes are listed by: fal-kontext --help"
)


class UsageError(Exception):
    """The command line is not one ``fal-kontext`` can run (an argparse error): reported in the command's one error
    style, with exit code 2."""


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are ``UsageError`` (a short line, and a JSON line when piped: ``main``), not
    argparse's usage block and exit."""

    def error(self, message: str) -> NoReturn:
        """Raise ``UsageError`` naming the command and where its options are listed."""
        command = self.prog.removeprefix("fal-kontext").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see: {self.prog} --help)")


def _add_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="folder for the images (on a terminal: default the current folder)"
    )


def _add_wait_options(parser: argparse.ArgumentParser, *, submits: bool) -> None:
    _add_out_option(parser)
    parser.add_argument(
        "--timeout", type=float, default=900.0, metavar="S", help="seconds to wait (default 900; 0: no limit)"
    )
    parser.add_argument("--poll", action="store_true", help="poll the status instead of following the stream")
    who = "yes: this command submitted it" if submits else "no: it was submitted elsewhere"
    parser.add_argument(
        "--cancel",
        action=argparse.BooleanOptionalAction,
        default=submits,
        help=f"cancel the request on Ctrl-C or when --timeout passes (default {who})",
    )


def _add_submit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start-timeout", type=float, metavar="S", help="seconds the request may wait to start")
    priorities = [str(value) for value in parameter_schema("QueuePriority")["enum"]]
    parser.add_argument("--priority", choices=priorities, help="queue priority (X-Fal-Queue-Priority)")
    parser.add_argument("--webhook-url", metavar="URL", help="fal also POSTs the result to this URL")
    parser.add_argument(
        "--max-image-bytes",
        type=int,
        default=DEFAULT_MAX_IMAGE_BYTES,
        metavar="N",
        help=f"largest local image sent inline (default {DEFAULT_MAX_IMAGE_BYTES}; ours, fal states no limit)",
    )


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--base-url, --auth, --json, -v, --headers, --retries; ``default=SUPPRESS`` for the copies after the command,
    which a command's ``--help`` does not list (the top-level help does, once)."""
    flag_default = False if default is None else default

    def shown(text: str) -> str:
        return argparse.SUPPRESS if default is argparse.SUPPRESS else text

    parser.add_argument(
        "--base-url", default=default, help=shown(f"queue base URL (default ${ENV_BASE_URL} or https://queue.fal.run)")
    )
    parser.add_argument(
        "--auth",
        choices=["key", "bearer"],
        default=default,
        help=shown(f"Authorization scheme (default ${ENV_AUTH} or key)"),
    )
    parser.add_argument(
        "--json", action="store_true", default=flag_default, help=shown("print JSON lines on a terminal too")
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help=shown("log fal_kontext's messages and each HTTP request to stderr; -vv adds httpx/httpcore debug"),
    )
    parser.add_argument(
        "--headers",
        action="store_true",
        default=flag_default,
        help=shown("print each HTTP response's headers to stderr"),
    )
    parser.add_argument(
        "--retries", type=int, default=default, metavar="N", help=shown("retries of failed calls (default 4; 0: none)")
    )
    parser.add_argument(
        "--absent-after",
        type=float,
        default=default,
        metavar="SECONDS",
        help=shown(
            "a submit whose answer was lost (or under way when a batch stopped) is sent again only after fal's "
            "request list shows no such job for this long (default 60)"
        ),
    )


# Adds a sub-command: (name, help, handler) -> its parser.
_Command = Callable[[str, str, Callable[..., int]], argparse.ArgumentParser]


def _add_by_id_commands(command: _Command) -> None:
    """status, wait, result and cancel: the commands that follow a request by its id."""
    status = command("status", "show where a request is", status_command)
    status.add_argument("request_id", metavar="REQUEST_ID", help="the id printed by submit")
    status.add_argument("--logs", action="store_true", help="include the logs")

    wait = command("wait", "wait for a request and get its result", wait_command)
    wait.add_argument("request_id", metavar="REQUEST_ID", help="the id printed by submit")
    _add_wait_options(wait, submits=False)

    result = command("result", "get the result of a completed request (does not wait)", result_command)
    result.add_argument("request_id", metavar="REQUEST_ID", help="the id printed by submit")
    _add_out_option(result)

    cancel = command("cancel", "cancel a request", cancel_command)
    cancel.add_argument("request_id", metavar="REQUEST_ID", help="the id printed by submit")
    apps = sorted({endpoint.app for endpoint in endpoint_specs()})
    for parser in (status, wait, result, cancel):
        # fal serves a request under its endpoint's app; with one app in the spec the request id alone says where.
        parser.add_argument(
            "--endpoint",
            choices=[endpoint.id for endpoint in endpoint_specs()],
            default=None,
            help="the endpoint the request was submitted to"
            + ("" if len(apps) == 1 else f" (needed: the spec's endpoints live under {len(apps)} apps)"),
        )


def _add_run_commands(command: _Command) -> None:
    """run ENDPOINT: any endpoint of the spec by its id, with exactly the flags of its own input schema."""
    run = command("run", "run any endpoint of the spec by its id and wait for the result", edit_command)
    endpoints = run.add_subparsers(dest="endpoint", metavar="ENDPOINT", required=True)
    for endpoint in endpoint_specs():
        sub = endpoints.add_parser(endpoint.id, help=f"{endpoint.family} ({endpoint.input_schema})", allow_abbrev=False)
        sub.add_argument("prompt", metavar="PROMPT", help="the prompt")
        if endpoint.image_field is not None:
            many = endpoint.image_field == "image_urls"
            sub.add_argument("images", nargs="+" if many else 1, metavar="IMAGE", help="input image: a path or a URL")
        else:
            sub.set_defaults(images=[])
        sub.set_defaults(endpoint_specs=(endpoint,), model=None)
        _add_submit_options(sub)
        _add_wait_options(sub, submits=True)
        add_input_flags(sub, input_flags([endpoint]))


def _add_batch_options(batch: argparse.ArgumentParser) -> None:
    """The batch command's arguments (``BatchOptions`` and the manifest)."""
    batch.add_argument(
        "manifest",
        type=Path,
        metavar="MANIFEST",
        help="JSON lines: per line the input fields, and optionally id, endpoint or model, image or images",
    )
    batch.add_argument(
        "--out", type=Path, metavar="DIR", required=True, help="output folder: DIR/<id>/ per line, and the journal"
    )
    batch.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="jobs in flight at once (default %(default)s)",
    )
    batch.add_argument("--max-cost", type=float, metavar="USD", help="stop submitting before the estimate passes USD")
    batch.add_argument(
        "--resubmit-ambiguous",
        action="store_true",
        help="send again lines whose submit was under way when a run stopped (they may be queued: may pay twice)",
    )
    batch.add_argument(
        "--retry-failed", action="store_true", help="submit again lines whose request failed in an earlier run"
    )
    batch.add_argument(
        "--max-image-bytes", type=int, default=DEFAULT_MAX_IMAGE_BYTES, metavar="N", help="largest local image inlined"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fal-kontext`` (the ``mock`` command's own options are parsed when it runs)."""
    parser = CommandParser(
        prog="fal-kontext",
        description="Edit images with FLUX.1 Kontext on fal.ai (or an aggregator), and follow queued requests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"fal-kontext {__version__}")
    _add_global_options(parser, None)
    # The same options are accepted after the command name too (``fal-kontext edit ... --base-url URL``).
    common = CommandParser(add_help=False, allow_abbrev=False)
    _add_global_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    specs = endpoint_specs()
    image_specs = [spec for spec in specs if spec.family != "text-to-image"]
    text_specs = [spec for spec in specs if spec.family == "text-to-image"]

    def command(name: str, text: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=text,
            description=text[:1].upper() + text[1:] + ".",
            epilog=f"example:\n  {EXAMPLES[name]}\n\n{COMMAND_EPILOG}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
            allow_abbrev=False,
        )
        sub.set_defaults(handler=handler)
        return sub

    edit = command("edit", "edit images and wait for the result", edit_command)
    edit.add_argument("prompt", metavar="PROMPT", help="what to change")
    edit.add_argument("images", nargs="+", metavar="IMAGE", help="input image: a path or a URL; several: multi")
    add_model_options(edit, image_specs)
    _add_submit_options(edit)
    _add_wait_options(edit, submits=True)
    add_input_flags(edit, input_flags(image_specs))

    if text_specs:
        generate = command("generate", "make an image from a prompt alone and wait for the result", edit_command)
        generate.add_argument("prompt", metavar="PROMPT", help="what to make")
        generate.set_defaults(images=[])
        add_model_options(generate, text_specs)
        _add_submit_options(generate)
        _add_wait_options(generate, submits=True)
        add_input_flags(generate, input_flags(text_specs))

    submit = command("submit", "queue a request and print its request id (--json: a JSON line)", submit_command)
    submit.add_argument("prompt", metavar="PROMPT", help="what to change or make")
    submit.add_argument(
        "images", nargs="+" if not text_specs else "*", metavar="IMAGE", help="input image(s): paths or URLs"
    )
    add_model_options(submit, specs)
    _add_submit_options(submit)
    add_input_flags(submit, input_flags(specs))

    _add_by_id_commands(command)
    _add_run_commands(command)
    _add_batch_options(command("batch", "run many jobs from a JSON lines manifest, resumably", batch_command))

    completion = commands.add_parser(
        "completion",
        help="print the shell completion script (needs: pip install 'fal-kontext[completion]')",
        description=COMPLETION_HELP,
    )
    completion.add_argument("shell", choices=["bash", "zsh", "fish", "tcsh", "powershell"])
    completion.set_defaults(handler=None)

    # Its options are parsed by the emulator's own parser when it runs, so `--help` never imports the emulator.
    commands.add_parser(
        "mock",
        help="run the local emulator of fal's queue API (needs: pip install 'fal-kontext[mock]')",
        add_help=False,
    ).set_defaults(handler=None)
    commands.add_parser(
        "proxy",
        help="check your own traffic to fal or an aggregator against the spec and fal's queue rules "
        "(needs: pip install 'fal-kontext[mock]')",
        add_help=False,
    ).set_defaults(handler=None)
    return parser

"""The ``fal-kontext`` command: edit images, and follow requests by id, on fal or an aggregator.

On a terminal it shows progress (queue position, logs, elapsed time) and writes the images; piped, it prints one
JSON object per line on stdout (statuses, then the result or the error). The input flags are read from the spec's
input schemas, the model and endpoint choices from its endpoints. The key is read from the environment only, never
from the command line, and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, TextIO

import httpx

from . import __version__
from .aio import AsyncKontext
from .batch import (
    DEFAULT_CONCURRENCY,
    JOURNAL_NAME,
    BatchJob,
    BatchOptions,
    BatchSummary,
    ManifestError,
    check_journal,
    choose_endpoint_spec,
    estimate_cost,
    journal_states,
    read_manifest,
    run_batch,
    tier_order,
)
from .client import Handle, Kontext
from .config import ENV_AUTH, ENV_BASE_URL, ENV_TOKEN, Credentials, redact
from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    InvalidInputError,
    KontextError,
    MissingCredentialsError,
    NotFoundError,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    ResultNotReadyError,
    ServerError,
    StartTimeoutError,
    ValidationError,
    WaitTimeoutError,
)
from .files import DEFAULT_MAX_IMAGE_BYTES, image_source_to_url
from .log_redaction import secret_forms
from .recovery import LookupStarted, RecoveryPolicy
from .results import EditResult
from .retry import RetryPolicy
from .spec import EndpointSpec, endpoint_specs, parameter_schema, resolve, resolved_schema
from .status import Completed, InProgress, Queued, Status

__all__ = ["EXIT_CODES", "ExitCode", "Progress", "Ticker", "build_parser", "exit_code_for", "main"]

ENV_LOG_LEVEL = "FAL_KONTEXT_LOG_LEVEL"
# The progress line is redrawn at least this often, so elapsed time moves while the status does not.
TICK_SECONDS = 0.25


@dataclass(frozen=True)
class ExitCode:
    """One row of the exit-code table (``--help``, docs/client.md): the same outcome, the same code, every command."""

    code: int
    meaning: str


EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_FAILED = 5
EXIT_TIMEOUT = 6
EXIT_UNAVAILABLE = 7
EXIT_CANCELLED = 8
EXIT_NOT_READY = 9
EXIT_BUDGET = 10
EXIT_AMBIGUOUS = 11
EXIT_INTERRUPTED = 130

EXIT_CODES = (
    ExitCode(EXIT_OK, "done"),
    ExitCode(EXIT_ERROR, "other error (e.g. the images could not be written; the message names the request)"),
    ExitCode(EXIT_USAGE, "bad usage or input: nothing was sent"),
    ExitCode(EXIT_AUTH, "the key is missing or was refused"),
    ExitCode(EXIT_NOT_FOUND, "unknown request id, or its result expired"),
    ExitCode(EXIT_FAILED, "the request failed (model error, content policy, input rejected by the server)"),
    ExitCode(EXIT_TIMEOUT, "timed out: --timeout passed, or the request did not start within --start-timeout"),
    ExitCode(EXIT_UNAVAILABLE, "network error, rate limit or server error, after the retries"),
    ExitCode(EXIT_CANCELLED, "the request was cancelled"),
    ExitCode(EXIT_NOT_READY, "the request has not finished yet (result)"),
    ExitCode(EXIT_BUDGET, "batch: --max-cost reached, some lines were not submitted"),
    ExitCode(
        EXIT_AMBIGUOUS, "batch: some lines may have been submitted before a stop; not sent again (the message says)"
    ),
    ExitCode(EXIT_INTERRUPTED, "interrupted (Ctrl-C); the message says whether the request was cancelled"),
)


def _exit_code_lines() -> str:
    return "\n".join(f"  {row.code:<4}{row.meaning}" for row in EXIT_CODES)


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
{_exit_code_lines()}
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


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ``UsageError`` (a short line, and a JSON line when piped: ``main``), not
    argparse's usage block and exit."""

    def error(self, message: str) -> NoReturn:
        """Raise ``UsageError`` naming the command and where its options are listed."""
        command = self.prog.removeprefix("fal-kontext").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see: {self.prog} --help)")


# --- input flags, read from the spec -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFlag:
    """A command-line flag for one optional input field of the spec."""

    field: str
    flag: str
    schema: dict[str, Any]


def _optional_fields(specs: Iterable[EndpointSpec]) -> dict[str, dict[str, Any]]:
    """Every optional input field of these endpoints, merged by name (enum choices united), in spec order."""
    fields: dict[str, dict[str, Any]] = {}
    for endpoint in specs:
        schema = resolved_schema(endpoint.input_schema)
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            if name in required or name == endpoint.image_field:
                continue
            if name in fields and "enum" in prop and "enum" in fields[name]:
                merged = list(fields[name]["enum"]) + [v for v in prop["enum"] if v not in fields[name]["enum"]]
                fields[name] = {**fields[name], "enum": merged}
            fields.setdefault(name, dict(prop))
    return fields


def input_flags(specs: Iterable[EndpointSpec]) -> list[InputFlag]:
    """The flags for the optional input fields of ``specs`` (``aspect_ratio`` -> ``--aspect-ratio``)."""
    return [InputFlag(name, "--" + name.replace("_", "-"), schema) for name, schema in _optional_fields(specs).items()]


def _first_sentence(text: str) -> str:
    sentence = text.strip().split(". ", 1)[0].rstrip(".")
    return sentence[:1].lower() + sentence[1:] if sentence else ""


def _flag_help(schema: dict[str, Any]) -> str:
    parts = [_first_sentence(str(schema.get("description", "")))]
    if "minimum" in schema and "maximum" in schema:
        parts.append(f"{schema['minimum']:g} to {schema['maximum']:g}")
    if "default" in schema:
        parts.append(f"server default {schema['default']}")
    return "; ".join(part for part in parts if part).replace("%", "%%")


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None


_ARG_TYPES: dict[str, Callable[[str], Any]] = {"integer": int, "number": float, "string": str}


def _union_value(schema: dict[str, Any]) -> Callable[[str], Any]:
    """A flag of a union field (fal's `image_size`: a named size or an object): a value one of its enums lists is
    taken as it is, anything else as JSON."""
    named = {str(v) for member in schema["anyOf"] for v in resolve(member).get("enum", [])}

    def parse(text: str) -> Any:
        return text if text in named else _json_value(text)

    return parse


def _add_input_flags(parser: argparse.ArgumentParser, flags: Sequence[InputFlag]) -> None:
    """Add the flags (after the command's own: a field named like one of them gets an ``--input-`` prefix)."""
    group = parser.add_argument_group("input fields (from the API spec)")
    taken = set(parser._option_string_actions)
    flags = [replace(item, flag="--input-" + item.flag[2:]) if item.flag in taken else item for item in flags]
    for item in flags:
        schema = item.schema
        kind = schema.get("type")
        common: dict[str, Any] = {"dest": f"input_{item.field}", "default": None, "help": _flag_help(schema)}
        if "enum" in schema:
            group.add_argument(item.flag, choices=[str(v) for v in schema["enum"]], **common)
        elif "anyOf" in schema:
            group.add_argument(item.flag, type=_union_value(schema), metavar="VALUE|JSON", **common)
        elif kind == "boolean":
            group.add_argument(item.flag, action=argparse.BooleanOptionalAction, **common)
        elif kind == "array":
            items = schema.get("items", {})
            group.add_argument(item.flag, nargs="+", type=_ARG_TYPES.get(items.get("type"), _json_value), **common)
        else:
            metavar = {"integer": "N", "number": "X"}.get(kind or "", "VALUE")
            group.add_argument(item.flag, type=_ARG_TYPES.get(kind or "", _json_value), metavar=metavar, **common)
    parser.set_defaults(input_flags=tuple(flags))


def _input_values(args: argparse.Namespace) -> dict[str, Any]:
    return {
        item.field: value
        for item in getattr(args, "input_flags", ())
        if (value := getattr(args, f"input_{item.field}")) is not None
    }


def _flag_for_field(field: str, args: argparse.Namespace) -> str:
    """How the command line names an input field: its flag, or the PROMPT/IMAGE argument."""
    base = field.split("[", 1)[0]
    flags: tuple[InputFlag, ...] = getattr(args, "input_flags", ())
    for item in flags:
        if item.field == base:
            return item.flag + field[len(base) :]
    if base.startswith("image_url") or base == "image":
        return "IMAGE"
    return base.upper() if base == "prompt" else field


def _add_model_options(parser: argparse.ArgumentParser, specs: Sequence[EndpointSpec]) -> None:
    tiers = [tier for tier in tier_order(specs) if any(endpoint.tier == tier for endpoint in specs)]
    parser.add_argument(
        "--model", choices=tiers, default=None, help=f"the model tier (default {tiers[0]}); see also --endpoint"
    )
    parser.add_argument(
        "--endpoint", choices=[endpoint.id for endpoint in specs], help="the exact endpoint (overrides --model)"
    )
    parser.set_defaults(endpoint_specs=tuple(specs))


# --- the parser ----------------------------------------------------------------------------------------------------


def _add_wait_options(parser: argparse.ArgumentParser, *, submits: bool) -> None:
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="folder for the images (on a terminal: default the current folder)"
    )
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
    status = command("status", "show where a request is", _status)
    status.add_argument("request_id", metavar="REQUEST_ID", help="the id printed by submit")
    status.add_argument("--logs", action="store_true", help="include the logs")

    wait = command("wait", "wait for a request and get its result", _wait)
    wait.add_argument("request_id", metavar="REQUEST_ID", help="the id printed by submit")
    _add_wait_options(wait, submits=False)

    result = command("result", "get the result of a completed request (does not wait)", _result)
    result.add_argument("request_id", metavar="REQUEST_ID", help="the id printed by submit")
    result.add_argument(
        "--out", type=Path, metavar="DIR", help="folder for the images (on a terminal: default the current folder)"
    )

    cancel = command("cancel", "cancel a request", _cancel)
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
    run = command("run", "run any endpoint of the spec by its id and wait for the result", _edit)
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
        _add_input_flags(sub, input_flags([endpoint]))


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
    parser = _Parser(
        prog="fal-kontext",
        description="Edit images with FLUX.1 Kontext on fal.ai (or an aggregator), and follow queued requests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"fal-kontext {__version__}")
    _add_global_options(parser, None)
    # The same options are accepted after the command name too (``fal-kontext edit ... --base-url URL``).
    common = _Parser(add_help=False, allow_abbrev=False)
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

    edit = command("edit", "edit images and wait for the result", _edit)
    edit.add_argument("prompt", metavar="PROMPT", help="what to change")
    edit.add_argument("images", nargs="+", metavar="IMAGE", help="input image: a path or a URL; several: multi")
    _add_model_options(edit, image_specs)
    _add_submit_options(edit)
    _add_wait_options(edit, submits=True)
    _add_input_flags(edit, input_flags(image_specs))

    if text_specs:
        generate = command("generate", "make an image from a prompt alone and wait for the result", _edit)
        generate.add_argument("prompt", metavar="PROMPT", help="what to make")
        generate.set_defaults(images=[])
        _add_model_options(generate, text_specs)
        _add_submit_options(generate)
        _add_wait_options(generate, submits=True)
        _add_input_flags(generate, input_flags(text_specs))

    submit = command("submit", "queue a request and print its request id (--json: a JSON line)", _submit)
    submit.add_argument("prompt", metavar="PROMPT", help="what to change or make")
    submit.add_argument(
        "images", nargs="+" if not text_specs else "*", metavar="IMAGE", help="input image(s): paths or URLs"
    )
    _add_model_options(submit, specs)
    _add_submit_options(submit)
    _add_input_flags(submit, input_flags(specs))

    _add_by_id_commands(command)
    _add_run_commands(command)
    _add_batch_options(command("batch", "run many jobs from a JSON lines manifest, resumably", _batch))

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


COMPLETION_HELP = """\
Print the shell code that completes fal-kontext's commands and flags (argcomplete). For bash:
  eval "$(fal-kontext completion bash)"      # in ~/.bashrc"""


# --- output --------------------------------------------------------------------------------------------------------


def _status_name(status: Status) -> str:
    if isinstance(status, Queued):
        return "IN_QUEUE"
    if isinstance(status, InProgress):
        return "IN_PROGRESS"
    return "COMPLETED"


def _where(status: Status) -> str:
    if isinstance(status, Queued):
        return "in queue" + (f", position {status.position}" if status.position is not None else "")
    if isinstance(status, InProgress):
        return "running"
    return "completed"


class Progress:
    """The progress line on a terminal: ``[elapsed] request: where``, redrawn on each status and on every tick.

    Args:
        stream: The terminal to draw on.
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.text = ""
        self._open = False
        self._lock = threading.Lock()

    def update(self, status: Status) -> None:
        """Show a new status, with its new log lines above the progress line."""
        with self._lock:
            for entry in status.logs:
                self.stream.write(f"\r\033[K  log: {entry.message}\n")
            self.text = f"{status.request_id}: {_where(status)}"
        self.draw()

    def show(self, text: str) -> None:
        """Show ``text`` as the progress line (what the command is waiting for)."""
        with self._lock:
            self.text = text
        self.draw()

    def clear(self) -> None:
        """End the progress line and forget its text (until the next status)."""
        with self._lock:
            self._end()
            self.text = ""
            self.stream.flush()

    def draw(self) -> None:
        """Redraw the line with the current elapsed time (nothing before the first status)."""
        with self._lock:
            if not self.text:
                return
            elapsed = self.clock() - self.started
            self.stream.write(f"\r\033[K[{elapsed:6.1f}s] {self.text}")
            self.stream.flush()
            self._open = True

    def line(self, text: str) -> None:
        """A whole line (the progress line, if drawn, is ended first)."""
        with self._lock:
            self._end()
            self.stream.write(text + "\n")
            self.stream.flush()

    def end_line(self) -> None:
        """End the progress line, if drawn, so that what is written next (on the same terminal, through another
        stream) starts on a line of its own."""
        with self._lock:
            self._end()
            self.stream.flush()

    def _end(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


class Ticker:
    """Calls ``tick`` every ``interval`` seconds in a background thread while in its ``with`` block.

    Args:
        tick: What to call.
        interval: Seconds between calls.
        wait: ``wait(seconds) -> stop?`` (default: the stop event's wait; tests pass a fake clock's).
    """

    def __init__(self, tick: Callable[[], None], interval: float, wait: Callable[[float], bool] | None = None) -> None:
        self.tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Tick until stopped."""
        while not self._wait(self.interval):
            self.tick()

    def __enter__(self) -> Ticker:
        self._thread = threading.Thread(target=self.run, name="fal-kontext-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Output:
    """Where the command writes: JSON lines on stdout when piped (or ``--json``); for people, a terminal.

    Progress goes to whichever of stderr and stdout is a terminal (stderr first), so ``edit ... > log`` still shows
    it; human lines go to stdout, or to that terminal when stdout carries JSON.
    """

    def __init__(self, *, json_lines: bool, stdout: TextIO, stderr: TextIO, secret: str | None = None) -> None:
        self.json_lines = json_lines
        self.stdout = stdout
        self.stderr = stderr
        self.secret = secret
        terminal = stderr if stderr.isatty() else stdout if stdout.isatty() and not json_lines else None
        self.progress = Progress(terminal) if terminal is not None else None
        self._human = stdout if not json_lines else terminal

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON line (only in JSON mode)."""
        if self.json_lines:
            print(json.dumps({"event": event, **fields}, default=str), file=self.stdout, flush=True)

    def say(self, text: str) -> None:
        """A line for people, where people look (nothing when both streams are piped)."""
        if self._human is None:
            return
        if self.progress is not None and self._human is self.progress.stream:
            self.progress.line(text)
            return
        if self.progress is not None:  # both are the terminal: the progress line ends before this one starts
            self.progress.end_line()
        print(text, file=self._human, flush=True)

    def note(self, text: str) -> None:
        """A line on stderr, whatever the mode."""
        if self.progress is not None and self.progress.stream is self.stderr:
            self.progress.line(f"fal-kontext: {text}")
        else:
            print(f"fal-kontext: {text}", file=self.stderr, flush=True)

    def update(self, status: Status) -> None:
        """Report a status: a JSON line and the progress line."""
        if self.progress is not None:
            self.progress.update(status)
        self.emit(
            "status",
            request_id=status.request_id,
            status=_status_name(status),
            queue_position=status.position if isinstance(status, Queued) else None,
            logs=[entry.message for entry in status.logs],
        )

    def looking_up(self, started: LookupStarted) -> None:
        """Report that a submit's outcome is being looked up in the request list (it may take a minute or more)."""
        self.emit(
            "looking_up",
            endpoint=started.endpoint_id,
            what_happened=started.what_happened,
            request_id=started.request_id,
            timeout=started.timeout,
            message=str(started),
        )
        if self.progress is not None:
            self.progress.show(str(started))
        else:
            self.note(str(started))

    def ticking(self) -> Ticker | None:
        """A ticker that keeps the progress line's elapsed time moving, or None without a terminal."""
        return Ticker(self.progress.draw, TICK_SECONDS) if self.progress is not None else None

    def error(self, message: str, err: BaseException, request_id: str | None, code: int) -> None:
        """Report an error (the secret is redacted, belt and braces)."""
        message = redact(message, self.secret)
        self.emit("error", type=type(err).__name__, message=message, request_id=request_id, exit_code=code)
        self.note(f"error: {message}")


class LookupWatch:
    """``RecoveryPolicy.on_lookup`` of the command: shows a lookup as it starts, and remembers it, so that Ctrl-C
    during it can say that the job may exist and how to look it up (``interrupted``)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.started: LookupStarted | None = None

    def __call__(self, started: LookupStarted) -> None:
        self.started = started
        self.out.looking_up(started)

    @contextlib.contextmanager
    def submitting(self) -> Iterator[None]:
        """Around a submit: Ctrl-C during its lookup becomes a ``CommandError`` that says what may exist."""
        self.started = None
        try:
            yield
        except KeyboardInterrupt:
            if self.started is None:
                raise
            unknown = self.started.interrupted()
            raise CommandError(f"interrupted: {cli_message(unknown)}", EXIT_INTERRUPTED, unknown.request_id) from None
        finally:
            if self.started is not None and self.out.progress is not None:
                self.out.progress.clear()
            self.started = None


# --- errors in the command line's words ---------------------------------------------------------------------------


class CommandError(KontextError):
    """An outcome the command reports itself, with its exit code (and the request it concerns)."""

    def __init__(self, message: str, code: int, request_id: str | None = None) -> None:
        self.code = code
        self.request_id = request_id
        super().__init__(message)


class Interrupted(Exception):
    """Ctrl-C while following a request; ``cancel``: whether this command should cancel it."""

    def __init__(self, handle: Handle, *, cancel: bool, out_folder: Path | None) -> None:
        self.handle = handle
        self.cancel = cancel
        self.out_folder = out_folder
        super().__init__(handle.request_id)


def _is_cancelled(err: BaseException) -> bool:
    # A cancelled request's result: fal does not document it; the emulator answers 400 error_type request_cancelled.
    return isinstance(err, RequestCancelledError) or (
        isinstance(err, APIStatusError) and err.error_type == "request_cancelled"
    )


def exit_code_for(err: BaseException) -> int:
    """The exit code of an outcome (``EXIT_CODES``), the same whichever command met it."""
    if isinstance(err, CommandError):
        return err.code
    if isinstance(err, MissingCredentialsError):
        return EXIT_AUTH
    if isinstance(err, InvalidInputError):
        return EXIT_USAGE
    if _is_cancelled(err):
        return EXIT_CANCELLED
    if isinstance(err, AuthenticationError):
        return EXIT_AUTH
    if isinstance(err, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(err, ResultNotReadyError):
        return EXIT_NOT_READY
    if isinstance(err, (StartTimeoutError, WaitTimeoutError)):
        return EXIT_TIMEOUT
    if isinstance(err, (RequestFailedError, ValidationError)):
        return EXIT_FAILED
    if isinstance(err, (APIConnectionError, ServerError, RateLimitError)):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def _about(request_id: str | None) -> str:
    return f" (request {request_id})" if request_id else ""


def cli_message(err: BaseException, args: argparse.Namespace | None = None) -> str:
    """The message of ``err`` in the command line's words: flags and commands, not Python arguments."""
    request_id = getattr(err, "request_id", None)
    rid = request_id or "REQUEST_ID"
    if isinstance(err, MissingCredentialsError):
        return _cli_words(str(err))
    if isinstance(err, InvalidInputError):
        where = f" for {err.endpoint}" if err.endpoint else ""
        problems = "; ".join(
            f"{_flag_for_field(p.field, args) if args else p.field}: {_cli_words(p.problem)}" for p in err.problems
        )
        return f"invalid input{where}, nothing was sent: {problems}"
    if isinstance(err, APIStatusError):
        kind = f" [{err.error_type}]" if err.error_type else ""
        head = f"HTTP {err.status_code}{kind}{_about(request_id)}: {err.detail.rstrip('.')}"
        if isinstance(err, ResultNotReadyError):
            return f"{head}. Wait for it: fal-kontext wait {rid}; or see where it is: fal-kontext status {rid}"
        if isinstance(err, AuthenticationError):
            return (
                f"{head}. Set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET) for fal, or {ENV_TOKEN} with --auth bearer "
                "for an aggregator; check that --base-url matches the credential"
            )
        if isinstance(err, StartTimeoutError):
            return f"{head}. Submit again with a longer --start-timeout, or at a quieter time"
        if _is_cancelled(err):
            return f"request {rid} was cancelled; submit it again to get a result"
    return _cli_words(str(err))


# Python words that other layers' messages may use, and what the command line calls them.
_CLI_WORDS = (
    ("raise max_image_bytes", "raise --max-image-bytes"),
    ("(edit() encodes files)", "(give a local file or a URL)"),
    ("timeout=...", "--timeout"),
    ("start_timeout", "--start-timeout"),
    ("auth='bearer'", "--auth bearer"),
    ("call wait()", "run fal-kontext wait REQUEST_ID"),
    ("resubmit_ambiguous=True", "--resubmit-ambiguous"),
    ("RecoveryPolicy.absent_after", "--absent-after"),
    (", or pass key=...", ""),
)


# How SubmitOutcomeUnknownError says to check a request: the command is the command line's way.
_CHECK_IN_PYTHON = re.compile(r"Kontext\.handle\((['\"])(.+?)\1\)\.status\(\) \(or (`fal-kontext status \2`)\)")


def _cli_words(text: str) -> str:
    for python, cli in _CLI_WORDS:
        text = text.replace(python, cli)
    text = _CHECK_IN_PYTHON.sub(r"\3", text)
    return text.replace("check them with Kontext.handle(id).status()", "check them with `fal-kontext status ID`")


# --- the commands --------------------------------------------------------------------------------------------------


def check_out_folder(folder: Path) -> None:
    """Fail before anything is sent (or paid) if the images could not be written into ``folder``.

    Raises:
        CommandError: ``folder`` is a file, or neither it nor its nearest existing parent is a writable folder.
    """
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"--out {folder}: is a file, not a folder (it is created if missing)", EXIT_USAGE)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"--out {folder}: {existing} is a file, not a folder", EXIT_USAGE)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"--out {folder}: {existing} is not writable", EXIT_USAGE)


def _out_folder(args: argparse.Namespace, out: Output) -> Path | None:
    folder: Path | None = args.out if args.out is not None else (None if out.json_lines else Path("."))
    if folder is not None:
        check_out_folder(folder)
    return folder


def _build_input(args: argparse.Namespace) -> tuple[EndpointSpec, dict[str, Any]]:
    """The endpoint and the input fields the arguments describe (images read and inlined); nothing is sent."""
    images: list[str] = list(args.images)
    chosen = choose_endpoint_spec(args.endpoint_specs, images=len(images), model=args.model, endpoint=args.endpoint)
    body: dict[str, Any] = {"prompt": args.prompt, **_input_values(args)}
    if chosen.image_field == "image_urls":
        body["image_urls"] = [
            image_source_to_url(image, field=f"IMAGE {index + 1} ({image})", max_bytes=args.max_image_bytes)
            for index, image in enumerate(images)
        ]
    elif chosen.image_field is not None:
        body[chosen.image_field] = image_source_to_url(images[0], field="IMAGE", max_bytes=args.max_image_bytes)
    return chosen, body


def _submit_handle(args: argparse.Namespace, kontext: Kontext, out: Output) -> tuple[EndpointSpec, Handle]:
    chosen, body = _build_input(args)
    lookups: LookupWatch = args.lookups
    # The ticker keeps the elapsed time moving should the answer be lost and the job be looked for.
    with lookups.submitting(), out.ticking() or contextlib.nullcontext():
        handle = kontext.submit(
            chosen.id, body, start_timeout=args.start_timeout, priority=args.priority, webhook_url=args.webhook_url
        )
    return chosen, handle


def _save(result: EditResult, folder: Path | None, kontext: Kontext, out: Output) -> int:
    try:
        files = [str(path) for path in kontext.save(result, folder)] if folder is not None else []
    except OSError as err:
        raise CommandError(
            f"request {result.request_id} completed, but its images could not be written to {folder}: {err}. "
            f"Fetch them again with: fal-kontext result {result.request_id} --out DIR (fal keeps results for a "
            "limited time)",
            EXIT_ERROR,
            result.request_id,
        ) from err
    out.emit("result", **result.to_dict(), files=files)
    seed = result.output.to_dict().get("seed")
    out.say(f"done: {result.request_id}" + (f", seed {seed}" if seed is not None else ""))
    for path in files:
        out.say(f"  saved {path}")
    if not files:
        out.note("note: fal's image URLs expire; use --out DIR to keep the images")
    return EXIT_OK


def _watch(handle: Handle, args: argparse.Namespace, kontext: Kontext, out: Output, folder: Path | None) -> int:
    timeout = args.timeout if args.timeout and args.timeout > 0 else math.inf
    try:
        with out.ticking() or contextlib.nullcontext():
            result = handle.wait(
                timeout=timeout,
                on_update=out.update,
                stream=not args.poll,
                cancel_on_timeout=args.cancel,
                cancel_on_interrupt=False,
            )
    except KeyboardInterrupt:
        raise Interrupted(handle, cancel=args.cancel, out_folder=folder) from None
    except WaitTimeoutError as err:
        rid = err.request_id
        if err.cancelled:
            what = "it was cancelled"
        elif args.cancel:
            what = f"it could not be cancelled and may still run (and be billed): fal-kontext cancel {rid}"
        else:
            what = f"it is still queued or running; resume with: fal-kontext wait {rid}{_out_arg(folder)}"
        raise CommandError(
            f"request {rid} did not complete within --timeout {err.timeout:g} s; {what}", EXIT_TIMEOUT, rid
        ) from err
    return _save(result, folder, kontext, out)


def _out_arg(folder: Path | None) -> str:
    return f" --out {folder}" if folder is not None else ""


def _edit(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    folder = _out_folder(args, out)
    chosen, handle = _submit_handle(args, kontext, out)
    out.emit("submitted", request_id=handle.request_id, endpoint=chosen.id)
    out.say(f"submitted {handle.request_id}")
    return _watch(handle, args, kontext, out, folder)


def _submit(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    chosen, handle = _submit_handle(args, kontext, out)
    if args.json:
        out.emit("submitted", request_id=handle.request_id, endpoint=chosen.id)
    else:  # the bare id, for `id=$(fal-kontext submit ...)`, piped or not
        print(handle.request_id, file=out.stdout, flush=True)
    return EXIT_OK


def _status(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    status = kontext.handle(args.request_id, endpoint=args.endpoint).status(logs=args.logs)
    fields: dict[str, Any] = {"request_id": status.request_id, "status": _status_name(status)}
    if isinstance(status, Queued):
        fields["queue_position"] = status.position
    if isinstance(status, Completed):
        fields.update(error=status.error, error_type=status.error_type)
    out.emit("status", **fields, logs=[entry.message for entry in status.logs])
    line = f"{status.request_id}: {_status_name(status)}"
    if isinstance(status, Queued) and status.position is not None:
        line += f" (position {status.position})"
    if isinstance(status, Completed) and status.error:
        line += f" with error: {status.error}"
    out.say(line)
    for entry in status.logs:
        out.say(f"  log: {entry.message}")
    return EXIT_OK


def _wait(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    folder = _out_folder(args, out)
    return _watch(kontext.handle(args.request_id, endpoint=args.endpoint), args, kontext, out, folder)


def _result(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    folder = _out_folder(args, out)
    handle = kontext.handle(args.request_id, endpoint=args.endpoint)
    try:
        result = handle.result()
    except KeyboardInterrupt:
        raise Interrupted(handle, cancel=False, out_folder=folder) from None
    except ServerError as err:
        if err.error_type is None or isinstance(err, StartTimeoutError):
            raise
        # The result of a request that COMPLETED with an error carries the error (fal-protocol.md §2.6): the same
        # outcome `wait` reports as a failed request, so the same exit code.
        raise RequestFailedError(args.request_id, err.detail, err.error_type) from err
    return _save(result, folder, kontext, out)


def _cancel(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    outcome = kontext.handle(args.request_id, endpoint=args.endpoint).cancel()
    out.emit("cancelled", request_id=args.request_id, status=outcome.value)
    out.say(f"{args.request_id}: {outcome.value}")
    return EXIT_OK


def _interrupted(stop: Interrupted, out: Output) -> int:
    rid = stop.handle.request_id
    cancelled = False
    if stop.cancel:
        try:
            outcome = stop.handle.cancel()
            cancelled = True
            message = f"interrupted: request {rid} cancelled ({outcome.value})"
        except KontextError as err:
            message = (
                f"interrupted: request {rid} could not be cancelled ({err}); cancel it with: fal-kontext cancel {rid}"
            )
    else:
        message = (
            f"interrupted: stopped watching request {rid}; it is still queued or running. "
            f"Resume with: fal-kontext wait {rid}{_out_arg(stop.out_folder)}"
        )
    out.emit("interrupted", request_id=rid, cancelled=cancelled, message=message, exit_code=EXIT_INTERRUPTED)
    out.note(message)
    return EXIT_INTERRUPTED


class BatchProgress:
    """The batch's counts, rate and ETA, from its events (the progress line on a terminal).

    Args:
        total: Lines in the manifest.
        done: Lines saved before this run.
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, total: int, done: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = done
        self.done_before = done
        self.not_done = 0
        self.clock = clock
        self.started = clock()

    def count(self, event: str) -> None:
        """Count one event of ``run_batch``."""
        if event == "saved":
            self.done += 1
        elif event in ("failed", "ambiguous", "unfinished", "over_budget"):
            self.not_done += 1

    def text(self) -> str:
        """``57/200 done, 2 not done, 141 to go, 3.1/s, ETA 46s``."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = (self.done - self.done_before) / elapsed
        left = self.total - self.done - self.not_done
        eta = f"ETA {left / rate:.0f}s" if rate > 0 else "ETA ?"
        return f"batch: {self.done}/{self.total} done, {self.not_done} not done, {left} to go, {rate:.1f}/s, {eta}"


def _batch_exit_code(summary: BatchSummary) -> int:
    if summary.failed:
        return EXIT_FAILED
    if summary.ambiguous:
        return EXIT_AMBIGUOUS
    if summary.unfinished:
        return EXIT_UNAVAILABLE
    if summary.over_budget:
        return EXIT_BUDGET
    return EXIT_OK


def _batch_jobs(args: argparse.Namespace) -> tuple[list[BatchJob], BatchOptions]:
    """The manifest's jobs and the run's options, every problem found before anything is planned or sent."""
    check_out_folder(args.out)
    try:
        jobs = read_manifest(args.manifest)
        check_journal(jobs, args.out)
    except ManifestError as err:
        raise CommandError(str(err), EXIT_USAGE) from err
    except OSError as err:
        raise CommandError(f"MANIFEST {args.manifest}: {err.strerror or err}", EXIT_USAGE) from err
    try:
        options = BatchOptions(
            concurrency=args.concurrency,
            max_cost=args.max_cost,
            resubmit_ambiguous=args.resubmit_ambiguous,
            retry_failed=args.retry_failed,
            max_image_bytes=args.max_image_bytes,
        )
    except ValueError as err:
        raise CommandError(f"--{err}", EXIT_USAGE) from err
    return jobs, options


def _batch_plan(args: argparse.Namespace, jobs: Sequence[BatchJob], out: Output) -> BatchProgress:
    """Print what the run will do and what it may cost; the progress counts from there."""
    states = journal_states(args.out)
    settled = ("saved", "submitted") if args.retry_failed else ("saved", "submitted", "failed")
    left = [job for job in jobs if states.get(job.id) not in settled]
    estimate = estimate_cost(left)
    if args.max_cost is not None and not estimate.known:
        raise CommandError(f"--max-cost needs a price for every endpoint: {estimate}", EXIT_USAGE)
    saved = sum(1 for job in jobs if states.get(job.id) == "saved")
    queued = sum(1 for job in jobs if states.get(job.id) == "submitted")
    out.emit(
        "plan",
        lines=len(jobs),
        to_submit=len(left),
        saved_before=saved,
        queued_before=queued,
        estimated_cost_usd=estimate.usd if estimate.known else None,
        estimate=str(estimate),
    )
    out.note(
        f"batch: {len(jobs)} lines: {len(left)} to submit, {queued} queued earlier, {saved} saved earlier; "
        f"estimated cost of the submits: {estimate}"
    )
    return BatchProgress(len(jobs), saved)


def _batch(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    jobs, options = _batch_jobs(args)
    counts = _batch_plan(args, jobs, out)

    def on_event(event: dict[str, Any]) -> None:
        fields = {key: value for key, value in event.items() if key != "event"}
        out.emit(str(event["event"]), **fields)
        counts.count(str(event["event"]))
        if event["event"] in ("failed", "ambiguous", "unfinished"):
            out.note(_cli_words(f"{event['event']}: {event['id']} (line {event['line']}): {event.get('reason', '')}"))

    async def go() -> BatchSummary:
        transport = AsyncHeaderEcho(httpx.AsyncHTTPTransport(), out.note) if args.headers else None
        # The batch's own progress line shows its counts: a lookup of one line is not shown there.
        client_options = {**args.client_options, "recovery": replace(args.client_options["recovery"], on_lookup=None)}
        async with AsyncKontext(**client_options, transport=transport) as client:
            return await run_batch(client, jobs, args.out, options, on_event)

    def draw() -> None:
        if out.progress is not None:
            out.progress.text = counts.text()
            out.progress.draw()

    try:
        with Ticker(draw, TICK_SECONDS) if out.progress is not None else contextlib.nullcontext():
            summary = asyncio.run(go())
    except KeyboardInterrupt:
        raise CommandError(
            f"interrupted: queued jobs keep running; run the same command again to resume them "
            f"(journal {args.out / JOURNAL_NAME})",
            EXIT_INTERRUPTED,
        ) from None
    except BlockingIOError as err:
        raise CommandError(f"--out {args.out}: another batch is running with this folder", EXIT_USAGE) from err
    except ManifestError as err:
        raise CommandError(str(err), EXIT_USAGE) from err
    out.emit("summary", **summary.to_dict())
    cost = "unknown" if summary.cost_usd is None else f"${summary.cost_usd:.2f}"
    out.say(
        f"batch: {summary.done}/{summary.total} done, {len(summary.failed)} failed, {len(summary.ambiguous)} "
        f"ambiguous, {len(summary.unfinished)} unfinished, {len(summary.over_budget)} over budget; "
        f"estimated cost {cost}; {summary.elapsed:.1f}s"
    )
    for kind in ("failed", "ambiguous", "unfinished"):
        for job_id, reason in getattr(summary, kind).items():
            out.say(_cli_words(f"  {kind}: {job_id}: {reason}"))
    return _batch_exit_code(summary)


# --- logging, headers, completion, mock ------------------------------------------------------------------------


def secrets_of(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Every credential the environment gives the client (``Credentials.from_env``, either scheme), longest first:
    what the command's log and header output must never show."""
    found: set[str] = set()
    for scheme in ("key", "bearer"):
        try:
            credentials = Credentials.from_env(scheme, environ)
        except ValueError:  # a malformed variable: the client refuses it before any request, naming it
            continue
        if credentials is not None:
            found.update(secret_forms(str(credentials.secret)))
    return tuple(sorted(found, key=len, reverse=True))


class RedactingFormatter(logging.Formatter):
    """A log formatter that replaces every credential in the finished line with ``***``: httpx/httpcore's debug
    lines (``-vv``) quote response headers as sent, and a server or proxy may echo the key in one."""

    def __init__(self, fmt: str, secrets: Sequence[str]) -> None:
        super().__init__(fmt)
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        text = super().format(record)
        for secret in self.secrets:
            text = redact(text, secret)
        return text


def configure_logging(verbosity: int, environ: Mapping[str, str], stream: TextIO) -> None:
    """Send fal_kontext's log to ``stream``: ``-v`` (or ``FAL_KONTEXT_LOG_LEVEL``) ours and one line per HTTP
    request (httpx), ``-vv`` also httpx/httpcore's debug. Nothing else is touched (the root logger stays as is).
    Every credential of ``environ`` is redacted from every line.

    Raises:
        CommandError: ``FAL_KONTEXT_LOG_LEVEL`` is not a level name.
    """
    named = environ.get(ENV_LOG_LEVEL, "").strip().upper()
    if named and not isinstance(logging.getLevelName(named), int):
        raise CommandError(f"{ENV_LOG_LEVEL}={named.lower()}: not a level (debug, info, warning, error)", EXIT_USAGE)
    ours = logging.DEBUG if verbosity >= 1 else logging.getLevelName(named) if named else logging.WARNING
    levels = {"fal_kontext": ours}
    if verbosity >= 1:
        levels["httpx"] = logging.INFO if verbosity == 1 else logging.DEBUG
    if verbosity >= 2:
        levels["httpcore"] = logging.DEBUG
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s", secrets_of(environ)))
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False


def _response_headers(request: httpx.Request, response: httpx.Response) -> str:
    """An answer's status line and headers (never the request's: they carry the key), credentials redacted."""
    lines = [f"< {response.status_code} {request.method} {request.url}"]
    text = "\n".join(lines + [f"< {name}: {value}" for name, value in response.headers.multi_items()])
    for secret in secrets_of(os.environ):
        text = redact(text, secret)
    return text


class HeaderEcho(httpx.BaseTransport):
    """A transport that writes each response's status line and headers.

    Args:
        inner: The transport that sends.
        write: Where each block of lines goes.
    """

    def __init__(self, inner: httpx.BaseTransport, write: Callable[[str], None]) -> None:
        self.inner = inner
        self.write = write

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send, then write the answer's headers."""
        response = self.inner.handle_request(request)
        self.write(_response_headers(request, response))
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


class AsyncHeaderEcho(httpx.AsyncBaseTransport):
    """``HeaderEcho`` for ``AsyncKontext`` (batch)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, write: Callable[[str], None]) -> None:
        self.inner = inner
        self.write = write

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send, then write the answer's headers."""
        response = await self.inner.handle_async_request(request)
        self.write(_response_headers(request, response))
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


def _emulator_guide() -> str:
    """Where the emulator's guide is: the wheel ships docs/ as ``fal_kontext/docs`` (pyproject.toml)."""
    guide = Path(__file__).parent / "docs" / "emulator.md"
    return str(guide) if guide.is_file() else "docs/emulator.md in the fal-kontext source"


def _run_server_command(name: str, rest: list[str], usage_error: Callable[[str], int]) -> int:
    """``fal-kontext mock ...`` or ``fal-kontext proxy ...``: their own parser and runner, imported only now (both
    need the ``mock`` extra: Starlette, uvicorn); their usage errors in the command's one style (``usage_error``)."""
    what = {
        "mock": f"Serve a local emulator of fal.ai's queue API for FLUX.1 Kontext (guide: {_emulator_guide()}).",
        "proxy": "Forward your application's traffic to fal or an aggregator, checking every exchange against the "
        "spec and fal's queue rules (a loopback validating proxy).",
    }
    parser = _Parser(prog=f"fal-kontext {name}", description=what[name])
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


COMPLETION_MISSING = (
    "fal-kontext: error: shell completion needs the completion extra (missing module 'argcomplete'): "
    "pip install 'fal-kontext[completion]'"
)


def _completion(shell: str) -> int:
    try:
        import argcomplete
    except ModuleNotFoundError:
        print(COMPLETION_MISSING, file=sys.stderr)
        return EXIT_USAGE
    print(argcomplete.shellcode(["fal-kontext"], shell=shell), end="")  # type: ignore[attr-defined]
    return EXIT_OK


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer and exit
        try:
            import argcomplete
        except ModuleNotFoundError:  # uninstalled since the shell code was made: never run the command itself
            print(COMPLETION_MISSING, file=sys.stderr)
            sys.exit(EXIT_USAGE)
        argcomplete.autocomplete(parser)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("mock", "proxy"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args, rest


def _usage_error(message: str, argv: Sequence[str]) -> int:
    """Report a usage error found before a command runs, in the command's one error style: a short line on stderr,
    and a JSON line on stdout when it is piped (or with --json)."""
    json_lines = "--json" in argv or not sys.stdout.isatty()
    Output(json_lines=json_lines, stdout=sys.stdout, stderr=sys.stderr).error(
        message, UsageError(message), None, EXIT_USAGE
    )
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fal-kontext``; returns the exit code (``EXIT_CODES``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, rest = _parse(parser, argv)
    except UsageError as err:
        return _usage_error(str(err), argv)
    if args.command in ("mock", "proxy"):
        return _run_server_command(args.command, rest, lambda message: _usage_error(message, argv))
    if args.command == "completion":
        return _completion(args.shell)
    json_lines = args.json or not sys.stdout.isatty()
    out = Output(json_lines=json_lines, stdout=sys.stdout, stderr=sys.stderr)
    try:
        configure_logging(args.verbose, os.environ, sys.stderr)
        retry = RetryPolicy() if args.retries is None else RetryPolicy(max_retries=args.retries)
        args.lookups = LookupWatch(out)
        recovery = RecoveryPolicy(on_lookup=args.lookups)
        if args.absent_after is not None:
            recovery = replace(recovery, absent_after=args.absent_after)
        transport = HeaderEcho(httpx.HTTPTransport(), out.note) if args.headers else None
        args.client_options = {
            "base_url": args.base_url,
            "auth": args.auth,
            "wait_timeout": None,
            "retry": retry,
            "recovery": recovery,
        }
        kontext = Kontext(**args.client_options, transport=transport)
        kontext.check_credentials()  # every command sends a request that needs one: refused before anything
    except CommandError as err:
        out.error(str(err), err, None, err.code)
        return err.code
    except MissingCredentialsError as err:
        out.error(cli_message(err, args), err, None, EXIT_AUTH)
        return EXIT_AUTH
    except ValueError as err:
        message = _cli_words(str(err)).replace("auth must be", "--auth must be")
        out.error(message, err, None, EXIT_USAGE)
        return EXIT_USAGE
    # The same lookup the client made (public API), to redact the secret from messages.
    credentials = Credentials.from_env("bearer" if (args.auth or os.environ.get(ENV_AUTH)) == "bearer" else "key")
    out.secret = credentials.secret if credentials is not None else None
    try:
        with kontext:
            return int(args.handler(args, kontext, out))
    except Interrupted as stop:
        try:
            return _interrupted(stop, out)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    except KeyboardInterrupt as err:
        out.error("interrupted", err, None, EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except KontextError as err:
        code = exit_code_for(err)
        out.error(cli_message(err, args), err, getattr(err, "request_id", None), code)
        return code
    except OSError as err:
        out.error(str(err), err, None, EXIT_ERROR)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

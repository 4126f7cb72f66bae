"""The ``fal-kontext`` command: edit images, and follow requests by id, on fal or an aggregator.

On a terminal it shows progress (queue position, logs, elapsed time) on stderr and writes the images; piped, it
prints one JSON object per line on stdout (statuses, then the result or the error). The key is read from the
environment only, never from the command line, and never printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from fal_kontext_api.models import AspectRatio, OutputFormat, SafetyTolerance

from .client import Handle, Kontext
from .config import ENV_AUTH, ENV_BASE_URL, ENV_TOKEN, redact
from .errors import (
    APIConnectionError,
    AuthenticationError,
    InvalidInputError,
    KontextError,
    NotFoundError,
    RequestCancelledError,
    RequestFailedError,
    ServerError,
    ValidationError,
    WaitTimeoutError,
)
from .inputs import build_edit_input
from .results import EditResult
from .retry import RetryPolicy
from .status import Completed, InProgress, Queued, Status

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_FAILED = 5
EXIT_TIMEOUT = 6
EXIT_UNAVAILABLE = 7
EXIT_INTERRUPTED = 130

EPILOG = f"""\
examples:
  fal-kontext edit "Put a donut next to the flour" kitchen.jpg --out out/
  fal-kontext edit "Put the duck on the t-shirt" woman.png duck.png --max --aspect-ratio 3:4
  fal-kontext submit "Make it night" https://example.com/street.jpg     # prints the request id
  fal-kontext wait REQUEST_ID --out out/
  fal-kontext status REQUEST_ID --logs
  fal-kontext edit "..." in.png | jq .                                  # piped: JSON lines
  fal-kontext mock --port 8000   &&   fal-kontext --base-url http://127.0.0.1:8000 edit "..." in.png

environment:
  FAL_KEY (or FAL_KEY_ID + FAL_KEY_SECRET)   the fal key, sent as "Authorization: Key ..."
  {ENV_TOKEN}                          an aggregator's token (with --auth bearer)
  {ENV_BASE_URL}, {ENV_AUTH}     defaults of --base-url and --auth

exit codes:
  0 done   1 other error   2 bad usage or input (nothing sent)   3 key refused   4 not found or expired
  5 request failed (error, content policy, rejected input)   6 wait timed out (request cancelled)
  7 network or server unavailable   130 interrupted (request cancelled)
"""


def _add_edit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to change")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="input image: a path or a URL; several: multi")
    parser.add_argument("--max", action="store_true", help="use FLUX.1 Kontext [max] (default: [pro])")
    parser.add_argument("--aspect-ratio", choices=[r.value for r in AspectRatio], help="output aspect ratio")
    parser.add_argument("--seed", type=int, help="seed for a reproducible result")
    parser.add_argument("--num-images", type=int, help="how many images (the API allows 1 to 4)")
    parser.add_argument("--format", dest="output_format", choices=[f.value for f in OutputFormat], help="jpeg or png")
    parser.add_argument("--guidance-scale", type=float, help="how closely to follow the prompt")
    parser.add_argument("--safety-tolerance", choices=[s.value for s in SafetyTolerance], help="1 is the strictest")
    parser.add_argument("--enhance-prompt", action="store_true", default=None, help="let the model enhance the prompt")
    parser.add_argument("--start-timeout", type=float, help="seconds the request may wait to start")
    parser.add_argument("--priority", choices=["normal", "low"], help="queue priority")


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="folder for the images (on a terminal: default the current folder)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait before cancelling (900; 0: no limit)"
    )
    parser.add_argument("--poll", action="store_true", help="poll the status instead of following the stream")


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--base-url, --auth, --json, -v; ``default=SUPPRESS`` for the copies after the command name."""
    flag_default = False if default is None else default
    parser.add_argument(
        "--base-url", default=default, help=f"queue base URL (default ${ENV_BASE_URL} or https://queue.fal.run)"
    )
    parser.add_argument(
        "--auth", choices=["key", "bearer"], default=default, help=f"Authorization scheme (default ${ENV_AUTH} or key)"
    )
    parser.add_argument("--json", action="store_true", default=flag_default, help="print JSON lines on a terminal too")
    parser.add_argument("-v", "--verbose", action="store_true", default=flag_default, help="log requests to stderr")
    parser.add_argument(
        "--retries", type=int, default=default, metavar="N", help="retries of failed calls (default 4; 0: none)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fal-kontext``."""
    parser = argparse.ArgumentParser(
        prog="fal-kontext",
        description="Edit images with FLUX.1 Kontext on fal.ai (or an aggregator), and follow queued requests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, None)
    # The same options are accepted after the command name too (``fal-kontext edit ... --base-url URL``).
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    edit = commands.add_parser(
        "edit",
        help="edit images and wait for the result",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    _add_edit_options(edit)
    _add_wait_options(edit)
    edit.set_defaults(handler=_edit)

    submit = commands.add_parser("submit", help="queue an edit and print its request id", parents=[common])
    _add_edit_options(submit)
    submit.set_defaults(handler=_submit)

    for name, handler, text in (
        ("status", _status, "show where a request is"),
        ("wait", _wait, "wait for a request and get its result"),
        ("result", _result, "get the result of a completed request"),
        ("cancel", _cancel, "cancel a request"),
    ):
        sub = commands.add_parser(name, help=text, parents=[common])
        sub.add_argument("request_id", help="the id printed by submit")
        if name == "status":
            sub.add_argument("--logs", action="store_true", help="include the logs")
        if name in ("wait", "result"):
            sub.add_argument("--out", type=Path, help="folder for the images")
        if name == "wait":
            sub.add_argument(
                "--timeout", type=float, default=900.0, help="seconds to wait before cancelling (900; 0: no limit)"
            )
            sub.add_argument("--poll", action="store_true", help="poll instead of following the stream")
        sub.set_defaults(handler=handler)

    _add_mock_command(commands)
    _add_proxy_command(commands)
    return parser


def _add_mock_command(commands: Any) -> None:
    """The emulator's ``mock`` command, when the ``mock`` extra is installed."""
    try:
        from fal_kontext.mock.command import add_mock_command
    except ImportError:  # the mock extra (starlette, uvicorn, pillow) is not installed
        return
    add_mock_command(commands)


def _add_proxy_command(commands: Any) -> None:
    """``fal-kontext proxy`` (fal_kontext.proxy), when the ``mock`` extra it needs is installed."""
    try:
        from fal_kontext.proxy import add_proxy_command
    except ImportError:  # the mock extra (starlette, uvicorn, jsonschema) is not installed
        return
    add_proxy_command(commands)


class Output:
    """Where the command writes: progress for people on a terminal, JSON lines otherwise."""

    def __init__(self, *, json_lines: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json_lines = json_lines
        self.stdout = stdout
        self.stderr = stderr
        self.started = time.monotonic()
        self._line_open = False

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON line (piped mode)."""
        print(json.dumps({"event": event, **fields}, default=str), file=self.stdout, flush=True)

    def say(self, text: str) -> None:
        """A line for people (terminal mode) on stdout."""
        self._end_line()
        print(text, file=self.stdout, flush=True)

    def progress(self, status: Status) -> None:
        """Report a status: a JSON line, or a progress line with the new log lines above it."""
        elapsed = round(time.monotonic() - self.started, 2)
        if self.json_lines:
            self.emit(
                "status",
                request_id=status.request_id,
                status=_status_name(status),
                queue_position=status.position if isinstance(status, Queued) else None,
                logs=[entry.message for entry in status.logs],
                elapsed=elapsed,
            )
            return
        for entry in status.logs:
            # the progress line is redrawn below the log lines
            print(f"\r\033[K  log: {entry.message}", file=self.stderr)
        if isinstance(status, Queued):
            where = "in queue" + (f", position {status.position}" if status.position is not None else "")
        elif isinstance(status, InProgress):
            where = "running"
        else:
            where = "completed"
        print(f"\r\033[K[{elapsed:6.1f}s] {status.request_id}: {where}", end="", file=self.stderr, flush=True)
        self._line_open = True

    def _end_line(self) -> None:
        if self._line_open:
            print(file=self.stderr, flush=True)
            self._line_open = False

    def error(self, err: BaseException, secret: str | None) -> None:
        """Report an error (the secret is redacted from the message, belt and braces)."""
        self._end_line()
        message = redact(str(err), secret)
        if self.json_lines:
            self.emit("error", type=type(err).__name__, message=message, request_id=getattr(err, "request_id", None))
        print(f"fal-kontext: error: {message}", file=self.stderr, flush=True)


def _status_name(status: Status) -> str:
    if isinstance(status, Queued):
        return "IN_QUEUE"
    if isinstance(status, InProgress):
        return "IN_PROGRESS"
    return "COMPLETED"


def _edit_input(args: argparse.Namespace, kontext: Kontext) -> tuple[Any, Any]:
    options = {
        name: value
        for name in (
            "aspect_ratio",
            "seed",
            "num_images",
            "output_format",
            "guidance_scale",
            "safety_tolerance",
            "enhance_prompt",
        )
        if (value := getattr(args, name)) is not None
    }
    images: list[str] = args.images
    model = "max" if args.max else "pro"
    max_bytes = kontext._config.max_image_bytes
    if len(images) == 1:
        return build_edit_input(args.prompt, image=images[0], model=model, max_image_bytes=max_bytes, **options)
    return build_edit_input(args.prompt, images=images, model=model, max_image_bytes=max_bytes, **options)


def _submit_handle(args: argparse.Namespace, kontext: Kontext, out: Output) -> Handle:
    endpoint, body = _edit_input(args, kontext)
    handle = kontext.submit(endpoint, body, start_timeout=args.start_timeout, priority=args.priority)
    if out.json_lines:
        out.emit("submitted", request_id=handle.request_id, endpoint=endpoint.value)
    return handle


def _finish(result: EditResult, args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    folder: Path | None = args.out if args.out is not None else (None if out.json_lines else Path("."))
    files = [str(path) for path in kontext.save(result, folder)] if folder is not None else []
    if out.json_lines:
        out.emit("result", **result.to_dict(), files=files)
    else:
        out.say(f"done: {result.request_id}, seed {result.output.seed}")
        for path in files:
            out.say(f"  saved {path}")
    if not files:
        print("note: fal's image URLs expire; use --out DIR to keep the images", file=out.stderr)
    return EXIT_OK


def _wait_for(handle: Handle, args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    timeout = args.timeout if args.timeout and args.timeout > 0 else math.inf
    result = handle.wait(timeout=timeout, on_update=out.progress, stream=not args.poll)
    return _finish(result, args, kontext, out)


def _edit(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    handle = _submit_handle(args, kontext, out)
    if not out.json_lines:
        out.say(f"submitted {handle.request_id}")
    return _wait_for(handle, args, kontext, out)


def _submit(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    handle = _submit_handle(args, kontext, out)
    if not out.json_lines:
        out.say(handle.request_id)
    return EXIT_OK


def _status(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    status = kontext.handle(args.request_id).status(logs=args.logs)
    if out.json_lines:
        fields: dict[str, Any] = {"request_id": status.request_id, "status": _status_name(status)}
        if isinstance(status, Queued):
            fields["queue_position"] = status.position
        if isinstance(status, Completed):
            fields.update(error=status.error, error_type=status.error_type)
        out.emit("status", **fields, logs=[entry.message for entry in status.logs])
        return EXIT_OK
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
    return _wait_for(kontext.handle(args.request_id), args, kontext, out)


def _result(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    return _finish(kontext.handle(args.request_id).result(), args, kontext, out)


def _cancel(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    outcome = kontext.handle(args.request_id).cancel()
    if out.json_lines:
        out.emit("cancelled", request_id=args.request_id, status=outcome.value)
    else:
        out.say(f"{args.request_id}: {outcome.value}")
    return EXIT_OK


def exit_code_for(err: BaseException) -> int:
    """The exit code of an error (see ``--help``)."""
    if isinstance(err, InvalidInputError):
        return EXIT_USAGE
    if isinstance(err, AuthenticationError):
        return EXIT_AUTH
    if isinstance(err, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(err, (RequestFailedError, RequestCancelledError, ValidationError)):
        return EXIT_FAILED
    if isinstance(err, WaitTimeoutError):
        return EXIT_TIMEOUT
    if isinstance(err, (APIConnectionError, ServerError)):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fal-kontext``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("mock", "proxy"):
        return int(args.handler(args))
    out = Output(json_lines=args.json or not sys.stdout.isatty(), stdout=sys.stdout, stderr=sys.stderr)
    secret: str | None = None
    try:
        retry = RetryPolicy() if args.retries is None else RetryPolicy(max_retries=args.retries)
        kontext = Kontext(base_url=args.base_url, auth=args.auth, wait_timeout=None, retry=retry)
    except ValueError as err:
        out.error(err, None)
        return EXIT_USAGE
    if kontext._config.credentials is None:
        print(
            "fal-kontext: warning: no key set (FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET; "
            f"{ENV_TOKEN} for --auth bearer)",
            file=sys.stderr,
        )
    else:
        secret = kontext._config.credentials.secret
    try:
        with kontext:
            return int(args.handler(args, kontext, out))
    except KeyboardInterrupt:
        out.error(KontextError("interrupted (a request being waited for was cancelled)"), secret)
        return EXIT_INTERRUPTED
    except KontextError as err:
        out.error(err, secret)
        return exit_code_for(err)
    except OSError as err:
        out.error(err, secret)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

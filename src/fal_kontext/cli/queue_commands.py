"""The commands that talk to the queue about one request: ``edit``, ``generate`` and ``run`` (submit, then wait),
``submit``, and ``status``, ``wait``, ``result``, ``cancel`` by request id; and what Ctrl-C while following a
request prints."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fal_kontext import (
    Completed,
    EditResult,
    EndpointSpec,
    Handle,
    Kontext,
    KontextError,
    LookupStarted,
    Queued,
    RequestFailedError,
    ServerError,
    StartTimeoutError,
    WaitTimeoutError,
    image_source_to_url,
)
from fal_kontext.batch import choose_endpoint_spec

from .exit_codes import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIMEOUT, CommandError
from .input_flags import input_values
from .messages import cli_message
from .output import Output, check_out_folder, status_name

__all__ = [
    "Interrupted",
    "LookupWatch",
    "cancel_command",
    "edit_command",
    "input_from_args",
    "report_interrupted",
    "result_command",
    "status_command",
    "submit_command",
    "wait_command",
]


class LookupWatch:
    """``RecoveryPolicy.on_lookup`` of the command: shows a lookup as it starts, and remembers it, so that Ctrl-C
    during it can say that the job may exist and how to look it up (``submitting``)."""

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


class Interrupted(Exception):
    """Ctrl-C while following a request; ``cancel``: whether this command should cancel it."""

    def __init__(self, handle: Handle, *, cancel: bool, out_folder: Path | None) -> None:
        self.handle = handle
        self.cancel = cancel
        self.out_folder = out_folder
        super().__init__(handle.request_id)


def _out_folder(args: argparse.Namespace, out: Output) -> Path | None:
    folder: Path | None = args.out if args.out is not None else (None if out.json_lines else Path("."))
    if folder is not None:
        check_out_folder(folder)
    return folder


def input_from_args(args: argparse.Namespace) -> tuple[EndpointSpec, dict[str, Any]]:
    """The endpoint and the input fields the arguments describe (images read and inlined); nothing is sent."""
    images: list[str] = list(args.images)
    chosen = choose_endpoint_spec(args.endpoint_specs, images=len(images), model=args.model, endpoint=args.endpoint)
    body: dict[str, Any] = {"prompt": args.prompt, **input_values(args)}
    if chosen.image_field == "image_urls":
        body["image_urls"] = [
            image_source_to_url(image, field=f"IMAGE {index + 1} ({image})", max_bytes=args.max_image_bytes)
            for index, image in enumerate(images)
        ]
    elif chosen.image_field is not None:
        body[chosen.image_field] = image_source_to_url(images[0], field="IMAGE", max_bytes=args.max_image_bytes)
    return chosen, body


def _submit_handle(args: argparse.Namespace, kontext: Kontext, out: Output) -> tuple[EndpointSpec, Handle]:
    chosen, body = input_from_args(args)
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


def edit_command(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    """``edit``, ``generate``, ``run``: submit, follow the request to its result, save the images."""
    folder = _out_folder(args, out)
    chosen, handle = _submit_handle(args, kontext, out)
    out.emit("submitted", request_id=handle.request_id, endpoint=chosen.id)
    out.say(f"submitted {handle.request_id}")
    return _watch(handle, args, kontext, out, folder)


def submit_command(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    """``submit``: queue the request and print its id (bare, or a JSON line with ``--json``)."""
    chosen, handle = _submit_handle(args, kontext, out)
    if args.json:
        out.emit("submitted", request_id=handle.request_id, endpoint=chosen.id)
    else:  # the bare id, for `id=$(fal-kontext submit ...)`, piped or not
        print(handle.request_id, file=out.stdout, flush=True)
    return EXIT_OK


def status_command(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    """``status ID``: where the request is, with its logs if asked."""
    status = kontext.handle(args.request_id, endpoint=args.endpoint).status(logs=args.logs)
    fields: dict[str, Any] = {"request_id": status.request_id, "status": status_name(status)}
    if isinstance(status, Queued):
        fields["queue_position"] = status.position
    if isinstance(status, Completed):
        fields.update(error=status.error, error_type=status.error_type)
    out.emit("status", **fields, logs=[entry.message for entry in status.logs])
    line = f"{status.request_id}: {status_name(status)}"
    if isinstance(status, Queued) and status.position is not None:
        line += f" (position {status.position})"
    if isinstance(status, Completed) and status.error:
        line += f" with error: {status.error}"
    out.say(line)
    for entry in status.logs:
        out.say(f"  log: {entry.message}")
    return EXIT_OK


def wait_command(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    """``wait ID``: follow a request submitted elsewhere to its result and save the images."""
    folder = _out_folder(args, out)
    return _watch(kontext.handle(args.request_id, endpoint=args.endpoint), args, kontext, out, folder)


def result_command(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    """``result ID``: the result of a finished request (no waiting), images saved."""
    folder = _out_folder(args, out)
    handle = kontext.handle(args.request_id, endpoint=args.endpoint)
    try:
        result = handle.result()
    except KeyboardInterrupt:
        raise Interrupted(handle, cancel=False, out_folder=folder) from None
    except ServerError as err:
        if err.error_type is None or isinstance(err, StartTimeoutError):
            raise
        # The result of a request that COMPLETED with an error carries the error ("If the model returned an error,
        # this operation returns the same error", https://fal.ai/docs/inference-api/queue/result): the same outcome
        # `wait` reports as a failed request, so the same exit code.
        raise RequestFailedError(args.request_id, err.detail, err.error_type) from err
    return _save(result, folder, kontext, out)


def cancel_command(args: argparse.Namespace, kontext: Kontext, out: Output) -> int:
    """``cancel ID``: cancel the request and print what the server answered."""
    outcome = kontext.handle(args.request_id, endpoint=args.endpoint).cancel()
    out.emit("cancelled", request_id=args.request_id, status=outcome.value)
    out.say(f"{args.request_id}: {outcome.value}")
    return EXIT_OK


def report_interrupted(stop: Interrupted, out: Output) -> int:
    """Report Ctrl-C while following a request: cancel it if this command should, and say how to resume or
    cancel it otherwise. Returns ``EXIT_INTERRUPTED``."""
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

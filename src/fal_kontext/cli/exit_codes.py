"""The exit codes of ``fal-kontext``: one table (``--help``, docs/client.md) and the outcome each error is."""

from __future__ import annotations

from dataclasses import dataclass

import fal_kontext

__all__ = [
    "EXIT_AMBIGUOUS",
    "EXIT_AUTH",
    "EXIT_BUDGET",
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_NOT_READY",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CommandError",
    "ExitCode",
    "exit_code_for",
    "exit_code_lines",
    "is_cancelled",
]


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


def exit_code_lines() -> str:
    """The table as the help's ``exit codes:`` section shows it."""
    return "\n".join(f"  {row.code:<4}{row.meaning}" for row in EXIT_CODES)


class CommandError(fal_kontext.KontextError):
    """An outcome the command reports itself, with its exit code (and the request it concerns)."""

    def __init__(self, message: str, code: int, request_id: str | None = None) -> None:
        self.code = code
        self.request_id = request_id
        super().__init__(message)


def is_cancelled(err: BaseException) -> bool:
    """Whether ``err`` says the request was cancelled, however it was reported."""
    # A cancelled request's result: fal does not document it; the emulator answers 400 error_type request_cancelled.
    return isinstance(err, fal_kontext.RequestCancelledError) or (
        isinstance(err, fal_kontext.APIStatusError) and err.error_type == "request_cancelled"
    )


def exit_code_for(err: BaseException) -> int:
    """The exit code of an outcome (``EXIT_CODES``), the same whichever command met it."""
    if isinstance(err, CommandError):
        return err.code
    if isinstance(err, fal_kontext.MissingCredentialsError):
        return EXIT_AUTH
    if isinstance(err, fal_kontext.InvalidInputError):
        return EXIT_USAGE
    if is_cancelled(err):
        return EXIT_CANCELLED
    if isinstance(err, fal_kontext.AuthenticationError):
        return EXIT_AUTH
    if isinstance(err, fal_kontext.NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(err, fal_kontext.ResultNotReadyError):
        return EXIT_NOT_READY
    if isinstance(err, (fal_kontext.StartTimeoutError, fal_kontext.WaitTimeoutError)):
        return EXIT_TIMEOUT
    if isinstance(err, (fal_kontext.RequestFailedError, fal_kontext.ValidationError)):
        return EXIT_FAILED
    if isinstance(err, (fal_kontext.APIConnectionError, fal_kontext.ServerError, fal_kontext.RateLimitError)):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR

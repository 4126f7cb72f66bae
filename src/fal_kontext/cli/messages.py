"""Errors in the command line's words: flags and commands where other layers' messages name Python arguments."""

from __future__ import annotations

import argparse
import re

from fal_kontext import (
    APIStatusError,
    AuthenticationError,
    InvalidInputError,
    MissingCredentialsError,
    ResultNotReadyError,
    StartTimeoutError,
)
from fal_kontext.config import ENV_TOKEN

from .exit_codes import is_cancelled
from .input_flags import flag_for_field

__all__ = ["cli_message", "cli_words"]


def _about(request_id: str | None) -> str:
    return f" (request {request_id})" if request_id else ""


def cli_message(err: BaseException, args: argparse.Namespace | None = None) -> str:
    """The message of ``err`` in the command line's words: flags and commands, not Python arguments."""
    request_id = getattr(err, "request_id", None)
    rid = request_id or "REQUEST_ID"
    if isinstance(err, MissingCredentialsError):
        return cli_words(str(err))
    if isinstance(err, InvalidInputError):
        where = f" for {err.endpoint}" if err.endpoint else ""
        problems = "; ".join(
            f"{flag_for_field(p.field, args) if args else p.field}: {cli_words(p.problem)}" for p in err.problems
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
        if is_cancelled(err):
            return f"request {rid} was cancelled; submit it again to get a result"
    return cli_words(str(err))


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


def cli_words(text: str) -> str:
    """``text`` with the Python words of ``_CLI_WORDS`` (and the Python way to check a request) replaced by the
    command line's."""
    for python, cli in _CLI_WORDS:
        text = text.replace(python, cli)
    text = _CHECK_IN_PYTHON.sub(r"\3", text)
    return text.replace("check them with Kontext.handle(id).status()", "check them with `fal-kontext status ID`")

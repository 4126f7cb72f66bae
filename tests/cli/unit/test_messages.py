"""Errors in the command line's words (cli/messages.py) and the exit code of each outcome (cli/exit_codes.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fal_kontext.cli import build_parser, exit_code_for
from fal_kontext.cli.exit_codes import EXIT_CANCELLED
from fal_kontext.cli.messages import cli_message
from fal_kontext.cli.queue_commands import input_from_args
from fal_kontext.errors import (
    AuthenticationError,
    BadRequestError,
    FieldProblem,
    InvalidInputError,
    RequestCancelledError,
    ResultNotReadyError,
    StartTimeoutError,
)

PYTHON_WORDS = re.compile(r"\w\(\)|\w=['.]|max_image_bytes|start_timeout|auth=")


@pytest.mark.parametrize(
    "err",
    [
        ResultNotReadyError("Request is still in progress", status_code=400, request_id="r1"),
        AuthenticationError("invalid key", status_code=401),
        StartTimeoutError("Request timed out", status_code=504, request_id="r1", error_type="request_timeout"),
        InvalidInputError(
            [FieldProblem("num_images", 9, "9 is out of range: allowed 1 to 4"), FieldProblem("image_url", None, "x")]
        ),
    ],
)
def test_messages_speak_the_command_lines_language(err: Exception) -> None:
    args = build_parser().parse_args(["edit", "a prompt", "in.png"])
    message = cli_message(err, args)
    assert not PYTHON_WORDS.search(message), message


def test_an_oversized_image_names_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    args = build_parser().parse_args(["edit", "a prompt", str(path), "--max-image-bytes", "10"])
    with pytest.raises(InvalidInputError) as raised:
        input_from_args(args)
    message = cli_message(raised.value, args)
    assert "--max-image-bytes" in message and not PYTHON_WORDS.search(message)


def test_cancelled_is_one_code_whatever_reported_it() -> None:
    by_result = BadRequestError("Request was cancelled", status_code=400, error_type="request_cancelled")
    assert exit_code_for(by_result) == exit_code_for(RequestCancelledError("r")) == EXIT_CANCELLED

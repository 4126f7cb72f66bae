"""The command's log (cli/logs.py): -v, -vv, FAL_KONTEXT_LOG_LEVEL, and no credential in any line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from fal_kontext.cli.exit_codes import CommandError
from fal_kontext.cli.logs import ENV_LOG_LEVEL, configure_logging


@pytest.fixture
def loggers() -> Iterator[None]:
    names = ("fal_kontext", "httpx", "httpcore")
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in names}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = True


def test_v_logs_ours_and_vv_adds_httpcore(loggers: None) -> None:
    configure_logging(1, {}, io.StringIO())
    assert logging.getLogger("fal_kontext").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)
    assert logging.getLogger().level == logging.getLogger().level  # the root logger is untouched
    configure_logging(2, {}, io.StringIO())
    assert logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)


def test_the_log_level_variable(loggers: None) -> None:
    stream = io.StringIO()
    configure_logging(0, {ENV_LOG_LEVEL: "info"}, stream)
    logging.getLogger("fal_kontext").info("hello")
    logging.getLogger("fal_kontext").debug("hidden")
    assert stream.getvalue() == "INFO fal_kontext: hello\n"
    with pytest.raises(CommandError, match=ENV_LOG_LEVEL):
        configure_logging(0, {ENV_LOG_LEVEL: "loud"}, stream)


CANARY = "canary-4f1d2c9e8b7a6f5e"


def test_log_lines_never_show_a_credential_from_the_environment() -> None:
    stream = io.StringIO()
    configure_logging(2, {"FAL_KEY_ID": "key-id-0001", "FAL_KEY_SECRET": CANARY, "FAL_KONTEXT_TOKEN": CANARY}, stream)
    # what httpcore's debug log prints: the response headers as sent, here echoing the key
    logging.getLogger("httpcore.http11").debug(
        "receive_response_headers.complete return_value=%r", (b"HTTP/1.1", 401, [(b"x-echo", f"Key {CANARY}")])
    )
    logging.getLogger("fal_kontext").warning("refused: Bearer %s", CANARY)
    text = stream.getvalue()
    assert "receive_response_headers" in text and "refused" in text
    assert CANARY not in text and "***" in text

"""No credential in the log records the client causes: with Python logging at DEBUG (as
``logging.basicConfig(level=logging.DEBUG)`` sets it), a server that echoes the Authorization value in a response
header does not put the key in the log, in both clients, whoever's handler receives the records."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fal_kontext import AuthenticationError
from fal_kontext.log_redaction import SECRETS_FILTER, secret_forms
from tests.client.client_fakes import real_client
from tests.client.conftest import ID_SECRET_CANARY


class _Echo(BaseHTTPRequestHandler):
    """A badly behaved server: every answer is a 401 quoting the request's Authorization header."""

    def do_GET(self) -> None:
        body = json.dumps({"detail": "invalid key"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", self.headers.get("Authorization", ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _levels(level: int) -> Iterator[None]:
    """The HTTP stack's and our loggers at ``level`` and propagating, for one test, whatever earlier tests set."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore", "httpcore.http11", "fal_kontext")]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)  # setLevel, not the attribute: it clears the loggers' isEnabledFor caches
        logger.propagate = True
    try:
        yield
    finally:
        for logger, (old_level, propagate) in zip(loggers, saved, strict=True):
            logger.setLevel(old_level)
            logger.propagate = propagate


@pytest.fixture
def debug_root() -> Iterator[io.StringIO]:
    """The root logger at DEBUG with a plain handler, as ``logging.basicConfig(level=logging.DEBUG)`` makes it in a
    fresh process (the HTTP stack's loggers as they come: no level, propagating, whatever earlier tests set)."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with _levels(logging.NOTSET):
            yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_an_echoed_key_is_redacted_from_debug_records(echo_server: str, debug_root: io.StringIO, kind: str) -> None:
    own = io.StringIO()  # a handler on httpcore itself, not the root's
    own_handler = logging.StreamHandler(own)
    logging.getLogger("httpcore").addHandler(own_handler)
    try:
        with real_client(kind, ID_SECRET_CANARY, base_url=echo_server) as kontext, pytest.raises(AuthenticationError):
            kontext.handle("request-1").status()
    finally:
        logging.getLogger("httpcore").removeHandler(own_handler)
    text = debug_root.getvalue()
    assert "receive_response_headers.complete" in text and "x-echo" in text.lower()  # the header was logged...
    assert "b'Key ***'" in text  # ...with the key replaced
    for shown in (text, own.getvalue()):
        assert all(form not in shown for form in secret_forms(ID_SECRET_CANARY)), shown


def test_the_filter_is_not_called_when_logging_is_off(
    echo_server: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = SECRETS_FILTER.filter

    def counting(record: logging.LogRecord) -> bool:
        calls.append(record.name)
        return original(record)

    monkeypatch.setattr(SECRETS_FILTER, "filter", counting)
    with _levels(logging.WARNING):
        assert not logging.getLogger("httpcore.http11").isEnabledFor(logging.DEBUG)
        with real_client(kind, ID_SECRET_CANARY, base_url=echo_server) as kontext, pytest.raises(AuthenticationError):
            kontext.handle("request-1").status()
    assert calls == []  # httpx's INFO line included: no record is made for a logger that is off

"""One deadline per call, on real sockets and the wall clock: against a local server that answers 500, drops the
connection or never answers, ``edit(timeout=3)`` of both clients fails within 4 s with an error that says the job may
exist (every verb against every fault, on an injected clock: unit/test_bounded_waits.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from fal_kontext import AsyncKontext, Kontext, KontextError, SubmitOutcomeUnknownError
from tests.client.conftest import MARGIN, TIMEOUT, URL


class _Failing(socketserver.BaseRequestHandler):
    """Answers every request 500, drops it, or never answers, as ``server.fault`` says."""

    server: _FailingServer

    def handle(self) -> None:
        self.request.recv(65536)
        if self.server.fault == "500":
            body = b'{"detail": "Internal Server Error"}'
            head = (
                f"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            )
            self.request.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        elif self.server.fault == "stall":
            self.server.stop.wait(30)


class _FailingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fault: str) -> None:
        super().__init__(("127.0.0.1", 0), _Failing)
        self.fault = fault
        self.stop = threading.Event()


@contextlib.contextmanager
def failing_server(fault: str) -> Iterator[str]:
    server = _FailingServer(fault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("fault", ["500", "drop", "stall"])
def test_edit_with_timeout_3_fails_within_4_s_on_a_real_server(kind: str, fault: str) -> None:
    async def edit_async(base_url: str) -> None:
        async with AsyncKontext("test-key", base_url=base_url) as kontext:
            await kontext.edit("a prompt", image=URL, timeout=TIMEOUT)

    with failing_server(fault) as base_url:
        start = time.monotonic()
        with pytest.raises(KontextError) as caught:
            if kind == "sync":
                with Kontext("test-key", base_url=base_url) as kontext:
                    kontext.edit("a prompt", image=URL, timeout=TIMEOUT)
            else:
                asyncio.run(edit_async(base_url))
        elapsed = time.monotonic() - start
    assert elapsed <= TIMEOUT + MARGIN, f"{elapsed:.2f} s: {caught.value!r}"
    assert isinstance(caught.value, SubmitOutcomeUnknownError)  # the job may exist, and it says how to look
    assert "status()" in str(caught.value) or "GET " in str(caught.value)

"""One deadline per call: against a server that fails everything (500, an HTML 502, 504, dropped connections,
refused connections, answers that never come), every verb of both clients returns within its ``timeout`` plus one
second, on an injected clock, with a typed error that says whether the job may exist (on real sockets:
integration/test_bounded_waits.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fal_kontext import (
    APIConnectionError,
    AsyncKontext,
    EditResult,
    Endpoint,
    Kontext,
    KontextError,
    KontextOutput,
    SubmitOutcomeUnknownError,
    WaitTimeoutError,
)
from tests.client.client_fakes import OUTPUT, Blocking, FakeClock, no_jitter
from tests.client.conftest import MARGIN, TIMEOUT, URL

FAL_QUEUE = "https://queue.fal.run"  # fal's own host: a lost submit answer is looked up in fal's request list
INPUT = {"prompt": "a prompt", "image_url": URL}
RID = "req-1"
RESULT = EditResult(RID, KontextOutput.from_dict(OUTPUT))
FAULTS = ("500", "502", "504", "drop", "refuse", "stall")


class BrokenServer:
    """Every host fails every request the same way, each taking 10 ms of the fake clock (a stall: the request's
    whole read timeout, as httpx would wait)."""

    def __init__(self, fault: str, clock: FakeClock) -> None:
        self.fault = fault
        self.clock = clock
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.clock.now += 0.01
        match self.fault:
            case "500":
                return httpx.Response(500, json={"detail": "Internal Server Error"})
            case "502":
                return httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>")
            case "504":
                return httpx.Response(504, json={"detail": "Gateway Timeout"})
            case "drop":
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
            case "refuse":
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            case _:
                read = request.extensions["timeout"]["read"]
                self.clock.now += read if read is not None else 3600.0
                raise httpx.ReadTimeout("The read operation timed out", request=request)


# Each verb called with ``timeout=TIMEOUT`` on a client ``k``.
VERBS: dict[str, Callable[[Any], object]] = {
    "edit": lambda k: k.edit("a prompt", image=URL, timeout=TIMEOUT),
    "generate": lambda k: k.generate("a prompt", timeout=TIMEOUT),
    "run": lambda k: k.run(Endpoint.PRO, INPUT, timeout=TIMEOUT),
    "submit": lambda k: k.submit(Endpoint.PRO, INPUT, timeout=TIMEOUT),
    "resubmit": lambda k: k.resubmit(Endpoint.PRO, INPUT, sent_at=time.time(), timeout=TIMEOUT),
    "wait": lambda k: k.handle(RID, endpoint=Endpoint.PRO).wait(timeout=TIMEOUT),
    "status": lambda k: k.handle(RID, endpoint=Endpoint.PRO).status(timeout=TIMEOUT),
    "result": lambda k: k.handle(RID, endpoint=Endpoint.PRO).result(timeout=TIMEOUT),
    "cancel": lambda k: k.handle(RID, endpoint=Endpoint.PRO).cancel(timeout=TIMEOUT),
    "upload": lambda k: k.upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, timeout=TIMEOUT),
    "run_direct": lambda k: k.run_direct(Endpoint.PRO, INPUT, timeout=TIMEOUT),
    "save": lambda k: k.save(RESULT, "unused-folder", timeout=TIMEOUT),
}
SUBMITS = {"edit", "generate", "run", "submit"}


@contextlib.contextmanager
def _client(kind: str, server: BrokenServer, clock: FakeClock) -> Iterator[Any]:
    options: dict[str, Any] = {"key": "test-key", "base_url": FAL_QUEUE, "clock": clock, "random_source": no_jitter}
    if kind == "sync":
        with Kontext(transport=httpx.MockTransport(server.handle), sleep=clock.sleep, **options) as kontext:
            yield kontext
        return
    loop = asyncio.new_event_loop()
    try:
        asynchronous = AsyncKontext(transport=httpx.MockTransport(server.handle), sleep=clock.asleep, **options)
        with Blocking(asynchronous, loop) as blocking:
            yield blocking
    finally:
        loop.close()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_returns_within_its_timeout(kind: str, verb: str, fault: str) -> None:
    clock = FakeClock()
    server = BrokenServer(fault, clock)
    with _client(kind, server, clock) as kontext:
        start = clock.now
        with pytest.raises(KontextError) as caught:
            VERBS[verb](kontext)
    elapsed = clock.now - start
    assert elapsed <= TIMEOUT + MARGIN, f"{verb} took {elapsed:.2f} s against {fault}: {caught.value!r}"
    assert server.requests >= 1
    error = caught.value
    if verb in SUBMITS and fault == "refuse":
        # Nothing can have been queued: the connection never opened. Not an "outcome unknown".
        assert type(error) is APIConnectionError and not error.reached_server
    elif verb in SUBMITS:
        # The submit was sent and its answer lost or unusable: the job may exist, and the error says how to look.
        assert isinstance(error, SubmitOutcomeUnknownError), repr(error)
        assert "may have queued a job" in str(error) and "before submitting again" in str(error)
    if verb == "wait" and fault != "refuse":
        assert isinstance(error, WaitTimeoutError)


def test_a_lost_submit_answer_is_not_looked_up_past_the_deadline(kind: str) -> None:
    clock = FakeClock()
    server = BrokenServer("500", clock)
    with _client(kind, server, clock) as kontext, pytest.raises(SubmitOutcomeUnknownError) as caught:
        kontext.edit("a prompt", image=URL, timeout=TIMEOUT)
    assert clock.now - 1000.0 <= TIMEOUT + MARGIN
    # It looked (the request list was asked) and said why it stopped.
    assert server.requests > 1
    assert "api.fal.ai/v1/models/requests/by-endpoint" in str(caught.value)

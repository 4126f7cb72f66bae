"""A canary key must never appear in a repr, a log line or an exception: tracebacks with locals for every error kind,
reprs, and the logs of runs on a scripted queue (the logs of real HTTP: integration/test_client_secrets.py)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import fal_kontext
from fal_kontext import AsyncKontext, Credentials, Kontext, KontextError, RetryPolicy
from fal_kontext.config import ClientConfig
from tests.client.client_fakes import (
    BASE,
    RID,
    FakeClock,
    FakeQueue,
    MakeClient,
    cut_stream,
    no_jitter,
    real_client,
    status_body,
)
from tests.client.conftest import CANARY, assert_clean

INPUT = {"prompt": "a prompt", "image_url": "https://example.test/in.png"}
EP = "fal-ai/flux-pro/kontext"


def echo_the_key(request: httpx.Request) -> httpx.Response:
    """A badly behaved server that quotes the Authorization header back in errors."""
    header = request.headers.get("authorization", "")
    return httpx.Response(401, json={"detail": f"invalid key {header}"}, headers={"x-echo": header})


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, content=body.encode(), headers=headers)
    return httpx.Response(status, json=body, headers=headers)


ECHO = f"the server says: Authorization: Key {CANARY}"
RUNNING = reply(202, status_body("IN_PROGRESS"))


def _script(fake: FakeQueue, **replies: list[httpx.Response | Exception]) -> None:
    for operation, scripted in replies.items():
        setattr(fake, operation, scripted)


# Each error kind the client raises, and a scripted queue that makes `run` (or a handle's verb) raise it; the
# answers quote the key back, as a badly behaved server or proxy may.
SCENARIOS: dict[str, tuple[dict[str, list[httpx.Response | Exception]], Any]] = {
    "InvalidInputError": ({}, lambda k: k.run(EP, {"prompt": 1, "image_url": "https://x.test/a.png\n"})),
    "APIConnectionError": ({"cancel": [httpx.ReadError(ECHO)]}, lambda k: k.handle(RID).cancel()),
    "APITimeoutError": ({"cancel": [httpx.ReadTimeout(ECHO)]}, lambda k: k.handle(RID).cancel()),
    # a submit whose answer was lost, on a host with no request list to look it up in (queue.example.test)
    "SubmitOutcomeUnknownError": ({"submit": [reply(502, f"<html>{ECHO}</html>")]}, lambda k: k.run(EP, INPUT)),
    "DirectUnavailableError": ({"submit": [reply(404, {"detail": ECHO})]}, lambda k: k.run_direct(EP, INPUT)),
    "AuthenticationError": (
        {"submit": [reply(401, {"detail": ECHO}, **{"x-echo": CANARY})]},
        lambda k: k.run(EP, INPUT),
    ),
    "BadRequestError": ({"submit": [reply(400, {"detail": ECHO})]}, lambda k: k.run(EP, INPUT)),
    "ResultNotReadyError": (
        {"result": [reply(400, {"detail": "Request is still in progress"}, **{"x-echo": CANARY})]},
        lambda k: k.handle(RID).result(),
    ),
    "NotFoundError": ({"status": [reply(404, {"detail": ECHO})]}, lambda k: k.handle(RID).status()),
    "PayloadTooLargeError": ({"submit": [reply(413, {"detail": ECHO})]}, lambda k: k.run(EP, INPUT)),
    "ValidationError": (
        {"submit": [reply(422, {"detail": [{"loc": ["body", "prompt"], "msg": ECHO, "type": "value_error"}]})]},
        lambda k: k.run(EP, INPUT),
    ),
    "ContentPolicyError": (
        {"submit": [reply(422, {"detail": [{"loc": ["body"], "msg": ECHO, "type": "content_policy_violation"}]})]},
        lambda k: k.run(EP, INPUT),
    ),
    "RateLimitError": (
        {"submit": [reply(429, {"detail": ECHO}, **{"Retry-After": "3600"})]},
        lambda k: k.run(EP, INPUT),
    ),
    "ServerError": ({"status": [reply(500, {"detail": ECHO})]}, lambda k: k.handle(RID).status()),
    "StartTimeoutError": (
        {"result": [reply(504, {"detail": ECHO}, **{"X-Fal-Request-Timeout-Type": "user"})]},
        lambda k: k.handle(RID).result(),
    ),
    "UnexpectedResponseError": ({"status": [reply(200, f"<html>{ECHO}</html>")]}, lambda k: k.handle(RID).status()),
    "RequestFailedError": (
        {
            "status": [reply(200, status_body("COMPLETED", error=ECHO, error_type="runner_disconnected"))],
            "result": [reply(500, {"detail": ECHO})],
        },
        lambda k: k.run(EP, INPUT),
    ),
    "RequestCancelledError": (
        {"status": [reply(200, status_body("COMPLETED", error=ECHO, error_type="request_cancelled"))]},
        lambda k: k.run(EP, INPUT),
    ),
    "WaitTimeoutError": (
        {"status": [reply(503, {"detail": ECHO}), RUNNING], "cancel": [reply(500, {"detail": ECHO})]},
        lambda k: k.run(EP, INPUT, timeout=2.0),
    ),
}


def test_every_error_kind_has_a_scenario() -> None:
    kinds = {name for name in fal_kontext.__all__ if name.endswith("Error")} - {
        "KontextError",
        "APIError",
        "APIStatusError",
        "MissingCredentialsError",  # raised only without a key: tests/client/unit/test_credentials.py renders it
    }
    assert kinds - {"WebhookVerificationError"} == set(SCENARIOS)


@pytest.mark.parametrize("error", list(SCENARIOS))
def test_tracebacks_with_locals_hold_no_key(fake: FakeQueue, clock: FakeClock, make: MakeClient, error: str) -> None:
    """What Sentry, rich or ``pytest -l`` show: every frame's locals, for every error kind, in both clients."""
    _script(fake, **SCENARIOS[error][0])  # not a local: a scripted answer quotes the key, the client must not
    trigger = SCENARIOS[error][1]
    kontext = make(fake, clock, key=CANARY, stream_status=False)
    try:
        trigger(kontext)
    except fal_kontext.KontextError as caught:
        assert type(caught).__name__ == error
        rendered = "".join(traceback.TracebackException.from_exception(caught, capture_locals=True).format())
    else:
        raise AssertionError(f"no {error}")
    assert " = " in rendered  # the locals were rendered
    assert_clean(rendered)
    assert all(r.headers["authorization"] == f"Key {CANARY}" for r in fake.requests)  # it was sent


def test_a_bad_key_in_a_traceback_with_locals(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key read from a file with its newline is refused, and no frame shows it (nor the environment)."""
    for build in (lambda: Kontext(CANARY + "\n"), lambda: AsyncKontext(CANARY + "\n")):
        with pytest.raises(fal_kontext.InvalidInputError) as caught:
            build()
        assert_clean("".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()))
    monkeypatch.setenv("FAL_KEY", CANARY + "\n")
    with pytest.raises(fal_kontext.InvalidInputError) as caught:
        Kontext()
    assert_clean("".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()))


def test_reprs_hide_the_key(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    kontext = make(fake, clock, key=CANARY, httpx_args={"headers": {"X-Team": "t"}, "cookies": {"c": "1"}})
    handle = kontext.submit(EP, INPUT)
    handle.wait()
    clients = kontext._connections._clients
    assert clients  # the generated clients and their httpx clients exist, with the header set
    things: list[object] = [kontext, handle, Credentials("key", CANARY), kontext._config, kontext._settings]
    for generated, http in clients.values():
        things += [generated, http, http.headers]
    for thing in things:
        assert_clean(repr(thing))
        assert_clean(str(thing))
    assert isinstance(kontext._config, ClientConfig)


def test_an_answer_cut_off_by_an_error_quoting_the_key_is_redacted(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    """The body breaks off mid-read with an httpx error whose text quotes the key (as a proxy's may)."""
    fake.status = [cut_stream(b'{"status": "IN_', httpx.ReadError(ECHO))]
    kontext = make(fake, clock, key=CANARY, stream_status=False, retry=RetryPolicy.disabled())
    with pytest.raises(fal_kontext.APIConnectionError) as caught:
        kontext.handle(RID).status()
    assert "ReadError" in str(caught.value)  # the error text was kept, the key only replaced
    assert_clean(str(caught.value))
    assert_clean("".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()))


def test_errors_from_an_echoing_server_are_redacted(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(echo_the_key)
    with real_client(kind, CANARY, base_url=BASE, transport=transport, retry=RetryPolicy.disabled()) as kontext:
        calls: list[Callable[[], object]] = [lambda: kontext.submit(EP, INPUT), lambda: kontext.handle(RID).status()]
        for call in calls:
            with pytest.raises(KontextError) as caught:
                call()
            error = caught.value
            assert_clean(str(error))
            assert_clean(repr(error.args))
            assert_clean(repr(vars(error)))
            assert_clean("".join(traceback.format_exception(error)))
    assert_clean(caplog.text)


def test_logs_of_a_whole_run_hold_no_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeQueue(
        status=[httpx.Response(503, json={"detail": "busy"}), httpx.Response(200, json=status_body("COMPLETED"))]
    )
    clock = FakeClock()
    kontext = Kontext(
        CANARY, base_url=BASE, transport=fake.transport(), sleep=clock.sleep, clock=clock, random_source=no_jitter
    )
    kontext.run("fal-ai/flux-pro/kontext", INPUT)
    assert fake.requests[0].headers["authorization"] == f"Key {CANARY}"  # it was sent, so the check means something
    assert caplog.records
    assert_clean(caplog.text)

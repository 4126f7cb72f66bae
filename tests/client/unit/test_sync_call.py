"""fal's synchronous endpoint without I/O: where it is, the request, the answer, what is never resent and the errors
(``run_direct`` through both clients against the emulator: integration/test_sync_call.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fal_kontext_api.models import KontextOutput

from fal_kontext.errors import (
    APIConnectionError,
    APITimeoutError,
    ContentPolicyError,
    DirectUnavailableError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
)
from fal_kontext.protocol.commands import Answer, Flow, NoAnswer, Send
from fal_kontext.protocol.direct import DirectAnswer, DirectCall, direct_base_url, direct_flow
from fal_kontext.protocol.hosts import FAL_SYNC_URL
from fal_kontext.protocol.send import Pacing
from fal_kontext.retry import RetryPolicy
from fal_kontext.spec import spec
from fal_kontext.transport import CERTIFICATE_ADVICE
from tests.client.client_fakes import OUTPUT, drive_flow, submit_body
from tests.client.conftest import ENDPOINT

BODY = {"prompt": "a donut", "image_url": "https://example.test/in.png"}


def spec_sync_server() -> str:
    extension = spec().get("x-fal-sync")
    return str(extension["server"]) if isinstance(extension, dict) else FAL_SYNC_URL


def request(run_timeout: float | None = 300.0) -> Send:
    return DirectCall(FAL_SYNC_URL, ENDPOINT, BODY, authorization="Key k-1", run_timeout=run_timeout).request()


def ok(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, headers or {}, json.dumps(body).encode("utf-8"))


Outcome = Answer | NoAnswer


def drive(outcomes: list[Outcome]) -> tuple[DirectAnswer[KontextOutput], int, int]:
    """Run the flow on scripted outcomes; returns its value, how many requests it sent and how often it slept."""
    flow: Flow[DirectAnswer[KontextOutput]] = direct_flow(
        request(), KontextOutput.from_dict, pacing=Pacing(RetryPolicy(), lambda: 0.5, lambda: 0.0)
    )
    value, sent, sleeps = drive_flow(flow, lambda _: outcomes.pop(0))
    return value, len(sent), sleeps


def sends_before(error: type[Exception], outcomes: list[Outcome], match: str | None = None) -> tuple[int, str]:
    """How many requests the flow sent before raising ``error``, and the error's message."""
    count = len(outcomes)
    with pytest.raises(error, match=match) as caught:
        drive(outcomes)
    return count - len(outcomes), str(caught.value)


# --- where ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("queue", ["https://queue.fal.run", "https://queue.falrun.com/"])
def test_against_fals_queue_the_synchronous_host_is_the_specs(queue: str) -> None:
    assert direct_base_url(queue) == spec_sync_server().rstrip("/")


def test_against_another_base_it_is_the_sync_prefix_there_and_sync_url_wins() -> None:
    assert direct_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/sync"
    assert direct_base_url("https://proxy.test/fal/") == "https://proxy.test/fal/sync"
    assert direct_base_url("https://queue.fal.run", "https://run.proxy.test/") == "https://run.proxy.test"
    with pytest.raises(ValueError, match="not an absolute http"):
        direct_base_url("https://queue.fal.run", "run.proxy.test")


def test_the_request_posts_the_input_as_json_to_the_endpoint_path_holding_the_connection() -> None:
    call = DirectCall(
        "http://127.0.0.1:8000/sync",
        "/" + ENDPOINT,
        BODY,
        authorization="Key k-1",
        run_timeout=None,
        start_timeout=30.0,
        runner_hint="r1",
    )
    assert "k-1" not in repr(call)
    sent = call.request()
    assert (sent.method, sent.url) == ("POST", f"http://127.0.0.1:8000/sync/{ENDPOINT}")
    assert json.loads(sent.content) == BODY
    assert sent.read_timeout is None
    assert sent.headers["Content-Type"] == "application/json" and sent.headers["Authorization"] == "Key k-1"
    assert sent.headers["X-Fal-Request-Timeout"] == "30" and sent.headers["X-Fal-Runner-Hint"] == "r1"
    assert request(run_timeout=42.0).read_timeout == 42.0
    assert "k-1" not in repr(sent)


# --- the answer -------------------------------------------------------------------------------------------------


def test_a_200_is_parsed_with_the_output_model_and_carries_fals_request_id() -> None:
    answer, sends, _ = drive([ok(OUTPUT, headers={"X-Fal-Request-Id": "rid-9"})])
    assert sends == 1
    assert answer.request_id == "rid-9"
    assert isinstance(answer.output, KontextOutput) and answer.output.seed == OUTPUT["seed"]
    assert drive([ok(OUTPUT)])[0].request_id is None


@pytest.mark.parametrize("body", [submit_body(), {"images": "nope"}, ["not", "an", "object"]])
def test_a_2xx_that_is_not_the_output_is_unexpected_and_says_where_to_look(body: object) -> None:
    _, message = sends_before(UnexpectedResponseError, [ok(body)])
    assert "not the endpoint's output" in message and "sync_url" in message


def test_a_body_that_is_not_json_is_unexpected() -> None:
    sends_before(UnexpectedResponseError, [Answer(200, {}, b"<html>ok</html>")])


# --- never resent once it may have run --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (NoAnswer("ReadTimeout: timed out", reached_server=True, timed_out=True), APITimeoutError),
        (NoAnswer("RemoteProtocolError: dropped", reached_server=True), APIConnectionError),
        (ok({"detail": "Internal error"}, 500), ServerError),
        (ok({"detail": "Bad gateway"}, 502), ServerError),
        (ok({"detail": "Service unavailable"}, 503), ServerError),
    ],
)
def test_an_answer_lost_or_failed_after_sending_is_not_resent(outcome: Outcome, error: type[Exception]) -> None:
    sends, message = sends_before(error, [outcome, ok(OUTPUT)])
    assert sends == 1
    if isinstance(outcome, NoAnswer):
        assert "not sent again" in message and "queue" in message


def test_a_rejected_certificate_says_only_that_asking_again_cannot_help() -> None:
    rejected = NoAnswer(
        f"ConnectError: CERTIFICATE_VERIFY_FAILED; {CERTIFICATE_ADVICE}", False, certificate_rejected=True
    )
    sends, message = sends_before(APIConnectionError, [rejected, ok(OUTPUT)])
    assert sends == 1
    assert message.startswith("the synchronous call to ") and message.endswith(CERTIFICATE_ADVICE)


def test_a_request_that_never_left_or_was_refused_with_429_is_sent_again() -> None:
    refused = NoAnswer("ConnectError: refused", reached_server=False)
    answer, sends, sleeps = drive([refused, ok({"detail": "Too many"}, 429), ok(OUTPUT)])
    assert (sends, sleeps) == (3, 2) and answer.output.seed == OUTPUT["seed"]


# --- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 405])
def test_a_server_without_the_synchronous_endpoint_says_to_use_the_queue(status: int) -> None:
    sends, message = sends_before(DirectUnavailableError, [ok({"detail": "Not Found"}, status)])
    assert sends == 1
    assert f"HTTP {status}" in message and "does not offer fal's synchronous endpoint" in message
    assert "Use run() or edit(), which go through the queue" in message


def test_errors_are_the_queues_typed_errors() -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}]
    sends_before(ContentPolicyError, [ok({"detail": detail}, 422, {"x-fal-request-id": "rid-2"})], "flagged")
    detail = [{"loc": ["body", "seed"], "msg": "too big", "type": "value_error"}]
    with pytest.raises(ValidationError) as caught:
        drive([ok({"detail": detail}, 422, {"x-fal-request-id": "rid-3"})])
    assert caught.value.request_id == "rid-3"


def test_the_parse_function_decides_the_output_type() -> None:
    parse: Callable[[Mapping[str, Any]], str] = lambda body: str(body["seed"])  # noqa: E731
    flow = direct_flow(request(), parse, pacing=Pacing(RetryPolicy.disabled(), lambda: 0.5, lambda: 0.0))
    next(flow)
    with pytest.raises(StopIteration) as stop:
        flow.send(ok(OUTPUT))
    assert stop.value.value == DirectAnswer(None, str(OUTPUT["seed"]))

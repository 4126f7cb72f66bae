"""The sync and async drivers over a scripted fal queue (httpx.MockTransport) with a fake clock: waiting, stream
fallback, adaptive polling, retries, deadlines, cancellation, error mapping, URL following, auth, save()."""

from __future__ import annotations

import asyncio
import base64
import math
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fal_kontext_api.models import QueueStatus

from fal_kontext import (
    APIConnectionError,
    APITimeoutError,
    AsyncKontext,
    AuthenticationError,
    CancelStatus,
    Completed,
    ContentPolicyError,
    InProgress,
    InvalidInputError,
    NotFoundError,
    PollSchedule,
    Queued,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    ResultNotReadyError,
    RetryPolicy,
    ServerError,
    StartTimeoutError,
    Status,
    SubmitOutcomeUnknownError,
    UnexpectedResponseError,
    ValidationError,
    WaitTimeoutError,
)
from fal_kontext.files import write_atomically
from tests.client.client_fakes import (
    BASE,
    OUTPUT,
    PNG,
    RID,
    FakeClock,
    FakeQueue,
    MakeClient,
    cut_stream,
    sse,
    status_body,
    submit_body,
)

INPUT = {"prompt": "a donut", "image_url": "https://example.test/in.png"}
EP = "fal-ai/flux-pro/kontext"


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.Response(status, content=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


# --- waiting ------------------------------------------------------------------------------------------------------


def test_stream_then_result_without_an_extra_status_call(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.stream = [
        sse(
            status_body("IN_QUEUE", position=2),
            status_body("IN_PROGRESS", logs=["loading"]),
            status_body("IN_PROGRESS", logs=["step 1"]),
            status_body("COMPLETED", metrics={"inference_time": 1.2}),
        )
    ]
    updates: list[Status] = []
    result = make(fake, clock).run(EP, INPUT, on_update=updates.append)
    assert fake.ops() == ["submit", "stream", "result"]
    assert result.request_id == RID and result.output.seed == 42 and result.images[0].width == 8
    assert updates[0] == Queued(RID, 2)
    assert [[e.message for e in u.logs] for u in updates if isinstance(u, InProgress)] == [["loading"], ["step 1"]]
    assert isinstance(updates[-1], Completed)
    assert clock.sleeps == []
    stream_request = fake.requests[1]
    assert stream_request.headers["accept"] == "text/event-stream" and stream_request.url.params["logs"] == "1"


def test_without_a_listener_only_the_completed_event_becomes_a_model(
    fake: FakeQueue, clock: FakeClock, make: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Building a QueueStatus for each event no one sees was a third of the client's own CPU per job.
    parsed: list[str] = []
    from_dict = QueueStatus.from_dict.__func__  # type: ignore[attr-defined]

    def counting(cls: type[QueueStatus], src_dict: dict[str, Any]) -> QueueStatus:
        parsed.append(src_dict["status"])
        model: QueueStatus = from_dict(cls, src_dict)
        return model

    monkeypatch.setattr(QueueStatus, "from_dict", classmethod(counting))
    events = [status_body("IN_QUEUE", position=1), status_body("IN_PROGRESS", logs=["a"]), status_body("COMPLETED")]
    fake.stream = [sse(*events), sse(*events)]
    kontext = make(fake, clock)
    assert kontext.run(EP, INPUT).request_id == RID
    assert parsed == ["COMPLETED"]
    parsed.clear()
    updates: list[Status] = []
    kontext.run(EP, INPUT, on_update=updates.append)
    assert parsed == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert [type(u).__name__ for u in updates] == ["Queued", "InProgress", "Completed"]


def test_polling_is_adaptive_and_logs_are_not_repeated(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [
        reply(202, status_body("IN_QUEUE", position=1)),
        reply(202, status_body("IN_QUEUE", position=0)),
        reply(202, status_body("IN_PROGRESS", logs=["a"])),
        reply(202, status_body("IN_PROGRESS", logs=["a", "b"])),
        reply(202, status_body("IN_PROGRESS", logs=["a", "b"])),
        reply(200, status_body("COMPLETED", logs=["a", "b", "c"])),
    ]
    updates: list[Status] = []
    kontext = make(fake, clock, poll=PollSchedule(initial=0.1, factor=2.0, maximum=0.5))
    kontext.run(EP, INPUT, on_update=updates.append)
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert fake.ops() == ["submit", "stream"] + ["status"] * 6 + ["result"]
    logs = [m.message for u in updates for m in u.logs]
    assert logs == ["a", "b", "c"]
    # an unchanged status is not reported again
    assert [type(u).__name__ for u in updates] == ["Queued", "Queued", "InProgress", "InProgress", "Completed"]


def test_a_dropped_stream_falls_back_to_polling(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.stream = [sse(status_body("IN_PROGRESS", logs=["x"]))]  # ends without COMPLETED
    fake.status = [reply(200, status_body("COMPLETED", logs=["x", "y"]))]
    updates: list[Status] = []
    make(fake, clock).run(EP, INPUT, on_update=updates.append)
    assert fake.ops() == ["submit", "stream", "status", "result"]
    assert [m.message for u in updates for m in u.logs] == ["x", "y"]


def test_a_stream_broken_mid_way_falls_back_to_polling(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    first = b'data: {"status": "IN_QUEUE", "request_id": "req-123", "queue_position": 0}\n\n'
    fake.stream = [cut_stream(first, httpx.ReadError("connection reset"))]
    result = make(fake, clock).run(EP, INPUT)
    assert result.output.prompt == "a donut"
    assert fake.ops() == ["submit", "stream", "status", "result"]


def test_a_silent_stream_times_out_into_polling(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.stream = [cut_stream(b": keep-alive\n\n", httpx.ReadTimeout("no event within the idle timeout"))]
    make(fake, clock, stream_idle_timeout=5.0).run(EP, INPUT)
    assert fake.ops() == ["submit", "stream", "status", "result"]
    assert fake.requests[1].extensions["timeout"]["read"] == 5.0


def test_stream_refusing_the_key_is_an_authentication_error(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    fake.stream = [reply(401, {"detail": "invalid key"})]
    with pytest.raises(AuthenticationError, match="req-123"):
        make(fake, clock).run(EP, INPUT)


def test_poll_only_when_asked(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    make(fake, clock, stream_status=False).run(EP, INPUT)
    assert fake.ops() == ["submit", "status", "result"]


def test_result_still_in_progress_after_completed_keeps_waiting(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    fake.result = [reply(400, {"detail": "Request is still in progress"}), reply(200, OUTPUT)]
    make(fake, clock, stream_status=False).run(EP, INPUT)
    assert fake.ops() == ["submit", "status", "result", "status", "result"]
    assert clock.sleeps == [0.1]  # a pause before looking again, never a hot loop


def test_deadline_cancels_and_raises_with_the_request_id(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(202, status_body("IN_PROGRESS"))]
    with pytest.raises(WaitTimeoutError) as caught:
        make(fake, clock, stream_status=False).run(EP, INPUT, timeout=3.0)
    assert caught.value.request_id == RID and caught.value.cancelled
    assert "req-123" in str(caught.value) and "3 s" in str(caught.value)
    assert fake.ops()[-1] == "cancel"
    assert sum(clock.sleeps) == pytest.approx(3.0)


def test_completed_at_the_deadline_returns_the_paid_result(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(202, status_body("IN_PROGRESS"))]
    fake.cancel = [reply(400, {"status": "ALREADY_COMPLETED"})]
    result = make(fake, clock, stream_status=False).run(EP, INPUT, timeout=1.0)
    assert result.request_id == RID and fake.ops()[-2:] == ["cancel", "result"]


def test_deadline_without_cancel(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(202, status_body("IN_QUEUE", position=4))]
    handle = make(fake, clock, stream_status=False).submit(EP, INPUT)
    with pytest.raises(WaitTimeoutError, match="may still run") as caught:
        handle.wait(timeout=1.0, cancel_on_timeout=False)
    assert not caught.value.cancelled and "cancel" not in fake.ops()


def test_no_deadline_with_inf(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    replies: list[httpx.Response | Exception] = [reply(202, status_body("IN_PROGRESS"))] * 40
    fake.status = [*replies, reply(200, status_body("COMPLETED"))]
    make(fake, clock, stream_status=False, wait_timeout=1.0).run(EP, INPUT, timeout=math.inf)
    assert sum(clock.sleeps) > 1.0


def test_completed_with_error_is_request_failed(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(200, status_body("COMPLETED", error="Runner disconnected", error_type="runner_disconnected"))]
    fake.result = [reply(503, {"detail": "Runner disconnected", "error_type": "runner_disconnected"})]
    with pytest.raises(RequestFailedError, match="Runner disconnected") as caught:
        make(fake, clock, stream_status=False).run(EP, INPUT)
    assert caught.value.error_type == "runner_disconnected" and caught.value.request_id == RID
    assert fake.ops().count("result") == 1  # one look at the stored error, no retries of a final failure
    assert clock.sleeps == []


def test_completed_after_the_start_deadline_is_a_start_timeout(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    fake.status = [reply(200, status_body("COMPLETED", error="Request timed out", error_type="request_timeout"))]
    fake.result = [
        reply(
            504,
            {"detail": "Request timed out", "error_type": "request_timeout"},
            **{"X-Fal-Request-Timeout-Type": "user"},
        )
    ]
    with pytest.raises(StartTimeoutError, match="start_timeout"):
        make(fake, clock, stream_status=False).run(EP, INPUT, start_timeout=2)
    assert fake.requests[0].headers["x-fal-request-timeout"] == "2"


def test_completed_cancelled_is_request_cancelled(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(200, status_body("COMPLETED", error="Request was cancelled", error_type="request_cancelled"))]
    with pytest.raises(RequestCancelledError, match="req-123"):
        make(fake, clock, stream_status=False).handle(RID).wait()


def test_ctrl_c_during_wait_cancels_the_request(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(202, status_body("IN_QUEUE", position=3))]

    def interrupt(status: Status) -> None:
        raise KeyboardInterrupt

    kontext = make(fake, clock, stream_status=False)
    with pytest.raises(KeyboardInterrupt):
        kontext.submit(EP, INPUT).wait(on_update=interrupt)
    assert fake.ops()[-1] == "cancel"
    fake.requests.clear()
    with pytest.raises(KeyboardInterrupt):
        kontext.submit(EP, INPUT).wait(on_update=interrupt, cancel_on_interrupt=False)
    assert "cancel" not in fake.ops()


# --- retries ------------------------------------------------------------------------------------------------------


def test_status_is_retried_with_backoff_and_retry_after(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [
        reply(503, {"detail": "busy"}),
        reply(502, "<html>nginx bad gateway</html>"),
        reply(429, {"detail": "slow down"}, **{"Retry-After": "3"}),
        reply(200, status_body("COMPLETED")),
    ]
    kontext = make(fake, clock, stream_status=False, retry=RetryPolicy(initial_delay=0.25, jitter=0.25))
    kontext.run(EP, INPUT)
    assert clock.sleeps == [0.25, 0.5, 3.0]


def test_retries_give_up_with_the_typed_error(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(503, {"detail": "no runners", "error_type": "runner_scheduling_failure"})]
    with pytest.raises(ServerError) as caught:  # no deadline: the policy's count ends the retries
        make(fake, clock, stream_status=False, retry=RetryPolicy(max_retries=2), wait_timeout=None).run(EP, INPUT)
    assert caught.value.error_type == "runner_scheduling_failure" and caught.value.request_id == RID
    assert fake.ops().count("status") == 3


def test_submit_is_never_sent_twice_after_it_may_have_arrived(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    # BASE is neither fal's queue nor loopback: no request list to look the job up in (tests/client/*/test_recovery.py)
    fake.submit = [reply(503, {"detail": "busy"})]
    with pytest.raises(SubmitOutcomeUnknownError) as unknown:
        make(fake, clock).submit(EP, INPUT)
    assert isinstance(unknown.value.__cause__, ServerError)
    assert fake.ops() == ["submit"]
    fake.requests.clear()
    fake.submit = [httpx.ReadTimeout("read timed out")]
    with pytest.raises(SubmitOutcomeUnknownError, match="not sent again") as caught:
        make(fake, clock).submit(EP, INPUT)
    assert isinstance(caught.value.__cause__, APITimeoutError)
    assert caught.value.reached_server and fake.ops() == ["submit"]


def test_submit_is_retried_when_it_never_left(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.submit = [httpx.ConnectError("refused"), httpx.ConnectError("refused"), reply(200, submit_body())]
    handle = make(fake, clock).submit(EP, INPUT)
    assert handle.request_id == RID and fake.ops() == ["submit"] * 3 and len(clock.sleeps) == 2


def test_connection_errors_after_retries(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.submit = [httpx.ConnectError("refused")]
    with pytest.raises(APIConnectionError, match="Check the network") as caught:
        make(fake, clock, retry=RetryPolicy(max_retries=1)).submit(EP, INPUT)
    assert not caught.value.reached_server


# --- error mapping --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (reply(401, {"detail": "invalid key"}), AuthenticationError, ["401", "invalid key", "FAL_KEY"]),
        (reply(403, {"error": {"message": "quota", "type": "insufficient_quota"}}), AuthenticationError, ["quota"]),
        (reply(404, {"detail": "Request not found"}), NotFoundError, ["404", "req-123", "limited time"]),
        (
            reply(422, {"detail": [{"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}]}),
            ContentPolicyError,
            ["prompt: flagged", "content_policy_violation"],
        ),
        (
            reply(
                422,
                {"detail": [{"loc": ["body", "image_url"], "msg": "cannot download", "type": "file_download_error"}]},
            ),
            ValidationError,
            ["image_url: cannot download"],
        ),
        (reply(429, {"detail": "too many"}, **{"Retry-After": "120"}), RateLimitError, ["retry after 120"]),
        (reply(400, {"detail": "Request is still in progress"}), ResultNotReadyError, ["wait()"]),
        (
            reply(
                504,
                {"detail": "Request timed out", "error_type": "request_timeout"},
                **{"X-Fal-Request-Timeout-Type": "user"},
            ),
            StartTimeoutError,
            ["start_timeout", "request_timeout"],
        ),
        (reply(500, b"<html>oops</html>"), ServerError, ["500", "oops"]),
        (reply(200, {"unexpected": True}), UnexpectedResponseError, ["KontextOutput"]),
    ],
)
def test_result_errors_are_typed(
    fake: FakeQueue,
    clock: FakeClock,
    answer: httpx.Response,
    error: type[Exception],
    words: list[str],
    make: MakeClient,
) -> None:
    fake.result = [answer]
    handle = make(fake, clock, retry=RetryPolicy.disabled()).handle(RID)
    with pytest.raises(error) as caught:
        handle.result()
    for word in words:
        assert word in str(caught.value)
    assert "req-123" in str(caught.value)


def test_validation_error_carries_the_field_list(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.submit = [reply(422, {"detail": [{"loc": ["body", "num_images"], "msg": "too many", "type": "value_error"}]})]
    with pytest.raises(ValidationError) as caught:
        make(fake, clock).submit(EP, INPUT)
    assert [(e.loc, e.type) for e in caught.value.errors] == [(("body", "num_images"), "value_error")]


def test_a_refused_submit_is_sent_again_then_rate_limit_has_retry_after(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    fake.submit = [reply(429, {"detail": "queue full"}, **{"Retry-After": "9"})]
    with pytest.raises(RateLimitError) as caught:
        make(fake, clock, retry=RetryPolicy(max_retries=2)).submit(EP, INPUT)
    assert caught.value.retry_after == 9.0 and fake.ops() == ["submit"] * 3 and clock.sleeps == [9.0, 9.0]
    fake.requests.clear()
    fake.submit = [reply(429, {"detail": "no"}, **{"X-Fal-Retryable": "false"})]
    with pytest.raises(RateLimitError):
        make(fake, clock).submit(EP, INPUT)
    assert fake.ops() == ["submit"]


def test_wait_retries_until_its_deadline_not_a_count(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    busy: list[httpx.Response | Exception] = [reply(503, {"detail": "busy"})] * 7
    fake.status = [*busy, reply(200, status_body("COMPLETED"))]
    kontext = make(fake, clock, stream_status=False, retry=RetryPolicy(max_retries=2, max_delay=4.0))
    assert kontext.run(EP, INPUT, timeout=600).request_id == RID
    assert fake.ops().count("status") == 8 and max(clock.sleeps) <= 4.0 * 1.25


def test_wait_deadline_while_retrying_chains_the_last_error(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    fake.status = [reply(503, {"detail": "no runners", "error_type": "runner_scheduling_failure"})]
    fake.cancel = [reply(202, {"status": "CANCELLATION_REQUESTED"})]
    kontext = make(fake, clock, stream_status=False, retry=RetryPolicy(max_retries=2))
    with pytest.raises(WaitTimeoutError) as caught:
        kontext.run(EP, INPUT, timeout=30)
    assert isinstance(caught.value.__cause__, ServerError) and caught.value.__cause__.status_code == 503
    assert fake.ops().count("status") > 3 and "cancel" in fake.ops()


def test_malformed_submit_answer(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.submit = [reply(200, {"status": "IN_QUEUE"})]
    with pytest.raises(SubmitOutcomeUnknownError, match="answer cut") as caught:  # queued, but which job?
        make(fake, clock).submit(EP, INPUT)
    assert isinstance(caught.value.__cause__, UnexpectedResponseError)
    assert "without a request_id" in str(caught.value.__cause__)


def test_a_submit_answer_without_urls_still_gives_a_handle(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.host = "https://elsewhere.example.test"  # would not be followed anyway
    fake.submit = [reply(200, {"request_id": RID, "status_url": f"{BASE}/x"})]  # no response_url, cancel_url
    result = make(fake, clock).run(EP, INPUT)
    assert result.request_id == RID
    assert {str(r.url).split("/fal-ai/")[0] for r in fake.requests} == {BASE}


def test_invalid_input_sends_nothing(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    with pytest.raises(InvalidInputError, match="num_images"):
        make(fake, clock).submit(EP, {**INPUT, "num_images": 9})
    with pytest.raises(InvalidInputError, match="priority"):
        make(fake, clock).submit(EP, INPUT, priority="urgent")
    assert fake.requests == []


def test_cancel_answers(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    handle = make(fake, clock).handle(RID)
    assert handle.cancel() is CancelStatus.CANCELLATION_REQUESTED
    fake.cancel = [reply(400, {"status": "ALREADY_COMPLETED"})]
    assert handle.cancel() is CancelStatus.ALREADY_COMPLETED
    fake.cancel = [reply(404, {"status": "NOT_FOUND"})]
    with pytest.raises(NotFoundError):
        handle.cancel()


# --- URLs and auth ------------------------------------------------------------------------------------------------


def test_aggregator_urls_on_fal_are_rewritten_and_bearer_is_sent(
    fake: FakeQueue, clock: FakeClock, make: MakeClient
) -> None:
    fake.host = "https://queue.fal.run"
    kontext = make(fake, clock, base_url="https://agg.example.test/api", auth="bearer", key="tok", stream_status=False)
    kontext.run(EP, INPUT)
    hosts = {str(r.url).split("/fal-ai/")[0] for r in fake.requests}
    assert hosts == {"https://agg.example.test/api"}
    assert {r.headers["authorization"] for r in fake.requests} == {"Bearer tok"}


def test_fal_key_from_id_and_secret(
    fake: FakeQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, make: MakeClient
) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.setenv("FAL_KEY_ID", "id")
    monkeypatch.setenv("FAL_KEY_SECRET", "secret")
    make(fake, clock, key=None).handle(RID).status()
    assert fake.requests[0].headers["authorization"] == "Key id:secret"
    assert fake.requests[0].url.path == f"/fal-ai/flux-pro/requests/{RID}/status"


def test_resume_by_request_id(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    result = make(fake, clock).handle(RID, endpoint="fal-ai/flux-pro/kontext/max").wait()
    assert result.request_id == RID
    assert fake.ops() == ["stream", "status", "result"]
    with pytest.raises(ValueError, match="request_id"):
        make(fake, clock).handle(" ")


def test_status_reports_all_logs(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.status = [reply(202, status_body("IN_PROGRESS", logs=["a", "b"]))]
    status = make(fake, clock).handle(RID).status(logs=True)
    assert isinstance(status, InProgress) and [e.message for e in status.logs] == ["a", "b"]
    assert fake.requests[0].url.params["logs"] == "1"


def test_stream_iterator_ends_at_completed(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    fake.stream = [sse(status_body("IN_QUEUE", position=0), status_body("COMPLETED"), status_body("IN_QUEUE"))]
    statuses = list(make(fake, clock).handle(RID).stream())
    assert [type(s).__name__ for s in statuses] == ["Queued", "Completed"]


# --- save ---------------------------------------------------------------------------------------------------------


def test_save_downloads_and_decodes_atomically(
    fake: FakeQueue, clock: FakeClock, tmp_path: Path, make: MakeClient
) -> None:
    inline = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0jpeg").decode()
    fake.result = [reply(200, {**OUTPUT, "images": [*OUTPUT["images"], {"url": inline}]})]
    kontext = make(fake, clock)
    paths = kontext.save(kontext.handle(RID).result(), tmp_path / "out")
    assert [p.name for p in paths] == ["req-123-0.png", "req-123-1.jpg"]
    assert paths[0].read_bytes() == PNG
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["req-123-0.png", "req-123-1.jpg"]
    assert "authorization" not in fake.requests[-1].headers  # the CDN never gets the key


def test_saved_files_get_the_usual_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "a.jpg", b"\xff\xd8")
    finally:
        os.umask(old)
    assert (tmp_path / "a.jpg").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.jpg"]


def test_save_of_an_expired_url(fake: FakeQueue, clock: FakeClock, tmp_path: Path, make: MakeClient) -> None:
    fake.files = {}
    kontext = make(fake, clock)
    with pytest.raises(NotFoundError, match="expire"):
        kontext.save(kontext.handle(RID).result(), tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- both clients, and what only asyncio has ---------------------------------------------------------------------


def test_errors_cancel_stream_and_save(fake: FakeQueue, clock: FakeClock, tmp_path: Path, make: MakeClient) -> None:
    fake.submit = [httpx.ReadTimeout("slow")]
    kontext = make(fake, clock)
    with pytest.raises(SubmitOutcomeUnknownError):
        kontext.submit(EP, INPUT)
    handle = kontext.handle(RID)
    assert handle.cancel() is CancelStatus.CANCELLATION_REQUESTED
    assert list(handle.stream()) == []  # the fake has no stream (404): the iterator ends
    paths = kontext.save(handle.result(), tmp_path)
    assert paths[0].read_bytes() == PNG
    assert fake.ops().count("submit") == 1


def test_requests_are_spread_over_small_pools(fake: FakeQueue, clock: FakeClock, make: MakeClient) -> None:
    kontext = make(fake, clock, connection_pools=3, stream_status=False)
    handles = [kontext.submit(EP, INPUT) for _ in range(6)]
    for handle in handles:
        handle.wait()
    assert len(kontext._connections._clients) == 3


def test_async_on_update_may_be_a_coroutine_function(fake: FakeQueue, clock: FakeClock) -> None:
    fake.stream = [sse(status_body("IN_PROGRESS", logs=["go"]), status_body("COMPLETED"))]
    seen: list[Status] = []

    async def on_update(status: Status) -> None:
        seen.append(status)

    async def main() -> None:
        async with AsyncKontext(
            "test-key", base_url=BASE, transport=fake.transport(), sleep=clock.asleep, clock=clock
        ) as kontext:
            result = await kontext.run(EP, INPUT, on_update=on_update)
            assert result.output.to_dict()["seed"] == 42

    asyncio.run(main())
    assert fake.ops() == ["submit", "stream", "result"]
    assert isinstance(seen[-1], Completed)


def test_async_task_cancellation_cancels_the_request(fake: FakeQueue, clock: FakeClock) -> None:
    fake.status = [reply(202, status_body("IN_QUEUE", position=1))]

    def cancel_me(status: Status) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # what Ctrl-C under asyncio.run does to the main task

    async def main() -> None:
        async with AsyncKontext(
            "test-key", base_url=BASE, transport=fake.transport(), sleep=clock.asleep, clock=clock, stream_status=False
        ) as kontext:
            handle = await kontext.submit(EP, INPUT)
            with pytest.raises(asyncio.CancelledError):
                await handle.wait(on_update=cancel_me)

    asyncio.run(main())
    assert fake.ops()[-1] == "cancel"

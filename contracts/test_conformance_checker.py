"""The exchange checker itself: it must pass what fits the spec and report what does not."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from contracts.conformance import ConformanceRecorder, SpecIndex

BASE = "http://127.0.0.1:9"
RID = "0b7e9c1e-0000-4000-8000-000000000001"
SUBMITTED = {
    "request_id": RID,
    "response_url": f"{BASE}/fal-ai/flux-pro/requests/{RID}",
    "status_url": f"{BASE}/fal-ai/flux-pro/requests/{RID}/status",
    "cancel_url": f"{BASE}/fal-ai/flux-pro/requests/{RID}/cancel",
    "status": "IN_QUEUE",
    "queue_position": 0,
}
GOOD_INPUT = {"prompt": "Put a donut next to the flour.", "image_url": "https://example.invalid/a.png"}


@pytest.fixture(scope="module")
def index() -> SpecIndex:
    return SpecIndex()


def _client(
    index: SpecIndex, handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[httpx.Client, ConformanceRecorder]:
    recorder = ConformanceRecorder(httpx.MockTransport(handler), index)
    return httpx.Client(transport=recorder, base_url=BASE, headers={"Authorization": "Key k"}), recorder


def test_conforming_submit_status_and_stream_pass(index: SpecIndex) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=SUBMITTED)
        if request.url.path.endswith("/stream"):
            event = json.dumps({"status": "COMPLETED", "request_id": RID, "logs": None, "metrics": {}})
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=f": ping\n\ndata: {event}\n\n"
            )
        return httpx.Response(202, json={"status": "IN_PROGRESS", "request_id": RID, "logs": []})

    client, recorder = _client(index, handler)
    client.post("/fal-ai/flux-pro/kontext", json=GOOD_INPUT, headers={"X-Fal-Queue-Priority": "low"})
    client.get(f"/fal-ai/flux-pro/requests/{RID}/status", params={"logs": "1"})
    with client.stream("GET", f"/fal-ai/flux-pro/requests/{RID}/status/stream") as response:
        response.read()
    assert recorder.violations() == []
    assert recorder.operations_seen() == {"submit_flux_pro_kontext", "get_request_status", "stream_request_status"}


def test_nonconforming_requests_are_reported(index: SpecIndex) -> None:
    client, recorder = _client(index, lambda request: httpx.Response(200, json=SUBMITTED))
    client.post("/fal-ai/flux-pro/kontext", json={**GOOD_INPUT, "num_images": 9, "safety_tolerance": 2})
    client.post("/fal-ai/flux-pro/kontext/multi", json=GOOD_INPUT, params={"webhook": "x"})
    client.post(
        "/fal-ai/flux-pro/kontext", json=GOOD_INPUT, headers={"X-Fal-Request-Timeout": "soon", "Authorization": "k"}
    )
    problems = recorder.violations()
    assert any("body num_images: 9 is greater than the maximum of 4" in p for p in problems)
    assert any("body safety_tolerance: 2 is not of type 'string'" in p for p in problems)
    assert any("'image_urls' is a required property" in p for p in problems)
    assert any("query parameter 'webhook' is not in the spec" in p for p in problems)
    assert any("header X-Fal-Request-Timeout: 'soon' is not a number" in p for p in problems)
    assert any("no Authorization: Key/Bearer header" in p for p in problems)


def test_nonconforming_responses_are_reported(index: SpecIndex) -> None:
    answers = iter(
        [
            httpx.Response(200, json={"request_id": RID}),  # status is required
            httpx.Response(418, json={"detail": "teapot"}),  # not a documented status
            httpx.Response(202, json={"status": "FAILED", "request_id": RID}),  # not a fal status
            httpx.Response(
                200, json={"images": [{"width": 1}], "timings": {}, "seed": 1, "has_nsfw_concepts": [], "prompt": ""}
            ),
        ]
    )
    client, recorder = _client(index, lambda request: next(answers))
    client.post("/fal-ai/flux-pro/kontext", json=GOOD_INPUT)
    client.put(f"/fal-ai/flux-pro/requests/{RID}/cancel")
    client.get(f"/fal-ai/flux-pro/requests/{RID}/status")
    client.get(f"/fal-ai/flux-pro/requests/{RID}")
    by_exchange = {e.operation_id: e.problems for e in recorder.exchanges}
    assert any('"status" is a required property' in p for p in by_exchange["submit_flux_pro_kontext"])
    assert any("Undocumented status 418" in p for p in by_exchange["cancel_request"])
    assert any('"FAILED" is not one of' in p for p in by_exchange["get_request_status"])
    assert any("KontextOutput images/0: 'url' is a required property" in p for p in by_exchange["get_request_result"])


def test_requests_outside_the_spec_are_listed_not_judged(index: SpecIndex) -> None:
    client, recorder = _client(index, lambda request: httpx.Response(200, content=b"\xff\xd8"))
    client.get("/files/abc.jpg")
    assert recorder.exchanges == [] and recorder.outside_spec == ["GET /files/abc.jpg"]


def test_queue_transitions_that_go_back_are_reported(index: SpecIndex) -> None:
    status = f"/fal-ai/flux-pro/requests/{RID}/status"
    answers = iter(
        [
            httpx.Response(202, json={"status": "IN_QUEUE", "request_id": RID, "queue_position": 1}),
            httpx.Response(202, json={"status": "IN_QUEUE", "request_id": RID, "queue_position": 3}),
            httpx.Response(200, json={"status": "COMPLETED", "request_id": RID, "logs": None}),
            httpx.Response(202, json={"status": "IN_PROGRESS", "request_id": RID, "logs": None}),
            httpx.Response(400, json={"detail": "Request is still in progress"}),
        ]
    )
    client, recorder = _client(index, lambda request: next(answers))
    for _ in range(4):
        client.get(status)
    client.get(f"/fal-ai/flux-pro/requests/{RID}")
    problems = recorder.violations()
    assert any("queue_position rose from 1 to 3" in p for p in problems)
    assert any("status went back to IN_PROGRESS after COMPLETED" in p for p in problems)
    assert any("result still in progress after its status was COMPLETED" in p for p in problems)


def test_compressed_bodies_and_standard_sse_variants_are_accepted(index: SpecIndex) -> None:
    """A correct server may compress (Content-Encoding) and may frame SSE any way the standard allows: one event's
    JSON over several data: lines, id: and retry: fields, CRLF line ends, comments."""
    status: dict[str, Any] = {"status": "IN_PROGRESS", "request_id": RID, "logs": [], "queue_position": None}
    done: dict[str, Any] = {"status": "COMPLETED", "request_id": RID, "logs": None, "metrics": {}}
    lines = [": ping", "id: 1", "retry: 2000", *(f"data: {part}" for part in json.dumps(done, indent=1).split("\n"))]
    stream = ("\r\n".join(lines) + "\r\n\r\n").encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
            return httpx.Response(200, headers=headers, content=gzip.compress(stream))
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return httpx.Response(202, headers=headers, content=gzip.compress(json.dumps(status).encode()))

    client, recorder = _client(index, handler)
    assert client.get(f"/fal-ai/flux-pro/requests/{RID}/status").json()["status"] == "IN_PROGRESS"
    with client.stream("GET", f"/fal-ai/flux-pro/requests/{RID}/status/stream") as response:
        response.read()
    assert recorder.violations() == []


def test_stream_events_are_checked_against_the_status_schema_and_logs_must_not_repeat(index: SpecIndex) -> None:
    entry = {"message": "Generating", "level": "INFO", "source": "USER", "timestamp": "2026-01-01T00:00:00Z"}
    events = [
        {"status": "IN_PROGRESS", "request_id": RID, "logs": ["Generating"]},
        {"status": "IN_PROGRESS", "request_id": RID, "logs": [entry]},
        {"status": "COMPLETED", "request_id": RID, "logs": [entry]},
    ]
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client, recorder = _client(index, handler)
    with client.stream("GET", f"/fal-ai/flux-pro/requests/{RID}/status/stream", params={"logs": "1"}) as response:
        response.read()
    problems = recorder.violations()
    assert any("stream event 0: status event logs/0: 'Generating' is not of type 'object'" in p for p in problems)
    assert any("[stream-logs-incremental]" in p and "event 2 repeats 1 log entry" in p for p in problems)
    assert len(problems) == 2, problems


def test_a_result_before_completion_is_reported(index: SpecIndex) -> None:
    answers = iter(
        [
            httpx.Response(202, json={"status": "IN_PROGRESS", "request_id": RID, "logs": None}),
            httpx.Response(200, json={"images": [], "timings": {}, "seed": 1, "has_nsfw_concepts": [], "prompt": ""}),
            httpx.Response(202, json={"status": "IN_PROGRESS", "request_id": RID, "logs": None}),
        ]
    )
    client, recorder = _client(index, lambda request: next(answers))
    client.get(f"/fal-ai/flux-pro/requests/{RID}/status")
    client.get(f"/fal-ai/flux-pro/requests/{RID}")
    client.get(f"/fal-ai/flux-pro/requests/{RID}/status")
    assert any("status IN_PROGRESS after the result answered 200" in p for p in recorder.violations())

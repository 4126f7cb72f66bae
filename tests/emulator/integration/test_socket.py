"""The emulator over a real loopback socket (run_emulator): the same protocol, plus what only a socket shows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.emulator.conftest import REQUESTS, SUBMIT, body


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(EmulatorConfig(queue_wait=0.02, run_time=0.1, keepalive_interval=0.05)) as running:
        yield running


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[RunningEmulator]:
    """Jobs that run 30 s: a request is certainly still pending when the test looks, however loaded the machine."""
    with run_emulator(EmulatorConfig(queue_wait=0, run_time=30.0)) as running:
        yield running


@pytest.fixture
def slow_http(slow_emulator: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=slow_emulator.base_url, headers={"Authorization": f"Key {slow_emulator.key}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def http(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=emulator.base_url, headers={"Authorization": f"Key {emulator.key}"}, timeout=10
    ) as client:
        yield client


def test_serves_on_loopback(emulator: RunningEmulator) -> None:
    assert emulator.base_url.startswith("http://127.0.0.1:")
    assert httpx.get(emulator.base_url + "/_emulator/health").json() == {"status": "ok"}


def test_lifecycle_over_the_stream_then_result_and_file(http: httpx.Client, emulator: RunningEmulator) -> None:
    submitted = http.post(SUBMIT + "/max", json=body(num_images=1)).json()
    assert submitted["status_url"].startswith(emulator.base_url)
    events = []
    with http.stream("GET", submitted["status_url"] + "/stream", params={"logs": "true"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "COMPLETED"
    assert [event["status"] for event in events].count("COMPLETED") == 1
    result = http.get(submitted["response_url"])
    assert result.status_code == 200
    image = result.json()["images"][0]
    downloaded = httpx.get(image["url"])
    assert downloaded.status_code == 200
    assert len(downloaded.content) == image["file_size"]


def test_polling_is_202_while_pending_then_200(slow_http: httpx.Client) -> None:
    submitted = slow_http.post(SUBMIT, json=body()).json()
    pending = slow_http.get(submitted["status_url"], params={"logs": "0"})
    assert (pending.status_code, pending.json()["status"]) in {(202, "IN_QUEUE"), (202, "IN_PROGRESS")}
    # A cancelled request ends COMPLETED (https://fal.ai/docs/inference-api/queue/status).
    slow_http.put(submitted["cancel_url"])
    done = slow_http.get(submitted["status_url"], params={"logs": "0"})
    assert (done.status_code, done.json()["status"]) == (200, "COMPLETED")


def test_wrong_key_is_401_over_the_socket(emulator: RunningEmulator) -> None:
    response = httpx.post(emulator.base_url + SUBMIT, json=body(), headers={"Authorization": "Key nope"})
    assert response.status_code == 401


def test_cancel_over_the_socket(slow_http: httpx.Client) -> None:
    submitted = slow_http.post(SUBMIT, json=body()).json()
    assert slow_http.put(submitted["cancel_url"]).status_code == 202
    assert slow_http.put(f"{REQUESTS}/{submitted['request_id']}/cancel").status_code == 400


def test_settings_change_over_a_socket() -> None:
    with run_emulator() as emulator:
        changed = emulator.update_settings(request_list_pending=True, request_list_delay=1.5)
        assert (changed["request_list_pending"], changed["request_list_delay"]) == (True, 1.5)
        emulator.set_remote_images("refuse")
        with httpx.Client(base_url=emulator.base_url) as client:
            assert client.get("/_emulator/settings").json()["remote_images"] == "refuse"
        with pytest.raises(httpx.HTTPStatusError):
            emulator.update_settings(request_list_delay=-1)

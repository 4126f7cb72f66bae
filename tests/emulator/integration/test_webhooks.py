"""Webhooks delivered over real sockets: fal's payload, signatures verifiable with the published JWKS, retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, run_emulator
from fal_kontext_emulator.webhook_delivery import signing_message
from tests.emulator.conftest import SUBMIT, body, jwks_public_key


class Receiver:
    """A loopback webhook receiver that fails the first `failures` deliveries with 500."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.delivered = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({key.lower(): value for key, value in self.headers.items()}, raw))
                failing = receiver.failures > 0
                receiver.failures -= 1
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if not failing:
                    receiver.delivered.set()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(failures=2) as running:
        yield running


def test_webhook_is_delivered_signed_with_retries(receiver: Receiver) -> None:
    config = EmulatorConfig(queue_wait=0.0, run_time=0.05, webhook_retry_delay=0.05)
    with run_emulator(config) as emulator:
        headers = {"Authorization": f"Key {emulator.key}"}
        submitted = httpx.post(
            emulator.base_url + SUBMIT, json=body(), params={"fal_webhook": receiver.url}, headers=headers
        )
        assert submitted.status_code == 200
        assert receiver.delivered.wait(timeout=20)
        jwks = httpx.get(emulator.base_url + "/.well-known/jwks.json").json()
        attempts = emulator.webhook_deliveries()
        result = httpx.get(submitted.json()["response_url"], headers=headers).json()
    assert [attempt["status_code"] for attempt in attempts] == [500, 500, 200]
    sent_headers, raw = receiver.received[-1]
    payload = json.loads(raw)
    request_id = submitted.json()["request_id"]
    assert payload == {"request_id": request_id, "gateway_request_id": request_id, "status": "OK", "payload": result}
    assert sent_headers["x-fal-webhook-request-id"] == request_id
    message = signing_message(
        request_id, sent_headers["x-fal-webhook-user-id"], sent_headers["x-fal-webhook-timestamp"], raw
    )
    jwks_public_key(jwks).verify(bytes.fromhex(sent_headers["x-fal-webhook-signature"]), message)


def test_a_failed_request_sends_an_error_payload() -> None:
    config = EmulatorConfig(queue_wait=0.0, run_time=0.05, webhook_retry_delay=0.05)
    with Receiver() as receiver, run_emulator(config) as emulator:
        headers = {"Authorization": f"Key {emulator.key}"}
        flagged = body(prompt="[content-policy]")
        httpx.post(emulator.base_url + SUBMIT, json=flagged, params={"fal_webhook": receiver.url}, headers=headers)
        assert receiver.delivered.wait(timeout=20)
    payload = json.loads(receiver.received[-1][1])
    assert (payload["status"], payload["error"]) == ("ERROR", "Invalid status code: 422")
    assert payload["payload"]["detail"][0]["type"] == "content_policy_violation"

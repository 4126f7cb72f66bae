"""Webhooks: fal's payload, ED25519 signatures verifiable with the published JWKS, retries, loopback only."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fal_kontext_emulator import EmulatorConfig, run_emulator
from fal_kontext_emulator.webhook_delivery import WebhookSigner, signing_message

from .conftest import SUBMIT, body


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


def _public_key(jwks: dict[str, Any]) -> Ed25519PublicKey:
    [key] = jwks["keys"]
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=="))


def test_signature_covers_ids_timestamp_and_body_hash() -> None:
    signer = WebhookSigner()
    headers = signer.headers("rid", "uid", b"{}", timestamp=1700000000)
    assert headers["X-Fal-Webhook-Timestamp"] == "1700000000"
    message = signing_message("rid", "uid", "1700000000", b"{}")
    assert message == f"rid\nuid\n1700000000\n{hashlib.sha256(b'{}').hexdigest()}".encode()
    _public_key(signer.jwks()).verify(bytes.fromhex(headers["X-Fal-Webhook-Signature"]), message)
    again = WebhookSigner.from_bytes(signer.private_bytes())
    assert again.jwks() == signer.jwks()


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
    _public_key(jwks).verify(bytes.fromhex(sent_headers["x-fal-webhook-signature"]), message)


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

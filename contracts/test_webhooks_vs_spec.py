"""Webhooks against spec: what the server POSTs to `fal_webhook` fits the spec's WebhookPayload and its signature verifies.

Only against the local emulator: a remote server cannot reach a receiver on this machine's loopback.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from contracts.conformance import SpecIndex
from contracts.target import ContractTarget
from fal_kontext import ContentPolicyError, Kontext, RequestFailedError
from fal_kontext.webhooks import verify_webhook


class _Receiver(BaseHTTPRequestHandler):
    deliveries: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.deliveries.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the deliveries, not the log."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    deliveries: list[tuple[dict[str, str], bytes]] = []
    handler = type("Receiver", (_Receiver,), {"deliveries": deliveries})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", deliveries
    server.shutdown()
    server.server_close()


def _image() -> str:
    buffer = io.BytesIO()
    PILImage.new("RGB", (32, 32), "teal").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_webhook_deliveries_fit_the_spec_and_verify(
    contract_target: ContractTarget, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    if contract_target.remote:
        pytest.skip("a remote server cannot deliver to this machine's loopback")
    url, deliveries = receiver
    with Kontext(contract_target.secret, base_url=contract_target.base_url, wait_timeout=60) as kontext:
        kontext.edit("Add a lamp", image=_image(), webhook_url=url)
        with pytest.raises(ContentPolicyError):
            kontext.edit("[content-policy] no", image=_image(), webhook_url=url)
        with pytest.raises(RequestFailedError):
            kontext.edit("[runner-failure] dies", image=_image(), webhook_url=url)
    jwks = httpx.get(f"{contract_target.base_url}/.well-known/jwks.json", verify=contract_target.verify).json()
    for _ in range(100):
        if len(deliveries) >= 3:
            break
        time.sleep(0.05)  # deliveries go out in the background after completion; bounded at 5 s
    assert len(deliveries) == 3, deliveries
    index = SpecIndex()
    statuses = []
    for headers, body in deliveries:
        assert index.check_schema("WebhookPayload", json.loads(body)) == []
        event = verify_webhook(body, headers, jwks)
        statuses.append((event.ok, event.result is not None, bool(event.errors) or bool(event.error)))
    assert sorted(statuses) == [(False, False, True), (False, False, True), (True, True, False)]

"""Webhook deliveries signed by the emulator (fal's format, its own key in its JWKS) pass verify_webhook."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from PIL import Image as PILImage

from fal_kontext import Endpoint
from fal_kontext.errors import WebhookVerificationError
from fal_kontext.files import image_source_to_url
from fal_kontext.webhooks import fetch_jwks, verify_webhook
from fal_kontext_emulator import EmulatorConfig, run_emulator
from tests.client.client_fakes import real_client


class Receiver(BaseHTTPRequestHandler):
    deliveries: ClassVar[list[tuple[bytes, dict[str, str]]]] = []
    arrived: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Receiver.deliveries.append((body, dict(self.headers.items())))
        Receiver.arrived.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Receiver.deliveries.clear()
    Receiver.arrived.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_emulator_webhooks_verify_and_parse(receiver: str, kind: str) -> None:
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), "blue").save(buffer, format="PNG")
    with (
        run_emulator(EmulatorConfig(run_time=0.1, queue_wait=0.01)) as emulator,
        real_client(kind, emulator.key, base_url=emulator.base_url) as kontext,
    ):
        handle = kontext.submit(
            Endpoint.PRO,
            {"prompt": "a prompt", "image_url": image_source_to_url(buffer.getvalue())},
            webhook_url=receiver,
        )
        handle.wait()
        assert Receiver.arrived.wait(timeout=10)
        jwks = fetch_jwks(emulator.base_url + "/.well-known/jwks.json")
    body, headers = Receiver.deliveries[0]
    event = verify_webhook(body, headers, jwks)
    assert event.ok and event.request_id == handle.request_id
    assert event.result is not None and event.result.images
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body + b" ", headers, jwks)

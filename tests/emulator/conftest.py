"""Shared pieces for the emulator tests (unit/ and integration/): a manual clock, an in-process client, inputs."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from PIL import Image

from fal_kontext_emulator import EmulatorConfig, create_app

SUBMIT = "/fal-ai/flux-pro/kontext"
REQUESTS = "/fal-ai/flux-pro/requests"
AUTH = {"Authorization": "Key test-key"}


class ManualClock:
    """A clock the test moves by hand: `clock.advance(1.5)`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def image_data_uri(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (320, 240)) -> str:
    """A PNG of one colour as a data URI."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def jwks_public_key(jwks: dict[str, Any]) -> Ed25519PublicKey:
    """The one ED25519 key of a JWKS (what a receiver verifies webhook signatures with)."""
    [key] = jwks["keys"]
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=="))


def body(**fields: Any) -> dict[str, Any]:
    """A valid single-image submit body, with `fields` added or replaced."""
    return {"prompt": "Put a donut next to the flour.", "image_url": image_data_uri(), **fields}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


MakeClient = Callable[..., Any]


@pytest.fixture
async def make_client(clock: ManualClock) -> AsyncIterator[MakeClient]:
    """Build in-process clients: `client = make_client(config)`; closed at the end of the test."""
    clients: list[httpx.AsyncClient] = []

    def make(config: EmulatorConfig | None = None, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        app = create_app(config or EmulatorConfig(stream_poll_interval=0.01), clock=clock)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers=AUTH if headers is None else headers,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: MakeClient) -> httpx.AsyncClient:
    """An in-process client of an emulator with test defaults (queue wait 0.05 s, run time 0.2 s, 4 runners)."""
    made: httpx.AsyncClient = make_client()
    return made


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

"""Remote image URLs, offline: a placeholder derived from the URL, `.invalid` hosts fail, a switch refuses all.

And the emulator never opens a connection to anything while reading them (sockets are watched).
"""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig
from fal_kontext_emulator.images import derived_picture
from tests.emulator.conftest import REQUESTS, SUBMIT, MakeClient, ManualClock, body, image_data_uri

pytestmark = pytest.mark.anyio

RABBIT = "https://v3.fal.media/files/rabbit/rmgBxhwGYb2d3pl3x9sKf_output.png"
TIGER = "https://v3.fal.media/files/tiger/bml6YA7DWJXOigadvxk75_image.webp"


async def result_of(client: httpx.AsyncClient, clock: ManualClock, payload: dict[str, Any], path: str = SUBMIT) -> Any:
    submitted = await client.post(path, json=payload)
    assert submitted.status_code == 200, submitted.text
    clock.advance(60)
    return await client.get(f"{REQUESTS}/{submitted.json()['request_id']}")


async def first_image(client: httpx.AsyncClient, response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    return (await client.get(response.json()["images"][0]["url"])).content


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record, and refuse, every connection or name lookup the process tries while the test runs."""
    attempts: list[object] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network access during a test of the offline emulator")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


async def test_remote_urls_become_deterministic_placeholders_without_any_connection(
    client: httpx.AsyncClient, clock: ManualClock, no_network: list[object]
) -> None:
    rabbit = await first_image(client, await result_of(client, clock, body(image_url=RABBIT, seed=7)))
    again = await first_image(client, await result_of(client, clock, body(image_url=RABBIT, seed=7)))
    tiger = await first_image(client, await result_of(client, clock, body(image_url=TIGER, seed=7)))
    multi = await result_of(
        client, clock, {"prompt": "both", "image_urls": [RABBIT, TIGER], "seed": 7}, SUBMIT + "/multi"
    )
    assert multi.status_code == 200, multi.text
    assert rabbit == again
    assert hashlib.sha256(rabbit).digest() != hashlib.sha256(tiger).digest()
    assert no_network == []


def test_a_placeholder_depends_on_the_url_only() -> None:
    assert derived_picture(RABBIT) == derived_picture(RABBIT)
    assert derived_picture(RABBIT) != derived_picture(RABBIT + "?v=2")


@pytest.mark.parametrize(
    "url", ["https://download-error.invalid/cat.png", "http://files.example.invalid./x.jpg", "ftp://v3.fal.media/x"]
)
async def test_invalid_hosts_and_other_schemes_fail_as_fal_download_errors(
    client: httpx.AsyncClient, clock: ManualClock, url: str
) -> None:
    response = await result_of(client, clock, body(image_url=url))
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert (item["loc"], item["type"]) == (["body", "image_url"], "file_download_error")
    assert item["url"] == "https://docs.fal.ai/errors#file_download_error"


async def test_the_failing_input_of_a_list_is_named(client: httpx.AsyncClient, clock: ManualClock) -> None:
    payload = {"prompt": "x", "image_urls": [image_data_uri(), "https://gone.invalid/y.png"]}
    response = await result_of(client, clock, payload, SUBMIT + "/multi")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image_urls", 1]


async def test_refuse_mode_fails_every_remote_url(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(EmulatorConfig(remote_images="refuse"))
    response = await result_of(client, clock, body(image_url=RABBIT))
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "file_download_error"
    assert "remote_images=refuse" in response.json()["detail"][0]["msg"]


async def test_the_switch_changes_through_the_admin_api(client: httpx.AsyncClient, clock: ManualClock) -> None:
    assert (await client.get("/_emulator/settings")).json()["remote_images"] == "placeholder"
    switched = await client.patch("/_emulator/settings", json={"remote_images": "refuse"})
    assert switched.json()["remote_images"] == "refuse"
    assert (await result_of(client, clock, body(image_url=RABBIT))).status_code == 422
    await client.patch("/_emulator/settings", json={"remote_images": "placeholder"})
    assert (await result_of(client, clock, body(image_url=RABBIT))).status_code == 200


@pytest.mark.parametrize("payload", [{"remote_images": "fetch"}, {"other": 1}, [1]])
async def test_bad_settings_are_422(client: httpx.AsyncClient, payload: Any) -> None:
    assert (await client.patch("/_emulator/settings", json=payload)).status_code == 422


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="remote_images"):
        EmulatorConfig(remote_images="fetch")  # type: ignore[arg-type]


async def test_an_expired_own_file_is_a_download_error(client: httpx.AsyncClient, clock: ManualClock) -> None:
    gone = "http://testserver/files/no-such-request/no-such-request_0.jpg"
    response = await result_of(client, clock, body(image_url=gone))
    assert response.status_code == 422
    assert "holds no such file" in response.json()["detail"][0]["msg"]

"""fal storage on loopback: token, single upload, multipart, initiate + PUT, lifecycle, serving, admin listing,
and uploaded files as request inputs."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from fal_kontext_emulator import EmulatorConfig
from tests.emulator.conftest import AUTH, REQUESTS, SUBMIT, MakeClient, ManualClock, body

pytestmark = pytest.mark.anyio


def png(colour: tuple[int, int, int] = (10, 120, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def cdn_headers(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={})
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["base_url"] == "http://testserver"
    assert token["expires_at"].endswith("+00:00")
    return {"Authorization": f"{token['token_type']} {token['token']}"}


async def uploads(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await client.get("/_emulator/uploads")).json()["uploads"]
    return listed


async def test_single_upload_is_served_back_and_listed(client: httpx.AsyncClient) -> None:
    headers = {**await cdn_headers(client), "Content-Type": "image/png", "X-Fal-File-Name": "cat.png"}
    response = await client.post("/files/upload", content=png(), headers=headers)
    assert response.status_code == 200, response.text
    url = response.json()["access_url"]
    assert url.startswith("http://testserver/files/uploads/") and url.endswith("/cat.png")
    served = await client.get(url, headers={"Authorization": ""})
    assert (served.content, served.headers["content-type"]) == (png(), "image/png")
    [listed] = await uploads(client)
    assert (listed["file_name"], listed["size"], listed["complete"]) == ("cat.png", len(png()), True)


async def test_storage_needs_a_key_then_a_token(make_client: MakeClient) -> None:
    anonymous = make_client(headers={})
    response = await anonymous.post("/storage/auth/token", json={})
    assert (response.status_code, response.json()) == (401, {"detail": "Authorization header is required"})
    assert (await anonymous.post("/files/upload", content=b"x")).status_code == 401
    with_key = await anonymous.post("/files/upload", content=b"x", headers=AUTH)
    assert with_key.status_code == 401  # the CDN takes a storage token, not the key


async def test_multipart_upload_joins_the_parts_in_order(client: httpx.AsyncClient) -> None:
    headers = await cdn_headers(client)
    created = await client.post(
        "/files/upload/multipart", headers={**headers, "Content-Type": "image/png", "X-Fal-File-Name": "big.png"}
    )
    access_url, upload_id = created.json()["access_url"], created.json()["uploadId"]
    data = png((200, 0, 0))
    chunks = [data[:100], data[100:200], data[200:]]
    parts = []
    for number in (3, 1, 2):
        put = await client.put(
            f"{access_url}/multipart/{upload_id}/{number}", content=chunks[number - 1], headers=headers
        )
        assert put.status_code == 200
        parts.append({"partNumber": number, "etag": put.headers["etag"]})
    assert (await client.get(access_url)).status_code == 404  # not complete yet
    done = await client.post(f"{access_url}/multipart/{upload_id}/complete", json={"parts": parts}, headers=headers)
    assert done.status_code == 200, done.text
    assert (await client.get(access_url)).content == data


@pytest.mark.parametrize(
    "parts",
    [[], [{"partNumber": 1, "etag": '"nope"'}], [{"partNumber": 2, "etag": '"x"'}], "parts"],
)
async def test_a_bad_completion_is_400(client: httpx.AsyncClient, parts: Any) -> None:
    headers = await cdn_headers(client)
    created = (await client.post("/files/upload/multipart", headers=headers)).json()
    base = f"{created['access_url']}/multipart/{created['uploadId']}"
    await client.put(base + "/1", content=b"abc", headers=headers)
    response = await client.post(base + "/complete", json={"parts": parts}, headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"]


async def test_initiate_then_put(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/storage/upload/initiate",
        params={"storage_type": "gcs"},
        json={"file_name": "a.png", "content_type": "image/png"},
    )
    assert response.status_code == 200, response.text
    urls = response.json()
    assert (await client.put(urls["upload_url"], content=png(), headers={"Authorization": ""})).status_code == 200
    assert (await client.get(urls["file_url"])).content == png()


async def test_lifecycle_expires_the_file(client: httpx.AsyncClient, clock: ManualClock) -> None:
    lifecycle = json.dumps({"expiration_duration_seconds": 60})
    headers = {**await cdn_headers(client), "X-Fal-Object-Lifecycle": lifecycle}
    url = (await client.post("/files/upload", content=png(), headers=headers)).json()["access_url"]
    assert (await uploads(client))[0]["lifecycle"] == {"expiration_duration_seconds": 60}
    clock.advance(59)
    assert (await client.get(url)).status_code == 200
    clock.advance(2)
    assert (await client.get(url)).status_code == 404
    assert await uploads(client) == []


@pytest.mark.parametrize("lifecycle", ["nope", "[]", '{"expiration_duration_seconds": -1}'])
async def test_a_bad_lifecycle_is_400(client: httpx.AsyncClient, lifecycle: str) -> None:
    headers = {**await cdn_headers(client), "X-Fal-Object-Lifecycle": lifecycle}
    assert (await client.post("/files/upload", content=b"x", headers=headers)).status_code == 400


async def test_an_upload_over_the_limit_is_413(make_client: MakeClient) -> None:
    client = make_client(EmulatorConfig(max_upload_bytes=10))
    headers = await cdn_headers(client)
    assert (await client.post("/files/upload", content=b"x" * 11, headers=headers)).status_code == 413


async def test_an_uploaded_image_is_a_request_input(client: httpx.AsyncClient, clock: ManualClock) -> None:
    headers = {**await cdn_headers(client), "Content-Type": "image/png", "X-Fal-File-Name": "in.png"}
    url = (await client.post("/files/upload", content=png((0, 200, 0)), headers=headers)).json()["access_url"]
    submitted = (await client.post(SUBMIT, json=body(image_url=url))).json()
    clock.advance(60)
    result = await client.get(f"{REQUESTS}/{submitted['request_id']}")
    assert result.status_code == 200, result.text
    missing = (await client.post(SUBMIT, json=body(image_url=url.replace("/uploads/", "/uploads/x")))).json()
    clock.advance(60)
    failed = await client.get(f"{REQUESTS}/{missing['request_id']}")
    assert (failed.status_code, failed.json()["detail"][0]["type"]) == (422, "file_download_error")

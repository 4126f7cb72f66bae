"""fal's Platform API request list on the emulator: query, item shape, payloads, pagination, auth, isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, create_app
from tests.emulator.conftest import AUTH, SUBMIT, MakeClient, ManualClock, body

pytestmark = pytest.mark.anyio

LIST = "/v1/models/requests/by-endpoint"
ENDPOINT = SUBMIT.strip("/")


async def submitted(client: httpx.AsyncClient, path: str = SUBMIT, **fields: Any) -> str:
    response = await client.post(path, json=body(**fields))
    assert response.status_code == 200, response.text
    request_id: str = response.json()["request_id"]
    return request_id


async def listed(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get(LIST, params={"endpoint_id": ENDPOINT, **params})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_ended_requests_are_listed_with_fal_item_fields(client: httpx.AsyncClient, clock: ManualClock) -> None:
    first = await submitted(client, seed=1)
    await submitted(client, SUBMIT + "/max", seed=2)
    clock.advance(60)
    page = await listed(client)
    assert (page["has_more"], page["next_cursor"]) == (False, None)
    [item] = page["items"]
    assert set(item) == {"request_id", "endpoint_id", "sent_at", "started_at", "ended_at", "status_code", "duration"}
    assert (item["request_id"], item["endpoint_id"], item["status_code"]) == (first, ENDPOINT, 200)
    assert item["duration"] == pytest.approx(0.2)
    assert datetime.fromisoformat(item["sent_at"]) <= datetime.fromisoformat(item["ended_at"])
    both = await client.get(LIST, params=[("endpoint_id", ENDPOINT), ("endpoint_id", ENDPOINT + "/max")])
    assert len(both.json()["items"]) == 2
    assert len((await client.get(LIST, params={"endpoint_id": f"{ENDPOINT},{ENDPOINT}/max"})).json()["items"]) == 2


async def test_payloads_are_expanded_on_request(client: httpx.AsyncClient, clock: ManualClock) -> None:
    await submitted(client, seed=3)
    clock.advance(60)
    [item] = (await listed(client, expand="payloads"))["items"]
    assert item["json_input"] == body(seed=3)
    assert item["json_output"]["seed"] == 3


async def test_a_lost_submit_is_found_by_its_input(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(EmulatorConfig(faults=(), keys=("test-key",)))
    await client.post("/_emulator/faults", json={"operation": "submit", "sequence": ["lost:503-noid"]})
    lost = await client.post(SUBMIT, json=body(seed=42))
    assert lost.status_code == 503 and "x-fal-request-id" not in lost.headers
    clock.advance(60)
    found = [item for item in (await listed(client, expand="payloads"))["items"] if item["json_input"] == body(seed=42)]
    assert len(found) == 1 and found[0]["status_code"] == 200


async def test_each_key_sees_only_its_own_requests(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(EmulatorConfig(keys=("test-key", "other-key")))
    await submitted(client)
    clock.advance(60)
    other = await client.get(LIST, params={"endpoint_id": ENDPOINT}, headers={"Authorization": "Key other-key"})
    assert other.json()["items"] == []
    assert (await client.get(LIST, params={"endpoint_id": ENDPOINT}, headers={"Authorization": ""})).status_code == 401


async def test_pending_requests_and_the_delay_are_settings(client: httpx.AsyncClient, clock: ManualClock) -> None:
    request_id = await submitted(client)
    assert (await listed(client))["items"] == []
    await client.patch("/_emulator/settings", json={"request_list_pending": True})
    [pending] = (await listed(client))["items"]
    assert (pending["request_id"], pending["ended_at"], pending["status_code"]) == (request_id, None, None)
    await client.patch("/_emulator/settings", json={"request_list_pending": False, "request_list_delay": 30})
    clock.advance(10)
    assert (await listed(client))["items"] == []
    clock.advance(30)
    assert [item["request_id"] for item in (await listed(client))["items"]] == [request_id]


async def test_pages_follow_the_cursor(client: httpx.AsyncClient, clock: ManualClock) -> None:
    ids = set()
    for seed in range(5):
        ids.add(await submitted(client, seed=seed))
        clock.advance(1)
    clock.advance(60)
    seen: list[str] = []
    page = await listed(client, limit=2)
    assert page["next_cursor"] == "Mg=="
    while True:
        seen += [item["request_id"] for item in page["items"]]
        if not page["has_more"]:
            break
        page = await listed(client, limit=2, cursor=page["next_cursor"])
    assert len(seen) == 5 and set(seen) == ids
    ended = [item["ended_at"] for item in (await listed(client))["items"]]
    assert ended == sorted(ended, reverse=True)


async def test_status_request_id_and_window_filter(client: httpx.AsyncClient, clock: ManualClock) -> None:
    ok = await submitted(client)
    flagged = await submitted(client, prompt="[content-policy]")
    failed = await submitted(client, prompt="[runner-failure]")
    clock.advance(60)
    by_status = {
        status: [item["request_id"] for item in (await listed(client, status=status))["items"]]
        for status in ("success", "user_error", "error")
    }
    assert by_status == {"success": [ok], "user_error": [flagged], "error": [failed]}
    assert [item["request_id"] for item in (await listed(client, request_id=failed))["items"]] == [failed]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await listed(client, start=future))["items"] == []
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await listed(client, end=past))["items"] == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({}, "endpoint_id"),
        ({"endpoint_id": ENDPOINT, "limit": "0"}, "limit"),
        ({"endpoint_id": ENDPOINT, "limit": "101"}, "limit"),
        ({"endpoint_id": ENDPOINT, "status": "failed"}, "status"),
        ({"endpoint_id": ENDPOINT, "expand": "logs"}, "expand"),
        ({"endpoint_id": ENDPOINT, "cursor": "!!"}, "cursor"),
        ({"endpoint_id": ENDPOINT, "start": "yesterday"}, "start"),
        ({"endpoint_id": ",".join([ENDPOINT] * 51)}, "endpoint_id"),
    ],
)
async def test_bad_queries_are_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], loc: str
) -> None:
    response = await client.get(LIST, params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", loc]


async def test_only_loopback_clients_are_served(clock: ManualClock) -> None:
    app = create_app(EmulatorConfig(), clock=clock)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=AUTH) as remote:
        assert (await remote.get(LIST, params={"endpoint_id": ENDPOINT})).status_code == 403


async def test_platform_faults_apply(client: httpx.AsyncClient) -> None:
    await client.post("/_emulator/faults", json={"operation": "platform", "sequence": ["503"]})
    assert (await client.get(LIST, params={"endpoint_id": ENDPOINT})).status_code == 503
    assert (await client.get(LIST, params={"endpoint_id": ENDPOINT})).status_code == 200
    counters = (await client.get("/_emulator/counters")).json()
    assert counters["calls"]["list_requests_by_endpoint"] == 2

"""GET /_emulator/requests: each request's times on the emulator's clock and the calls made for it (benchmarks)."""

from __future__ import annotations

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig
from tests.emulator.conftest import REQUESTS, SUBMIT, MakeClient, ManualClock, body

pytestmark = pytest.mark.anyio


async def test_requests_list_times_and_calls_per_request(make_client: MakeClient, clock: ManualClock) -> None:
    client: httpx.AsyncClient = make_client(EmulatorConfig(queue_wait=0.5, run_time=2.0))
    first = (await client.post(SUBMIT, json=body(seed=1))).json()["request_id"]
    second = (await client.post(SUBMIT, json=body(seed=2))).json()["request_id"]
    submitted_on_clock = clock.now
    await client.get(f"{REQUESTS}/{first}/status")
    clock.advance(3.0)
    await client.get(f"{REQUESTS}/{first}/status", params={"logs": "1"})
    await client.get(f"{REQUESTS}/{first}")
    await client.get(f"{REQUESTS}/{second}")
    await client.put(f"{REQUESTS}/{second}/cancel")

    listed = (await client.get("/_emulator/requests")).json()

    held = listed["requests"]
    assert set(held) == {first, second}
    assert held[first]["calls"] == {"get_request_status": 2, "get_request_result": 1}
    assert held[second]["calls"] == {"get_request_result": 1, "cancel_request": 1}
    offset = listed["clock_offset"]
    assert held[first]["submitted_at"] + offset == pytest.approx(submitted_on_clock)
    assert held[first]["started_at"] + offset == pytest.approx(submitted_on_clock + 0.5)
    assert held[first]["completed_at"] + offset == pytest.approx(submitted_on_clock + 2.5)


async def test_calls_per_request_reset_with_the_counters(client: httpx.AsyncClient) -> None:
    rid = (await client.post(SUBMIT, json=body())).json()["request_id"]
    await client.get(f"{REQUESTS}/{rid}/status")
    await client.delete("/_emulator/counters")
    await client.get(f"{REQUESTS}/{rid}/status")
    listed = (await client.get("/_emulator/requests")).json()
    assert listed["requests"][rid]["calls"] == {"get_request_status": 1}
    assert listed["requests"][rid]["completed_at"] is None

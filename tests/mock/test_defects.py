"""Seeded defects (test only): each one changes what the emulator answers, as its description says."""

from __future__ import annotations

import httpx
import pytest

from fal_kontext.mock import SEEDED_DEFECTS, EmulatorConfig

from .conftest import REQUESTS, SUBMIT, MakeClient, ManualClock, body

pytestmark = pytest.mark.anyio


def defective(make_client: MakeClient, name: str) -> httpx.AsyncClient:
    client: httpx.AsyncClient = make_client(EmulatorConfig(defects=frozenset({name})))
    return client


def test_unknown_defects_are_refused() -> None:
    with pytest.raises(ValueError, match="defects: unknown"):
        EmulatorConfig(defects=frozenset({"nope"}))
    assert set(SEEDED_DEFECTS) == {
        "wrong_status_code",
        "missing_required_field",
        "accepted_invalid_enum",
        "backward_transition",
        "dropped_header",
    }


async def test_wrong_status_code(make_client: MakeClient) -> None:
    client = defective(make_client, "wrong_status_code")
    request_id = (await client.post(SUBMIT, json=body())).json()["request_id"]
    assert (await client.put(f"{REQUESTS}/{request_id}/cancel")).status_code == 200


async def test_missing_required_field(make_client: MakeClient) -> None:
    client = defective(make_client, "missing_required_field")
    assert "status" not in (await client.post(SUBMIT, json=body())).json()


async def test_accepted_invalid_enum(make_client: MakeClient) -> None:
    client = defective(make_client, "accepted_invalid_enum")
    assert (await client.post(SUBMIT, json=body(output_format="gif"))).status_code == 200


async def test_backward_transition(make_client: MakeClient, clock: ManualClock) -> None:
    client = defective(make_client, "backward_transition")
    request_id = (await client.post(SUBMIT, json=body())).json()["request_id"]
    clock.advance(10)
    reads = [(await client.get(f"{REQUESTS}/{request_id}/status")).json()["status"] for _ in range(3)]
    assert reads == ["COMPLETED", "IN_PROGRESS", "COMPLETED"]


async def test_dropped_header(make_client: MakeClient) -> None:
    client = defective(make_client, "dropped_header")
    response = await client.delete(SUBMIT)
    assert response.status_code == 405
    assert "allow" not in response.headers

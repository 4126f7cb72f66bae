"""fal's synchronous endpoint under /sync/<endpoint-id>: answered with the output itself, errors as the queue's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fal_kontext_emulator import EmulatorConfig, create_app
from tests.emulator.conftest import AUTH, SUBMIT, body

pytestmark = pytest.mark.anyio

SYNC = "/sync" + SUBMIT


@pytest.fixture
async def live() -> AsyncIterator[httpx.AsyncClient]:
    """An in-process emulator on the real clock (a synchronous call waits for its run), with short times."""
    app = create_app(EmulatorConfig(queue_wait=0.0, run_time=0.05, stream_poll_interval=0.01))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=AUTH
    ) as client:
        yield client


async def test_the_answer_is_the_output(live: httpx.AsyncClient) -> None:
    response = await live.post(SYNC + "/max", json=body(num_images=2, seed=5))
    assert response.status_code == 200, response.text
    output = response.json()
    assert [image["url"].startswith("http://testserver/files/") for image in output["images"]] == [True, True]
    assert output["seed"] == 5
    assert response.headers["x-fal-request-id"]
    counters = (await live.get("/_emulator/counters")).json()
    assert counters["calls"] == {"sync_submit_flux_pro_kontext_max": 1}


async def test_invalid_input_is_the_queue_s_422(live: httpx.AsyncClient) -> None:
    response = await live.post(SYNC, json=body(num_images=99))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "num_images"]


@pytest.mark.parametrize(
    ("prompt", "status", "kind"),
    [("[content-policy]", 422, "content_policy_violation"), ("[runner-failure]", 503, "runner_disconnected")],
)
async def test_model_errors_are_the_result_s(live: httpx.AsyncClient, prompt: str, status: int, kind: str) -> None:
    response = await live.post(SYNC, json=body(prompt=prompt))
    assert response.status_code == status
    data = response.json()
    assert kind in (data.get("error_type"), data["detail"][0]["type"] if isinstance(data["detail"], list) else None)


async def test_webhooks_are_refused_on_the_sync_endpoint(live: httpx.AsyncClient) -> None:
    response = await live.post(SYNC, params={"fal_webhook": "http://127.0.0.1:9/hook"}, json=body())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "fal_webhook"]


async def test_only_submit_paths_exist_under_sync(live: httpx.AsyncClient) -> None:
    assert (await live.get("/sync/fal-ai/flux-pro/requests/abc/status")).status_code == 404
    assert (await live.get(SYNC)).status_code == 405
    assert (await live.post(SYNC, json=body(), headers={"Authorization": "Key wrong"})).status_code == 401


async def test_sync_faults_are_their_own_group(live: httpx.AsyncClient) -> None:
    await live.post("/_emulator/faults", json={"operation": "sync", "sequence": ["503"]})
    assert (await live.post(SUBMIT, json=body())).status_code == 200
    assert (await live.post(SYNC, json=body())).status_code == 503
    assert (await live.post(SYNC, json=body())).status_code == 200

"""The emulator in-process (httpx.ASGITransport, manual clock): fal's protocol, validation, auth, results."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from fal_kontext_emulator import EmulatorConfig
from tests.emulator.conftest import AUTH, REQUESTS, SUBMIT, MakeClient, ManualClock, body, image_data_uri

pytestmark = pytest.mark.anyio


async def submit(client: httpx.AsyncClient, path: str = SUBMIT, **kwargs: Any) -> dict[str, Any]:
    response = await client.post(path, json=kwargs.pop("json", body()), **kwargs)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def run_to_completion(client: httpx.AsyncClient, clock: ManualClock, request_id: str) -> httpx.Response:
    clock.advance(60)
    return await client.get(f"{REQUESTS}/{request_id}")


# -- submit and status --------------------------------------------------------------------------------------------


async def test_submit_answers_the_request_id_and_absolute_urls(client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT + "/max", json=body())
    data = response.json()
    request_id = data["request_id"]
    assert response.headers["x-fal-request-id"] == request_id
    assert data["status"] == "IN_QUEUE"
    assert data["queue_position"] == 0
    assert data["status_url"] == f"http://testserver{REQUESTS}/{request_id}/status"
    assert data["response_url"] == f"http://testserver{REQUESTS}/{request_id}"
    assert data["cancel_url"] == f"http://testserver{REQUESTS}/{request_id}/cancel"


async def test_public_base_url_is_used_for_every_url(make_client: MakeClient) -> None:
    client = make_client(EmulatorConfig(public_base_url="https://proxy.example/fal"))
    data = await submit(client)
    assert data["status_url"].startswith("https://proxy.example/fal/fal-ai/flux-pro/requests/")


async def test_status_goes_202_in_queue_202_in_progress_200_completed(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    request_id = (await submit(client))["request_id"]
    seen = []
    for step in (0.0, 0.1, 0.3):
        clock.advance(step)
        response = await client.get(f"{REQUESTS}/{request_id}/status")
        seen.append((response.status_code, response.json()["status"]))
    assert seen == [(202, "IN_QUEUE"), (202, "IN_PROGRESS"), (200, "COMPLETED")]
    completed = response.json()
    assert completed["metrics"]["inference_time"] == pytest.approx(0.2)
    assert "queue_position" not in completed
    assert "error" not in completed


async def test_status_does_not_move_without_time(client: httpx.AsyncClient) -> None:
    request_id = (await submit(client))["request_id"]
    for _ in range(20):
        response = await client.get(f"{REQUESTS}/{request_id}/status")
    assert response.json()["status"] == "IN_QUEUE"


@pytest.mark.parametrize(("flag", "with_logs"), [("1", True), ("true", True), ("0", False), ("false", False)])
async def test_logs_flag_accepts_1_0_true_false(
    client: httpx.AsyncClient, clock: ManualClock, flag: str, with_logs: bool
) -> None:
    request_id = (await submit(client))["request_id"]
    clock.advance(0.1)  # started at 0.05 of a 0.2 s run: the 0% and 25% lines are out
    data = (await client.get(f"{REQUESTS}/{request_id}/status", params={"logs": flag})).json()
    assert data["status"] == "IN_PROGRESS"
    if with_logs:
        assert [entry["message"] for entry in data["logs"]] == ["Generating image: 0%", "Generating image: 25%"]
        assert {entry["source"] for entry in data["logs"]} == {"USER"}
    else:
        assert data["logs"] is None


async def test_logs_flag_rejects_other_values(client: httpx.AsyncClient) -> None:
    request_id = (await submit(client))["request_id"]
    response = await client.get(f"{REQUESTS}/{request_id}/status", params={"logs": "yes"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "logs"]


async def test_trailing_slashes_are_accepted(client: httpx.AsyncClient, clock: ManualClock) -> None:
    request_id = (await submit(client, SUBMIT + "/"))["request_id"]
    assert (await client.get(f"{REQUESTS}/{request_id}/status/")).status_code == 202
    clock.advance(1)
    assert (await client.get(f"{REQUESTS}/{request_id}/")).status_code == 200


async def test_queue_positions_and_low_priority(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(EmulatorConfig(runners=1, queue_wait=0.0, run_time=1.0))
    await submit(client)
    low = await submit(client, headers={"X-Fal-Queue-Priority": "low"})
    normal = await submit(client)
    assert low["queue_position"] == 0
    assert normal["queue_position"] == 0
    clock.advance(1.0)
    statuses = [
        (await client.get(f"{REQUESTS}/{rid}/status")).json()["status"]
        for rid in (low["request_id"], normal["request_id"])
    ]
    assert statuses == ["IN_QUEUE", "IN_PROGRESS"]


async def test_request_timeout_gives_fal_504_on_the_result(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(EmulatorConfig(runners=1, queue_wait=0.0, run_time=10.0))
    await submit(client)
    late = await submit(client, headers={"X-Fal-Request-Timeout": "2.5"})
    clock.advance(3)
    status = (await client.get(f"{REQUESTS}/{late['request_id']}/status")).json()
    assert (status["status"], status["error_type"]) == ("COMPLETED", "request_timeout")
    result = await client.get(f"{REQUESTS}/{late['request_id']}")
    assert result.status_code == 504
    assert result.json() == {"detail": "Request timed out", "error_type": "request_timeout"}
    assert result.headers["x-fal-request-timeout-type"] == "user"
    assert result.headers["x-fal-error-type"] == "request_timeout"


# -- results and images -------------------------------------------------------------------------------------------


async def test_result_before_completion_is_400_still_in_progress(client: httpx.AsyncClient) -> None:
    request_id = (await submit(client))["request_id"]
    response = await client.get(f"{REQUESTS}/{request_id}")
    assert response.status_code == 400
    assert response.json() == {"detail": "Request is still in progress"}


async def test_result_holds_real_images_served_from_files(client: httpx.AsyncClient, clock: ManualClock) -> None:
    data = await submit(client, json=body(num_images=2, aspect_ratio="16:9", seed=7, output_format="png"))
    response = await run_to_completion(client, clock, data["request_id"])
    assert response.status_code == 200
    assert response.headers["x-fal-request-id"] == data["request_id"]
    output = response.json()
    assert output["seed"] == 7
    assert output["has_nsfw_concepts"] == [False, False]
    assert output["prompt"] == body()["prompt"]
    assert len(output["images"]) == 2
    for item in output["images"]:
        assert item["url"].startswith("http://testserver/files/")
        downloaded = await client.get(item["url"], headers={})
        assert downloaded.headers["content-type"] == "image/png"
        assert len(downloaded.content) == item["file_size"]
        picture = Image.open(io.BytesIO(downloaded.content))
        assert picture.format == "PNG"
        assert picture.size == (item["width"], item["height"])
        assert item["width"] > item["height"]
        assert 0.9e6 < item["width"] * item["height"] < 1.2e6


async def test_without_aspect_ratio_the_input_ratio_is_kept(client: httpx.AsyncClient, clock: ManualClock) -> None:
    data = await submit(client, json=body(image_url=image_data_uri(size=(200, 400))))
    image = (await run_to_completion(client, clock, data["request_id"])).json()["images"][0]
    assert image["height"] / image["width"] == pytest.approx(2.0, rel=0.05)


async def test_same_seed_and_input_give_the_same_bytes(client: httpx.AsyncClient, clock: ManualClock) -> None:
    first = await submit(client, json=body(seed=42, sync_mode=True))
    second = await submit(client, json=body(seed=42, sync_mode=True))
    other = await submit(client, json=body(seed=43, sync_mode=True))
    clock.advance(60)
    urls = [
        (await client.get(f"{REQUESTS}/{d['request_id']}")).json()["images"][0]["url"] for d in (first, second, other)
    ]
    assert urls[0] == urls[1]
    assert urls[0] != urls[2]


async def test_sync_mode_gives_data_uris_and_no_files(client: httpx.AsyncClient, clock: ManualClock) -> None:
    data = await submit(client, json=body(sync_mode=True))
    image = (await run_to_completion(client, clock, data["request_id"])).json()["images"][0]
    assert image["url"].startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(image["url"].split(",", 1)[1])
    assert len(raw) == image["file_size"]
    assert Image.open(io.BytesIO(raw)).format == "JPEG"
    missing = await client.get(f"/files/{data['request_id']}/{image['file_name']}")
    assert missing.status_code == 404


def _mean_colour(data: bytes) -> tuple[float, ...]:
    picture = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.Resampling.BOX)
    pixel = picture.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return tuple(float(value) for value in pixel)


async def test_output_is_visibly_derived_from_the_input(client: httpx.AsyncClient, clock: ManualClock) -> None:
    red = await submit(client, json=body(image_url=image_data_uri((230, 20, 20)), seed=1, sync_mode=True))
    blue = await submit(client, json=body(image_url=image_data_uri((20, 20, 230)), seed=1, sync_mode=True))
    clock.advance(60)
    colours = []
    for data in (red, blue):
        url = (await client.get(f"{REQUESTS}/{data['request_id']}")).json()["images"][0]["url"]
        colours.append(_mean_colour(base64.b64decode(url.split(",", 1)[1])))
    assert colours[0][0] > colours[0][2] + 50
    assert colours[1][2] > colours[1][0] + 50


async def test_a_served_file_can_be_the_next_input(client: httpx.AsyncClient, clock: ManualClock) -> None:
    first = await submit(client, json=body(image_url=image_data_uri((20, 200, 20))))
    url = (await run_to_completion(client, clock, first["request_id"])).json()["images"][0]["url"]
    multi = await submit(client, SUBMIT + "/multi", json={"prompt": "again", "image_urls": [url, image_data_uri()]})
    response = await run_to_completion(client, clock, multi["request_id"])
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["url"].startswith("http://testserver/files/")


async def test_content_policy_trigger_completes_then_422(client: httpx.AsyncClient, clock: ManualClock) -> None:
    data = await submit(client, json=body(prompt="draw [content-policy] now"))
    clock.advance(60)
    status = (await client.get(f"{REQUESTS}/{data['request_id']}/status")).json()
    assert status["status"] == "COMPLETED"
    assert "error" not in status
    response = await client.get(f"{REQUESTS}/{data['request_id']}")
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert (item["type"], item["loc"]) == ("content_policy_violation", ["body", "prompt"])


async def test_runner_failure_completes_with_error_then_503(client: httpx.AsyncClient, clock: ManualClock) -> None:
    data = await submit(client, json=body(prompt="[runner-failure]"))
    clock.advance(60)
    status = (await client.get(f"{REQUESTS}/{data['request_id']}/status")).json()
    assert (status["status"], status["error"], status["error_type"]) == (
        "COMPLETED",
        "Runner disconnected",
        "runner_disconnected",
    )
    response = await client.get(f"{REQUESTS}/{data['request_id']}")
    assert response.status_code == 503
    assert response.json() == {"detail": "Runner disconnected", "error_type": "runner_disconnected"}
    assert response.headers["x-fal-error-type"] == "runner_disconnected"


async def test_results_expire_after_retention(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(EmulatorConfig(retention=30.0))
    data = await submit(client)
    clock.advance(10)
    url = (await client.get(f"{REQUESTS}/{data['request_id']}")).json()["images"][0]["url"]
    clock.advance(30)
    assert (await client.get(f"{REQUESTS}/{data['request_id']}")).status_code == 404
    assert (await client.get(f"{REQUESTS}/{data['request_id']}/status")).status_code == 404
    assert (await client.get(url)).status_code == 404


# -- cancel -------------------------------------------------------------------------------------------------------


async def test_cancel_answers_202_then_400_and_404(client: httpx.AsyncClient, clock: ManualClock) -> None:
    request_id = (await submit(client))["request_id"]
    first = await client.put(f"{REQUESTS}/{request_id}/cancel")
    assert (first.status_code, first.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    status = (await client.get(f"{REQUESTS}/{request_id}/status")).json()
    assert (status["status"], status["error_type"]) == ("COMPLETED", "request_cancelled")
    again = await client.put(f"{REQUESTS}/{request_id}/cancel")
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    missing = await client.put(f"{REQUESTS}/nope/cancel")
    assert (missing.status_code, missing.json()) == (404, {"status": "NOT_FOUND"})
    result = await client.get(f"{REQUESTS}/{request_id}")
    assert result.status_code == 400
    assert result.json()["error_type"] == "request_cancelled"


# -- auth and isolation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Key test-key", "Bearer test-key", "key test-key"])
async def test_key_and_bearer_are_accepted(make_client: MakeClient, header: str) -> None:
    client = make_client(headers={"Authorization": header})
    assert (await client.post(SUBMIT, json=body())).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Key wrong"}, {"Authorization": "Basic test-key"}])
async def test_missing_or_wrong_key_is_401(make_client: MakeClient, headers: dict[str, str]) -> None:
    client = make_client(headers=headers)
    for response in (await client.post(SUBMIT, json=body()), await client.get(f"{REQUESTS}/x/status")):
        assert response.status_code == 401
        assert isinstance(response.json()["detail"], str)


async def test_a_request_is_visible_only_to_its_key(make_client: MakeClient) -> None:
    config = EmulatorConfig(keys=("alice", "bob"))
    alice = make_client(config, headers={"Authorization": "Key alice"})
    data = await submit(alice)
    bob = httpx.AsyncClient(
        transport=alice._transport, base_url="http://testserver", headers={"Authorization": "Key bob"}
    )
    async with bob:
        for response in (
            await bob.get(f"{REQUESTS}/{data['request_id']}/status"),
            await bob.get(f"{REQUESTS}/{data['request_id']}"),
        ):
            assert response.status_code == 404
        assert (await bob.put(f"{REQUESTS}/{data['request_id']}/cancel")).json() == {"status": "NOT_FOUND"}
    assert (await alice.get(f"{REQUESTS}/{data['request_id']}/status")).status_code == 202


# -- bad input never gets a 500 -----------------------------------------------------------------------------------


async def test_schema_errors_are_422_in_fal_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT, json={"prompt": 3, "image_url": "x", "num_images": 9, "safety_tolerance": 2})
    assert response.status_code == 422
    detail = {tuple(item["loc"]): item["type"] for item in response.json()["detail"]}
    assert detail == {
        ("body", "prompt"): "string_type",
        ("body", "num_images"): "less_than_equal",
        ("body", "safety_tolerance"): "enum",
    }


async def test_schema_errors_carry_the_input_as_fal_documents(client: httpx.AsyncClient) -> None:
    sent = {"image_urls": [], "num_images": 9}
    response = await client.post(SUBMIT + "/multi", json=sent)
    inputs = {tuple(item["loc"]): item["input"] for item in response.json()["detail"]}
    assert inputs == {("body", "prompt"): sent, ("body", "image_urls"): [], ("body", "num_images"): 9}
    bad_logs = await client.get(f"{REQUESTS}/abc/status", params={"logs": "yes"})
    assert bad_logs.json()["detail"][0]["input"] == "yes"


async def test_missing_fields_are_named(client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT + "/multi", json={"image_urls": []})
    detail = {tuple(item["loc"]): item["type"] for item in response.json()["detail"]}
    assert detail == {("body", "prompt"): "missing", ("body", "image_urls"): "too_short"}


@pytest.mark.parametrize(
    ("content", "content_type", "loc"),
    [
        (b"{not json", "application/json", ["body", 1]),
        (b"[1, 2]", "application/json", ["body"]),
        (b'{"prompt": NaN}', "application/json", ["body", 0]),
        (b"prompt=x", "application/x-www-form-urlencoded", ["body"]),
        (b"\xff\xfe", "application/json", ["body", 0]),
        (b'{"prompt": "\\ud800", "image_url": "x"}', "application/json", ["body", 0]),
        (b'{"prompt": "a", "image_url": "x", "z": 1e999}', "application/json", ["body", 0]),
        (b"[" * 100_000, "application/json", ["body"]),
    ],
)
async def test_malformed_bodies_are_422(
    client: httpx.AsyncClient, content: bytes, content_type: str, loc: list[Any]
) -> None:
    response = await client.post(SUBMIT, content=content, headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


async def test_oversized_body_is_413(make_client: MakeClient) -> None:
    client = make_client(EmulatorConfig(max_body_bytes=1000))
    response = await client.post(SUBMIT, json=body(prompt="x" * 2000))
    assert response.status_code == 413
    assert "1000" in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("data:image/png;base64,@@@", "value_error"),
        ("data:nonsense", "value_error"),
        ("data:image/png;base64," + "A" * 4000, "image_too_large"),
    ],
)
async def test_bad_data_uris_are_422_at_submit(make_client: MakeClient, url: str, kind: str) -> None:
    client = make_client(EmulatorConfig(max_data_uri_bytes=1000))
    response = await client.post(SUBMIT, json=body(image_url=url))
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert (item["loc"], item["type"]) == (["body", "image_url"], kind)


async def test_undecodable_image_fails_on_the_result(client: httpx.AsyncClient, clock: ManualClock) -> None:
    not_an_image = "data:image/png;base64," + base64.b64encode(b"hello").decode()
    data = await submit(client, json=body(image_url=not_an_image))
    response = await run_to_completion(client, clock, data["request_id"])
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "file_download_error"


@pytest.mark.parametrize(
    ("headers", "loc"),
    [
        ({"X-Fal-Request-Timeout": "soon"}, ["header", "X-Fal-Request-Timeout"]),
        ({"X-Fal-Request-Timeout": "0.05"}, ["header", "X-Fal-Request-Timeout"]),
        ({"X-Fal-Request-Timeout": "inf"}, ["header", "X-Fal-Request-Timeout"]),
        ({"X-Fal-Queue-Priority": "urgent"}, ["header", "X-Fal-Queue-Priority"]),
    ],
)
async def test_bad_headers_are_422(client: httpx.AsyncClient, headers: dict[str, str], loc: list[str]) -> None:
    response = await client.post(SUBMIT, json=body(), headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "not a url",
        "http://127.evil.example:9/hook",
        "http://127.0.0.1.nip.io/hook",
        "http://localhost.evil.example/hook",
        "http://[::ffff:8.8.8.8]/hook",
        "http://0x7f000001/hook",
        "http://10.0.0.1/hook",
    ],
)
async def test_non_loopback_webhook_is_refused_at_submit(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post(SUBMIT, json=body(), params={"fal_webhook": url})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "fal_webhook"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hook", "http://127.1.2.3/x", "http://[::1]:9/hook", "http://LOCALHOST:9/hook"]
)
async def test_loopback_webhooks_are_accepted(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post(SUBMIT, json=body(), params={"fal_webhook": url})
    assert response.status_code == 200, response.text


async def test_unknown_paths_404_and_wrong_methods_405_with_allow(client: httpx.AsyncClient) -> None:
    missing = await client.get("/fal-ai/flux-pro/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Path /fal-ai/flux-pro/nothing-here not found"})
    wrong = await client.delete(f"{REQUESTS}/abc/status")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"
    assert "detail" in wrong.json()
    assert (await client.get(SUBMIT)).headers["allow"] == "POST"


# -- the status stream --------------------------------------------------------------------------------------------


def _events(text: str) -> tuple[list[dict[str, Any]], int]:
    events = [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]
    comments = sum(1 for line in text.splitlines() if line.startswith(":"))
    return events, comments


async def _drive(clock: ManualClock, steps: list[float], task: asyncio.Task[httpx.Response]) -> httpx.Response:
    for step in steps:
        await asyncio.sleep(0.03)
        clock.advance(step)
    return await asyncio.wait_for(task, timeout=10)


async def test_stream_sends_one_event_per_change_with_new_logs_and_closes(
    make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(
        EmulatorConfig(runners=1, queue_wait=0.0, run_time=1.0, stream_poll_interval=0.01, keepalive_interval=5.0)
    )
    await submit(client)
    second = await submit(client)
    task = asyncio.create_task(client.get(f"{REQUESTS}/{second['request_id']}/status/stream", params={"logs": "1"}))
    response = await _drive(clock, [0.3, 0.3, 0.45, 0.3, 0.3, 0.3, 1.0], task)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events, comments = _events(response.text)
    statuses = [event["status"] for event in events]
    assert statuses[0] == "IN_QUEUE"
    assert statuses[-1] == "COMPLETED"
    assert statuses.count("COMPLETED") == 1
    assert "IN_PROGRESS" in statuses
    # Each event carries only the logs since the previous one; together they are the whole log.
    messages = [entry["message"] for event in events for entry in (event["logs"] or [])]
    assert messages == [f"Generating image: {p}%" for p in (0, 25, 50, 75)] + ["Image generated"]
    assert comments == 0


async def test_stream_sends_keep_alive_comments_while_nothing_changes(
    make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(
        EmulatorConfig(runners=1, queue_wait=0.0, run_time=100.0, stream_poll_interval=0.01, keepalive_interval=5.0)
    )
    await submit(client)
    waiting = await submit(client)
    task = asyncio.create_task(client.get(f"{REQUESTS}/{waiting['request_id']}/status/stream"))
    response = await _drive(clock, [6.0, 6.0, 300.0], task)
    events, comments = _events(response.text)
    assert comments == 2
    assert [event["status"] for event in events] == ["IN_QUEUE", "COMPLETED"]


async def test_stream_of_a_completed_request_is_one_event(client: httpx.AsyncClient, clock: ManualClock) -> None:
    data = await submit(client)
    clock.advance(5)
    response = await client.get(f"{REQUESTS}/{data['request_id']}/status/stream")
    events, _ = _events(response.text)
    assert [event["status"] for event in events] == ["COMPLETED"]
    assert events[0]["logs"] is None


async def test_stream_of_an_unknown_request_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{REQUESTS}/nope/status/stream")).status_code == 404


async def test_counters_count_submits_per_key_and_body(client: httpx.AsyncClient) -> None:
    same = body(seed=1)
    await submit(client, json=same)
    await submit(client, json=dict(reversed(list(same.items()))))
    await submit(client, json=body(seed=2))
    counters = (await client.get("/_emulator/counters")).json()
    [mine] = counters["submits"].values()
    assert mine["total"] == 3
    assert sorted(mine["by_body"].values()) == [1, 2]
    assert counters["calls"]["submit_flux_pro_kontext"] == 3
    assert AUTH["Authorization"].endswith("test-key")


async def test_request_ids_with_encoded_slashes_and_newlines_stay_in_their_segment(client: httpx.AsyncClient) -> None:
    for encoded in ("a%2Fb", "a%0Ab"):
        cancel = await client.put(f"{REQUESTS}/{encoded}/cancel")
        assert (cancel.status_code, cancel.json()) == (404, {"status": "NOT_FOUND"})
        status = await client.get(f"{REQUESTS}/{encoded}/status")
        assert (status.status_code, status.json()) == (404, {"detail": "Request not found"})
